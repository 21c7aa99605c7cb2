package journey_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/model"
)

// TestFallbackChain tries the channels of a fallback list in turn and
// records why each one before the carrier did not carry the message.
func TestFallbackChain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: chain
trigger: { event: order.paid }
steps:
  - id: hello
    send:
      channel: wechat.text
      text: "订单 {{ .event.order }}"
      template_id: T1
      template: SMS_1
      fallback: [wechat.template, sms]
`)
	h.rec.fail(channels.WeChatText+"/o1", &channels.Error{Class: channels.ErrUnreachable, Code: 45015, Msg: "response out of time limit"})
	h.rec.fail(channels.WeChatTemplate+"/o1", &channels.Error{Class: channels.ErrUnreachable, Code: 40003, Msg: "invalid openid"})
	h.route(&model.Event{Type: "order.paid", Source: "api",
		Member: model.MemberRef{AppID: testAppID, OpenID: "o1", Phone: "+8613800000001"}, Props: map[string]any{"order": "A-1"}})
	h.drain()
	want := []delivery{
		{"hello", channels.WeChatText, "o1", model.DeliveryFailed},
		{"hello", channels.WeChatTemplate, "o1", model.DeliveryFailed},
		{"hello", channels.SMS, "+8613800000001", model.DeliverySent},
	}
	if diff := cmp.Diff(want, h.deliveries()); diff != "" {
		t.Fatalf("deliveries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]visit{{"hello", model.VisitDone, "fallback:sms"}}, h.visits()); diff != "" {
		t.Fatalf("visits (-want +got):\n%s", diff)
	}
	var ds []model.Delivery
	h.db.Order("id").Find(&ds)
	if ds[0].ErrorCode != 45015 || ds[1].ErrorCode != 40003 {
		t.Fatalf("the delivery log does not say why WeChat did not carry it: %d %q, %d %q", ds[0].ErrorCode, ds[0].Error, ds[1].ErrorCode, ds[1].Error)
	}
}

// TestFallbackListChecks refuses a chain whose step is not last or whose
// channel repeats.
func TestFallbackListChecks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, src := range []string{
		"  - { id: hello, send: { channel: wechat.text, text: hi, fallback: [by_sms, sms] } }\n  - { id: by_sms, send: { channel: sms, template: S } }\n",
		"  - { id: hello, send: { channel: wechat.text, text: hi, fallback: [sms, sms] } }\n",
		"  - { id: hello, send: { channel: wechat.text, text: hi, fallback: [wechat.text] } }\n",
	} {
		if _, err := h.e.Parse("t", []byte("key: k\ntrigger: { event: order.paid }\nsteps:\n"+src)); err == nil {
			t.Errorf("accepted a bad fallback list:\n%s", src)
		}
	}
}

// TestOptOutHoldsMarketingOnly: a member who opted out of SMS gets no
// marketing SMS (the provider is not called, the step takes its fallback)
// while a transactional one still goes.
func TestOptOutHoldsMarketingOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: sms
trigger: { event: order.paid }
steps:
  - { id: promo, send: { channel: sms, template: PROMO, fallback: receipt }, next: receipt }
  - { id: receipt, send: { channel: sms, template: RECEIPT, category: transactional } }
`)
	opted := map[string]time.Time{"sms": h.clk.Now()}
	m := model.Member{Phone: "+8613800000002", OptOuts: opted, CreatedAt: h.clk.Now(), UpdatedAt: h.clk.Now()}
	if err := h.db.Create(&m).Error; err != nil {
		t.Fatal(err)
	}
	if err := h.db.Create(&model.MemberIdentity{MemberID: m.ID, Kind: model.IdentityPhone, Value: m.Phone}).Error; err != nil {
		t.Fatal(err)
	}
	h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{Phone: m.Phone}})
	h.drain()
	var got []string
	for _, s := range h.rec.sent() {
		got = append(got, s.Template)
	}
	if diff := cmp.Diff([]string{"RECEIPT"}, got); diff != "" {
		t.Fatalf("SMS sent to a member who opted out (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]visit{{"promo", model.VisitDone, "fallback:receipt"}, {"receipt", model.VisitDone, "sent"}}, h.visits()); diff != "" {
		t.Fatalf("visits (-want +got):\n%s", diff)
	}
}

// TestEmailHTMLEscapesValues: the html part is rendered by html/template,
// so a member's nickname cannot put markup or links into a brand's email.
func TestEmailHTMLEscapesValues(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: mail
trigger: { event: order.paid }
steps:
  - id: mail
    send:
      channel: email
      subject: "hi {{ .member.nickname }}"
      html: '<p>你好 {{ .member.nickname }}</p><a href="https://brand.example/?o={{ .event.order }}">订单</a>'
`)
	m := model.Member{Email: "a@example.com", Nickname: `<a href="https://evil.example">x</a>`, CreatedAt: h.clk.Now(), UpdatedAt: h.clk.Now()}
	if err := h.db.Create(&m).Error; err != nil {
		t.Fatal(err)
	}
	if err := h.db.Create(&model.MemberIdentity{MemberID: m.ID, Kind: model.IdentityEmail, Value: m.Email}).Error; err != nil {
		t.Fatal(err)
	}
	h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{Email: m.Email}, Props: map[string]any{"order": "A&B"}})
	h.drain()
	msgs := h.rec.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	want := `<p>你好 &lt;a href=&#34;https://evil.example&#34;&gt;x&lt;/a&gt;</p><a href="https://brand.example/?o=A%26B">订单</a>`
	if got := msgs[0].Extra["html"]; got != want {
		t.Errorf("html part\n got %s\nwant %s", got, want)
	}
}
