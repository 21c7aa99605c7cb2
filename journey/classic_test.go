package journey_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// classicHarness publishes every journey shipped in journeys/ and sets the
// clock to 10:00 China time (quiet hours hold nothing at the start).
func classicHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	cs, err := journey.LoadDir(filepath.Join("..", "journeys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if _, err := h.e.Publish(h.ctx, c, "journeys/"); err != nil {
			t.Fatalf("publish %s: %v", c.Def.Key, err)
		}
	}
	h.clk.Set(time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)) // 10:00 CST
	return h
}

// said returns, for one member, each message as channel + ": " + its
// text (or subject, template id or SMS template).
func (h *harness) said(openid string) []string {
	h.t.Helper()
	var out []string
	for _, m := range h.rec.messages() {
		if m.To.OpenID != openid {
			continue
		}
		what := m.Text
		switch {
		case m.Channel == "email":
			what = m.Subject
		case m.TemplateID != "":
			what = m.TemplateID
		case m.Template != "":
			what = m.Template
		}
		out = append(out, m.Channel+": "+what)
	}
	return out
}

// later moves the clock by d and runs what fell due.
func (h *harness) later(d time.Duration) {
	h.t.Helper()
	h.clk.Advance(d)
	h.drain()
}

func (h *harness) event(typ, openid string, ref model.MemberRef, props map[string]any) {
	h.t.Helper()
	ref.AppID, ref.OpenID = testAppID, openid
	h.route(&model.Event{Type: typ, Source: "api", Member: ref, Props: props})
	h.drain()
}

func wantSaid(t *testing.T, h *harness, openid string, want ...string) {
	t.Helper()
	got := h.said(openid)
	if !slices.Equal(got, want) {
		t.Errorf("%s was sent:\n  %s\nwant:\n  %s", openid, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func hasTag(h *harness, openid, tag string) bool {
	return slices.Contains(h.member(openid).Tags, tag)
}

func TestClassicFollowWelcomeByScene(t *testing.T) {
	t.Parallel()
	h := classicHarness(t)
	h.subscribe("o_store", "store_001")
	h.subscribe("o_event", "event_expo")
	h.subscribe("o_search", "")
	h.drain()
	wantSaid(t, h, "o_store", "wechat.text: 欢迎关注！您在门店 store_001 扫码成为我们的粉丝，回复「会员」了解会员权益。")
	wantSaid(t, h, "o_event", "wechat.text: 欢迎来到活动现场（event_expo）！凭本消息到签到台领取伴手礼。")
	wantSaid(t, h, "o_search", "wechat.text: 感谢关注！回复「会员」了解会员权益，点击菜单「新人礼」领取优惠券。")
	if !hasTag(h, "o_event", "offline_event") {
		t.Errorf("the event follower is not tagged offline_event: %v", h.member("o_event").Tags)
	}
	h.later(10 * time.Minute)
	wantSaid(t, h, "o_store", "wechat.text: 欢迎关注！您在门店 store_001 扫码成为我们的粉丝，回复「会员」了解会员权益。", "wechat.template: BIND_MEMBER_TEMPLATE_ID")
	h.later(24 * time.Hour) // the event's recap goes at 10:00 the next day
	wantSaid(t, h, "o_event", "wechat.text: 欢迎来到活动现场（event_expo）！凭本消息到签到台领取伴手礼。", "wechat.template: EVENT_RECAP_TEMPLATE_ID")
}

func TestClassicMemberBinding(t *testing.T) {
	t.Parallel()
	h := classicHarness(t)
	click := func(openid string) {
		h.route(wechatEvent("wechat.menu_click", openid, map[string]any{"key": "BIND"}))
		h.drain()
	}
	const ask = "wechat.text: 填写手机号即可绑定会员，领取 20 元新人券：https://example.com/bind"
	// o1 binds at once; o2 (no phone) is reminded by template, o3 (a phone
	// from an import) by SMS, and binds after the reminder.
	h.event("member.updated", "o3", model.MemberRef{Phone: "13800000003"}, map[string]any{"level": "gold"})
	for _, o := range []string{"o1", "o2", "o3"} {
		click(o)
	}
	h.event("form.submitted", "o1", model.MemberRef{}, map[string]any{"form": "bind"})
	wantSaid(t, h, "o1", ask, "wechat.template: BIND_DONE_TEMPLATE_ID")
	h.later(24*time.Hour + time.Second)
	wantSaid(t, h, "o2", ask, "wechat.template: BIND_REMIND_TEMPLATE_ID")
	wantSaid(t, h, "o3", ask, "sms: SMS_BIND_REMIND")
	h.event("form.submitted", "o3", model.MemberRef{}, map[string]any{"form": "bind"})
	wantSaid(t, h, "o3", ask, "sms: SMS_BIND_REMIND", "wechat.template: BIND_DONE_TEMPLATE_ID")
	for o, want := range map[string]bool{"o1": true, "o2": false, "o3": true} {
		if hasTag(h, o, "member_bound") != want {
			t.Errorf("%s tagged member_bound: %v, want %v", o, !want, want)
		}
	}
}

func TestClassicCartAbandonment(t *testing.T) {
	t.Parallel()
	h := classicHarness(t)
	h.event("cart.abandoned", "o1", model.MemberRef{}, map[string]any{"cart_id": "c1", "amount": 199})
	h.event("cart.abandoned", "o2", model.MemberRef{}, map[string]any{"cart_id": "c2", "amount": 99})
	h.later(30 * time.Minute)
	h.event("order.paid", "o1", model.MemberRef{}, map[string]any{"cart_id": "c9"}) // another cart: not this one
	h.later(31 * time.Minute)
	wantSaid(t, h, "o1", "wechat.template: CART_REMIND_TEMPLATE_ID")
	wantSaid(t, h, "o2", "wechat.template: CART_REMIND_TEMPLATE_ID")
	h.event("order.paid", "o1", model.MemberRef{}, map[string]any{"cart_id": "c1"}) // that cart's order
	h.later(24 * time.Hour)
	wantSaid(t, h, "o1", "wechat.template: CART_REMIND_TEMPLATE_ID")
	wantSaid(t, h, "o2", "wechat.template: CART_REMIND_TEMPLATE_ID", "wechat.template: CART_COUPON_TEMPLATE_ID")
	if !hasTag(h, "o1", "cart_recovered") || hasTag(h, "o2", "cart_recovered") {
		t.Errorf("cart_recovered: o1 %v, o2 %v; want only o1", h.member("o1").Tags, h.member("o2").Tags)
	}
}

func TestClassicRepurchaseCycle(t *testing.T) {
	t.Parallel()
	h := classicHarness(t)
	day := 24 * time.Hour
	h.event("order.paid", "o1", model.MemberRef{}, map[string]any{"product": "面霜"})
	h.later(3 * day)
	wantSaid(t, h, "o1", "wechat.template: UPSELL_TEMPLATE_ID")
	h.later(27 * day)
	h.later(7 * day)
	wantSaid(t, h, "o1", "wechat.template: UPSELL_TEMPLATE_ID", "wechat.template: REPURCHASE_TEMPLATE_ID", "sms: SMS_REPURCHASE_COUPON")
	// A new order: a new cycle from the start.
	h.event("order.paid", "o1", model.MemberRef{}, map[string]any{"product": "面霜"})
	h.later(10 * day)
	h.event("order.paid", "o1", model.MemberRef{}, map[string]any{"product": "精华"}) // mid-cycle: exits, re-enters
	h.later(3 * day)
	got := h.said("o1")
	if n := len(got); n != 5 || got[3] != "wechat.template: UPSELL_TEMPLATE_ID" || got[4] != "wechat.template: UPSELL_TEMPLATE_ID" {
		t.Errorf("after two more orders: %v; want an upsell for each", got)
	}
	var reasons []string
	for _, e := range h.enrollments() {
		reasons = append(reasons, e.Status+":"+e.EndReason)
	}
	want := []string{"completed:completed", "exited:exit:order.paid", "active:"}
	if !slices.Equal(reasons, want) {
		t.Errorf("enrollments %v; want %v", reasons, want)
	}
}

func TestClassicEmailNurture(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	mail := func(o string) model.MemberRef { return model.MemberRef{Email: o + "@example.com"} }
	// The members have no nickname: the first subject starts with "，".
	welcome := []string{"email: ，欢迎订阅", "email: 三个客户故事", "email: 产品导览", "email: 本月直播预约", "email: 需要一份报价吗？"}
	t.Run("five unopened emails start re-engagement", func(t *testing.T) {
		t.Parallel()
		h := classicHarness(t)
		h.event("form.submitted", "o1", mail("o1"), map[string]any{"form": "newsletter"})
		for range 5 {
			h.later(3*day + time.Second)
		}
		wantSaid(t, h, "o1", append(slices.Clone(welcome), "email: 还想收到我们的邮件吗？")...)
		h.later(7*day + time.Second)
		wantSaid(t, h, "o1", append(slices.Clone(welcome), "email: 还想收到我们的邮件吗？", "wechat.template: REENGAGE_TEMPLATE_ID")...)
		if !hasTag(h, "o1", "email_dormant") {
			t.Errorf("tags %v: want email_dormant", h.member("o1").Tags)
		}
	})
	t.Run("one open: no re-engagement", func(t *testing.T) {
		t.Parallel()
		h := classicHarness(t)
		h.event("form.submitted", "o1", mail("o1"), map[string]any{"form": "newsletter"})
		h.later(time.Hour)
		h.event("email.opened", "o1", model.MemberRef{}, nil)
		for range 8 {
			h.later(3*day + time.Second)
		}
		wantSaid(t, h, "o1", welcome...)
		if !hasTag(h, "o1", "nurtured") || hasTag(h, "o1", "email_dormant") {
			t.Errorf("tags %v: want nurtured, not email_dormant", h.member("o1").Tags)
		}
	})
	t.Run("an industry link moves the member to that series", func(t *testing.T) {
		t.Parallel()
		h := classicHarness(t)
		h.event("form.submitted", "o1", mail("o1"), map[string]any{"form": "newsletter"})
		h.later(time.Hour)
		h.event("email.clicked", "o1", model.MemberRef{}, map[string]any{"url": "https://example.com/industry/retail"})
		h.later(4*day + time.Second)
		h.later(10 * day)
		wantSaid(t, h, "o1", "email: ，欢迎订阅", "email: 零售品牌的私域打法", "email: 和行业顾问聊 20 分钟？")
		if !hasTag(h, "o1", "industry_retail") {
			t.Errorf("tags %v: want industry_retail", h.member("o1").Tags)
		}
	})
	t.Run("a quote request starts the follow-up series; an order ends it", func(t *testing.T) {
		t.Parallel()
		h := classicHarness(t)
		h.event("form.submitted", "o1", mail("o1"), map[string]any{"form": "quote", "summary": "200 家门店"})
		h.event("form.submitted", "o2", mail("o2"), map[string]any{"form": "quote", "summary": "试用"})
		h.later(2*day + time.Second)
		h.event("order.paid", "o2", model.MemberRef{}, map[string]any{"product": "年费"})
		h.later(5*day + time.Second)
		wantSaid(t, h, "o1", "email: 我们已收到您的报价需求", "email: 关于您的报价，还有什么问题？", "email: 同规模客户怎么做")
		// The order ends the series and starts the repurchase journey.
		wantSaid(t, h, "o2", "email: 我们已收到您的报价需求", "email: 关于您的报价，还有什么问题？", "wechat.template: UPSELL_TEMPLATE_ID")
		for _, m := range h.rec.messages() {
			if m.Subject == "我们已收到您的报价需求" && (m.Category != model.CategoryTransactional || !strings.Contains(m.Text, "200 家门店") && m.To.OpenID == "o1") {
				t.Errorf("the confirmation: category %q, text %q; want transactional with the summary", m.Category, m.Text)
			}
		}
	})
}

func TestClassicBirthday(t *testing.T) {
	t.Parallel()
	h := classicHarness(t)
	cst := time.FixedZone("CST", 8*3600)
	// The brand's data sets the birthdays.
	h.event("member.updated", "o_today", model.MemberRef{}, map[string]any{"birthday": "1990-11-25"})
	h.event("member.updated", "o_redeems", model.MemberRef{}, map[string]any{"birthday": "1988-11-25"})
	h.event("member.updated", "o_later", model.MemberRef{}, map[string]any{"birthday": "1990-12-01"})
	if n := h.runSchedules(time.Date(2026, 11, 25, 9, 0, 0, 0, cst)); n != 2 {
		t.Fatalf("at 09:00 on 25 November: %d entered; want the two birthdays", n)
	}
	h.event("coupon.redeemed", "o_redeems", model.MemberRef{}, map[string]any{"coupon": "BIRTHDAY50"})
	h.later(3*24*time.Hour + time.Second)
	wantSaid(t, h, "o_today", "wechat.template: BIRTHDAY_TEMPLATE_ID", "wechat.template: BIRTHDAY_REMIND_TEMPLATE_ID")
	wantSaid(t, h, "o_redeems", "wechat.template: BIRTHDAY_TEMPLATE_ID")
	wantSaid(t, h, "o_later")
	if !hasTag(h, "o_redeems", "birthday_redeemed") {
		t.Errorf("tags %v: want birthday_redeemed", h.member("o_redeems").Tags)
	}
}

func TestClassicKeywordReply(t *testing.T) {
	t.Parallel()
	h := classicHarness(t)
	h.route(wechatEvent("wechat.message", "o1", map[string]any{"msg_type": "text", "text": "我想了解会员"}))
	h.route(wechatEvent("wechat.message", "o2", map[string]any{"msg_type": "text", "text": "你好"}))
	h.drain()
	wantSaid(t, h, "o1", "wechat.text: 会员权益：积分翻倍、生日礼、专属客服。点击 https://example.com/bind 绑定会员。")
	wantSaid(t, h, "o2")
}
