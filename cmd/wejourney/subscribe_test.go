package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/util"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// subscribeJourneys send a subscription message when a member authorises
// one: through the link (oa_once), the popup (oa_popup) or the
// mini-program. The link's journey then tries the same template again,
// and takes its fallback.
var subscribeJourneys = map[string]string{
	"once.yaml": `
key: sub-once
trigger: { event: wechat.subscribe_message_authorized, where: 'event.source == "oa_once"' }
steps:
  - id: notify
    send:
      channel: wechat.subscribe_message
      template_id: TPL-once
      text: "您的预约已确认"
      url: https://brand.example/booking
      extra: { title: "预约提醒" }
    next: again
  - id: again
    send:
      channel: wechat.subscribe_message
      template_id: TPL-once
      text: "第二条"
      extra: { title: "再次提醒" }
      fallback: no_grant
  - id: no_grant
    update: { add_tags: [no_grant] }
`,
	"popup.yaml": `
key: sub-popup
trigger: { event: wechat.subscribe_message_authorized, where: 'event.source == "oa_popup"' }
steps:
  - id: notify
    send: { channel: wechat.subscribe_message, template_id: TPL-popup, url: "https://brand.example/points", data: { thing1: "积分到账" } }
`,
	"mp.yaml": `
key: sub-mp
trigger: { event: miniprogram.subscribe_authorized }
steps:
  - id: notify
    send: { channel: wechat.subscribe_message, template_id: MP-tpl, data: { thing1: "预约成功" }, extra: { page: "pages/booking/booking" } }
`,
	"template.yaml": `
key: tmpl
trigger: { event: wechat.subscribe }
steps:
  - id: tmpl
    send: { channel: wechat.template, template_id: TPL-tmpl, data: { first: "欢迎" } }
`,
}

const subAdminKey = "sub-admin-key"

// newSubscribeHarness starts wejourney with subscribeJourneys, a
// mini-program and an admin API key.
func newSubscribeHarness(t *testing.T) *harness {
	t.Helper()
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	cfg := testConfig(t, fake, subscribeJourneys)
	cfg.MiniProgramAppID, cfg.MiniProgramAppSecret = testMiniAppID, testMiniSecret
	cfg.PublicURL = "https://wj.example.com"
	h := startHarness(t, cfg, fake)
	if err := h.db.Create(&model.APIKey{Name: "admin", Hash: handler.HashAPIKey(subAdminKey), Scope: model.ScopeAdmin}).Error; err != nil {
		t.Fatal(err)
	}
	plain := model.Account{Kind: model.AccountWeChatOA, AppID: testPlainAppID, Name: "plain", AppSecret: "test-secret", Token: testToken}
	if err := model.UpsertAccount(h.app.DB, h.app.secrets, plain); err != nil {
		t.Fatal(err)
	}
	return h
}

// authoriseOnce makes a subscribe link through the admin API and comes
// back from WeChat's page as openid would, confirming: it returns where
// wejourney sent the member.
func (h *harness) authoriseOnce(openid, templateID string, scene int, redirect string) string {
	h.t.Helper()
	st, ans := h.requestJSON("POST", "/api/v1/subscribe-links",
		fmt.Sprintf(`{"template_id":%q,"scene":%d,"redirect":%q}`, templateID, scene, redirect), subAdminKey)
	link, _ := ans["url"].(string)
	if st != http.StatusOK || link == "" {
		h.t.Fatalf("subscribe link: %d %v", st, ans)
	}
	u, err := url.Parse(link)
	if err != nil {
		h.t.Fatal(err)
	}
	q := u.Query()
	back, err := url.Parse(q.Get("redirect_url"))
	if err != nil || !strings.HasPrefix(back.String(), "https://wj.example.com/wechat/oa/"+testAppID+"/subscribemsg?") {
		h.t.Fatalf("redirect_url %q", q.Get("redirect_url"))
	}
	bq := back.Query()
	bq.Set("openid", openid)
	bq.Set("template_id", q.Get("template_id"))
	bq.Set("action", "confirm")
	bq.Set("scene", q.Get("scene"))
	bq.Set("reserved", q.Get("reserved"))
	resp, err := noRedirects.Get(h.base + back.Path + "?" + bq.Encode())
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("back from the authorisation page: %d, want 302", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// postPlainXML posts a signed plaintext callback to the plain account.
func (h *harness) postPlainXML(xml string) int {
	h.t.Helper()
	ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), "424242"
	q := url.Values{"signature": {util.Signature(testToken, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}}
	resp, err := http.Post(h.base+"/wechat/oa/"+testPlainAppID+"?"+q.Encode(), "text/xml", strings.NewReader(xml))
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSubscribeMessageThroughTheLink: a member authorises through a
// subscribe link; the journey's send goes out once, on
// template/subscribe with the authorisation's scene; the second send of
// the same template has no authorisation left and takes its fallback
// without calling WeChat.
func TestSubscribeMessageThroughTheLink(t *testing.T) {
	parallel(t)
	h := newSubscribeHarness(t)
	const openid = "o_sub_once"
	if loc := h.authoriseOnce(openid, "TPL-once", 1000, "https://brand.example/thanks"); loc != "https://brand.example/thanks" {
		t.Errorf("sent the member to %q, want the brand's page", loc)
	}
	msgs := h.waitMessages(openid, 1, 10*time.Second)
	m := msgs[0]
	var body map[string]any
	json.Unmarshal(m.Raw, &body)
	if m.Kind != fakewx.KindSubscribeOnce || m.AppID != testAppID || m.TemplateID != "TPL-once" ||
		body["scene"] != "1000" || body["title"] != "预约提醒" || m.Data["content"] != "您的预约已确认" || m.URL != "https://brand.example/booking" {
		t.Errorf("sent %s %s %s %s", m.Kind, m.AppID, m.TemplateID, m.Raw)
	}
	h.eventually("the second send's fallback", 10*time.Second, func() bool {
		var mem model.Member
		h.db.Where("open_id = ?", openid).First(&mem)
		return slices.Contains(mem.Tags, "no_grant")
	})
	if n := len(h.fake.MessagesTo(openid)); n != 1 {
		t.Errorf("%d messages to the member, want 1: one send per authorisation", n)
	}
	var grants []model.SubscribeGrant
	h.db.Find(&grants)
	if len(grants) != 1 || grants[0].Source != "oa_once" || grants[0].Scene != "1000" || grants[0].DeliveryID == nil || grants[0].UsedAt == nil {
		t.Errorf("grants %+v, want one oa_once grant, spent", grants)
	}
	var again model.Delivery
	if err := h.db.Where("channel = ? AND status = ?", "wechat.subscribe_message", model.DeliveryFailed).First(&again).Error; err != nil ||
		!strings.Contains(again.Error, "no authorisation for template TPL-once") {
		t.Errorf("the second delivery: %+v %v", again, err)
	}
}

// TestSubscribeMessageFromThePopup: a 订阅通知 popup accepting one template
// (and rejecting another) leads to one bizsend.
func TestSubscribeMessageFromThePopup(t *testing.T) {
	parallel(t)
	h := newSubscribeHarness(t)
	const openid = "o_sub_popup"
	xml := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event>`+
		`<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[TPL-popup]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>`+
		`<List><TemplateId><![CDATA[TPL-other]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent></xml>`,
		openid, time.Now().Unix())
	if st := h.postPlainXML(xml); st != http.StatusOK {
		t.Fatalf("popup callback: %d", st)
	}
	m := h.waitMessages(openid, 1, 10*time.Second)[0]
	if m.Kind != fakewx.KindBizSend || m.AppID != testPlainAppID || m.TemplateID != "TPL-popup" || m.Data["thing1"] != "积分到账" || m.URL != "https://brand.example/points" {
		t.Errorf("sent %s %s %s %s", m.Kind, m.AppID, m.TemplateID, m.Raw)
	}
	if n := h.count(&model.SubscribeGrant{}, "template_id = ?", "TPL-other"); n != 0 {
		t.Errorf("a rejected template was recorded as authorised")
	}
}

// TestSubscribeMessageFromTheMiniProgram: templates accepted in
// wx.requestSubscribeMessage, posted by the mini-program, lead to a send
// with the mini-program's token to its openid.
func TestSubscribeMessageFromTheMiniProgram(t *testing.T) {
	parallel(t)
	h := newSubscribeHarness(t)
	const mpOpenID = "o_mp_sub"
	h.fake.AddLoginCode(testMiniAppID, "login-sub", mpOpenID, "")
	st, ans := h.postJSON("/api/v1/miniprogram/session", `{"code":"login-sub"}`, "")
	tok, _ := ans["token"].(string)
	if st != http.StatusOK || tok == "" {
		t.Fatalf("session: %d %v", st, ans)
	}
	if st, ans := h.postJSON("/api/v1/miniprogram/events", `{"type":"miniprogram.subscribe_authorized","template_ids":["MP-tpl"]}`, tok); st != http.StatusAccepted {
		t.Fatalf("authorisation: %d %v", st, ans)
	}
	m := h.waitMessages(mpOpenID, 1, 10*time.Second)[0]
	var body map[string]any
	json.Unmarshal(m.Raw, &body)
	if m.Kind != fakewx.KindMPSubscribe || m.AppID != testMiniAppID || m.TemplateID != "MP-tpl" || m.Data["thing1"] != "预约成功" ||
		body["page"] != "pages/booking/booking" || body["miniprogram_state"] != "formal" {
		t.Errorf("sent %s %s %s %s", m.Kind, m.AppID, m.TemplateID, m.Raw)
	}
}

// TestTemplateCarriesDeliveryKey: a template message's client_msg_id is
// its delivery's idempotency key, wj-<delivery id>.
func TestTemplateCarriesDeliveryKey(t *testing.T) {
	parallel(t)
	h := newSubscribeHarness(t)
	const openid = "o_tmpl"
	if st, body := h.send(h.safe, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: openid}); st != 200 {
		t.Fatalf("follow: %d %s", st, body)
	}
	m := h.waitMessages(openid, 1, 10*time.Second)[0]
	var d model.Delivery
	if err := h.db.Where("channel = ?", "wechat.template").First(&d).Error; err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("wj-%d", d.ID); m.ClientMsgID != want {
		t.Errorf("client_msg_id %q, want %q", m.ClientMsgID, want)
	}
}

// TestTemplateResentAfterCrashKeepsClientMsgID kills the process while
// WeChat holds a template message (accepted, the answer not yet given) and
// restarts it: the delivery is sent again with the same client_msg_id,
// which WeChat drops as a repeat, so the member gets one message and the
// delivery is recorded sent.
func TestTemplateResentAfterCrashKeepsClientMsgID(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fake := fakewx.New(fakewx.Config{OnMessage: func(m fakewx.Message) {
		if m.Kind == "template" {
			once.Do(func() { close(held); <-release }) // the first answer waits until the process is dead
		}
	}})
	defer fake.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tmpl.yaml"), []byte(subscribeJourneys["template.yaml"]), 0o600)
	addr, dbURL, env := serveEnv(t, bin, fake.URL, dir, testAESKey)
	first := startProcess(t, bin, env, addr)
	sim, err := wxsim.New(wxsim.Config{Target: "http://" + addr, AppID: testAppID, Token: testToken, AESKey: testAESKey})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, err := sim.Send(context.Background(), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_crash_tmpl"}); err != nil || status != 200 {
		t.Fatalf("subscribe: %d %v", status, err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the template message never reached WeChat")
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	close(release)

	startProcess(t, bin, env, addr)
	dialect, dsn, _ := config.ParseDatabaseURL(dbURL)
	db, err := model.Open(dialect, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s, _ := db.DB(); s.Close() }()
	var d model.Delivery
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := db.Where("channel = ?", "wechat.template").First(&d).Error; err == nil && d.Status != model.DeliverySending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delivery was not settled after the restart: %+v", d)
		}
	}
	msgs := fake.MessagesTo("o_crash_tmpl")
	if d.Status != model.DeliverySent || len(msgs) != 1 || fake.Duplicates() != 1 {
		t.Fatalf("delivery %s, %d messages, %d repeats dropped; want sent, 1 message, the re-send dropped", d.Status, len(msgs), fake.Duplicates())
	}
	if want := fmt.Sprintf("wj-%d", d.ID); msgs[0].ClientMsgID != want {
		t.Errorf("client_msg_id %q, want %q", msgs[0].ClientMsgID, want)
	}
	if d.ProviderID == "" {
		t.Error("the re-send recorded no msgid")
	}
}
