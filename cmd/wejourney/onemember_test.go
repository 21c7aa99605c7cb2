package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// A member who follows from a store QR code, later adds a sales rep on
// WeCom and then leaves the mini-program from the cart page is one member:
// the worker looks up the follower's and the WeCom contact's unionid, the
// mini-program's session carries it, and so the WeCom-triggered and the
// mini-program-triggered journeys message the follower's openid. The first
// scene (the store) is kept.
func TestOneMemberAcrossOfficialAccountWeComAndMiniProgram(t *testing.T) {
	parallel(t)
	const (
		corpid, agentid, wecomToken = "wwonemember0000001", "1000002", "wecom-token"
		wecomAES                    = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
		openid, unionid, externalID = "o_follower_1", "u_person_1", "wm_customer_1"
		mpOpenID                    = "o_mp_person_1"
	)
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	fake.AddFollowers(testAppID, fakewx.FakeUser{OpenID: openid, UnionID: unionid})
	fake.AddLoginCode(testMiniAppID, "login-1", mpOpenID, unionid)
	wc := fakewecom.New()
	t.Cleanup(wc.Close)
	wc.AddCorp(corpid, "wecom-secret")
	wc.AddContact(fakewecom.Contact{ExternalUserID: externalID, Name: "小王", UnionID: unionid})

	cfg := testConfig(t, fake, nil)
	dir := t.TempDir()
	for name, src := range map[string]string{
		"welcome.yaml": `
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: "欢迎 {{ .event.scene }}" } }
`,
		"rep.yaml": `
key: rep-added
trigger: { event: wecom.contact_added }
steps:
  - { id: intro, send: { channel: wechat.text, text: "你的导购是 {{ .event.user_id }}" } }
`,
		"cart.yaml": `
key: cart
trigger: { event: miniprogram.closed, where: 'event.page == "pages/cart/cart"' }
steps:
  - { id: nudge, send: { channel: wechat.text, text: "购物车还有商品 ({{ .member.first_scene }})" } }
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.JourneysDir = dir
	cfg.WeComCorpID, cfg.WeComAgentID, cfg.WeComSecret, cfg.WeComToken, cfg.WeComAESKey = corpid, agentid, "wecom-secret", wecomToken, wecomAES
	cfg.WeComAPIBase = wc.URL
	cfg.MiniProgramAppID, cfg.MiniProgramAppSecret = testMiniAppID, testMiniSecret
	h := startHarness(t, cfg, fake)
	app := h.app
	if err := h.db.Create(&model.APIKey{Name: "admin", Hash: handler.HashAPIKey("adm-key"), Scope: model.ScopeAdmin}).Error; err != nil {
		t.Fatal(err)
	}
	// The store's QR code and the rep's contact-me link, made through the API.
	if st, body := h.request("POST", "/api/v1/qrcodes", `{"scene":"store_001","label":"南京西路店","channel":"store"}`, "adm-key"); st != 201 {
		t.Fatalf("create the QR code: %d %s", st, body)
	}
	if st, body := h.request("POST", "/api/v1/contact-ways", `{"state":"rep_zhang_card","users":["rep_zhang"],"label":"张导购"}`, "adm-key"); st != 201 {
		t.Fatalf("create the contact way: %d %s", st, body)
	}

	// 1. The follow, through a store's QR code.
	if status, body := h.send(h.safe, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: openid, Scene: "store_001"}); status != 200 {
		t.Fatalf("follow: %d %s", status, body)
	}
	h.waitMessages(openid, 1, 10*time.Second)

	// 2. The WeCom add, through a rep's contact-me link.
	status, answer := h.postWeCom(corpid, agentid, wecomToken, wecomAES, weComAddXML(corpid, "rep_zhang", externalID, "rep_zhang_card"))
	if status != 200 || answer != "success" {
		t.Fatalf("WeCom callback answered %d %q; want 200 success", status, answer)
	}
	h.waitMessages(openid, 2, 10*time.Second)

	// 3. The mini-program: log in, then leave the cart page.
	status, ans := h.postJSON("/api/v1/miniprogram/session", `{"code":"login-1"}`, "")
	tok, _ := ans["token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("session: %d %v", status, ans)
	}
	if status, ans := h.postJSON("/api/v1/miniprogram/events", `{"type":"miniprogram.closed","props":{"page":"pages/cart/cart","duration_s":42}}`, tok); status != http.StatusAccepted {
		t.Fatalf("mini-program event: %d %v", status, ans)
	}
	msgs := h.waitMessages(openid, 3, 10*time.Second)
	var texts []string
	for _, m := range msgs {
		texts = append(texts, m.Text)
	}
	if want := []string{"欢迎 store_001", "你的导购是 rep_zhang", "购物车还有商品 (store_001)"}; strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Errorf("messages to the follower: %q; want %q", texts, want)
	}

	var ms []model.Member
	if err := app.DB.Where("merged_into IS NULL").Find(&ms).Error; err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("%d members; want one person: %+v", len(ms), ms)
	}
	m := ms[0]
	if m.OpenID != openid || m.UnionID != unionid || m.ExternalUserID != externalID || m.MPOpenID != mpOpenID {
		t.Errorf("member identities: openid %q unionid %q external_userid %q mp_openid %q", m.OpenID, m.UnionID, m.ExternalUserID, m.MPOpenID)
	}
	if m.FirstScene != "store_001" || m.LastScene != "rep_zhang_card" {
		t.Errorf("member scenes: first %q, last %q; want store_001 kept first, rep_zhang_card last", m.FirstScene, m.LastScene)
	}
	if n := wc.Calls("/cgi-bin/externalcontact/get"); n != 1 {
		t.Errorf("%d external-contact lookups; want 1", n)
	}
	if n := fake.Calls(fakewx.PathUserBatchGet); n != 1 {
		t.Errorf("%d user info lookups; want 1 (the follow)", n)
	}

	// Each touch is credited to its code: the follow to the QR code (the
	// member's first touch), the add to the contact-me link (the last).
	st, body := h.request("GET", "/api/v1/qrcodes", "", "adm-key")
	var qrs struct {
		QRCodes []codes.QRCode `json:"qrcodes"`
	}
	if err := json.Unmarshal(body, &qrs); st != 200 || err != nil || len(qrs.QRCodes) != 1 {
		t.Fatalf("list QR codes: %d %s %v", st, body, err)
	}
	if got, want := qrs.QRCodes[0].Stats, (codes.QRStats{Follows: 1, Members: 1, FirstTouch: 1}); got != want {
		t.Errorf("the store QR code's figures: %+v; want %+v", got, want)
	}
	st, body = h.request("GET", "/api/v1/contact-ways", "", "adm-key")
	var ways struct {
		ContactWays []codes.ContactWay `json:"contact_ways"`
	}
	if err := json.Unmarshal(body, &ways); st != 200 || err != nil || len(ways.ContactWays) != 1 {
		t.Fatalf("list contact ways: %d %s %v", st, body, err)
	}
	if got, want := ways.ContactWays[0].Stats, (codes.ContactWayStats{Adds: 1, Members: 1, LastTouch: 1}); got != want {
		t.Errorf("the contact-me link's figures: %+v; want %+v", got, want)
	}
}
