package handler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// The accounts of the accounts page's tests: one whose secret WeChat
// accepts, one whose secret it refuses.
const (
	acctOA     = "wx00000000000000a1"
	acctBad    = "wx00000000000000b2"
	acctToken  = "tok-7f3a9c"
	acctAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// modelWX serves the WeChat sender the accounts of the database.
type modelWX struct{ a *model.Accounts }

func (m modelWX) Account(ctx context.Context, appid string) (wechat.Account, error) {
	acct, err := m.a.Get(ctx, appid)
	if errors.Is(err, model.ErrUnknownAccount) {
		return wechat.Account{}, fmt.Errorf("%w: %w", wechat.ErrUnknownAccount, err)
	}
	return wechat.Account{AppID: acct.AppID, AppSecret: acct.AppSecret, Token: acct.Token, AESKey: acct.AESKey}, err
}

// newAccountsApp is a fresh console (users admin, op and view; the admin
// key "bot-key") with two Official Accounts, a fake WeChat API on
// loopback that knows acctOA's secret, the QR code service on it, and the
// SMS channel answered by a stub.
func newAccountsApp(t *testing.T, configure ...func(*Config)) *adminApp {
	t.Helper()
	db := consoleDB(t)
	for _, a := range []model.Account{
		{Kind: model.AccountWeChatOA, AppID: acctOA, Name: "品牌服务号", AppSecret: "right-secret", Token: acctToken, AESKey: acctAESKey},
		{Kind: model.AccountWeChatOA, AppID: acctBad, Name: "Old account", AppSecret: "stale-secret", Token: "tok-old"},
	} {
		if err := model.UpsertAccount(db, nil, a); err != nil {
			t.Fatal(err)
		}
	}
	wx := fakewx.New(fakewx.Config{Secrets: map[string]string{acctOA: "right-secret", acctBad: "new-secret"}})
	t.Cleanup(wx.Close)
	quiet := slog.New(slog.DiscardHandler)
	accounts := model.NewAccounts(db, nil)
	sender := wechat.NewSender(wechat.Config{Accounts: modelWX{accounts}, APIBase: wx.URL, Logger: quiet})
	wc := fakewecom.New()
	t.Cleanup(wc.Close)
	wc.AddCorp(codesCorp, "corp-secret")
	svc := codes.New(codes.Config{DB: db, DefaultAppID: acctOA, DefaultWeComApp: codesApp, Logger: quiet, WeChat: sender,
		WeCom: wecom.New(wecom.Config{Accounts: codesWeCom{}, APIBase: wc.URL, Logger: quiet})})
	reg := channels.NewRegistry()
	reg.Register(channels.SMS, channels.SenderFunc(func(_ context.Context, m channels.Message) (channels.Result, error) {
		if m.To.Phone == "13900000000" {
			return channels.Result{}, &channels.Error{Class: channels.ErrUnreachable, Code: 15, Msg: "isv.MOBILE_NUMBER_ILLEGAL"}
		}
		return channels.Result{ProviderID: "sms-42"}, nil
	}), channels.Capabilities{Address: channels.ByPhone})
	cfg := Config{Accounts: accounts, Codes: svc, Senders: reg,
		Console: ConsoleSettings{PublicURL: "https://wj.example.com", SMSProvider: "aliyun", SMSSignName: "品牌",
			EmailProvider: "smtp", EmailFrom: "news@brand.example", QuietHours: "22:00-08:00", FrequencyCaps: "*:3/1d",
			Checkers: map[string]CredentialChecker{model.AccountWeChatOA: sender}}}
	for _, f := range configure {
		f(&cfg)
	}
	return consoleOn(t, db, cfg)
}

// oneSync is a follower syncer that starts one import and then reports
// it running.
type oneSync struct{ started []string }

func (s *oneSync) Start(appid string, restart bool) (bool, error) {
	if len(s.started) > 0 {
		return false, nil
	}
	s.started = append(s.started, appid)
	return true, nil
}

func (s *oneSync) Status(context.Context, string) (model.FollowerSync, bool, error) {
	return model.FollowerSync{}, false, nil
}

// pageText is a page's text with tags removed and entities decoded.
func pageText(body string) string {
	return html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(body, " "))
}

// wantIn fails unless each of want is in got and none of notWant is.
func wantIn(t *testing.T, what, got string, want, notWant []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: want %q in:\n%.3000s", what, w, got)
		}
	}
	for _, w := range notWant {
		if strings.Contains(got, w) {
			t.Errorf("%s: %q should not be in:\n%.3000s", what, w, got)
		}
	}
}

// TestConsoleAccounts walks the accounts page as each role: what it
// shows, the credentials check, the test send, and who may do them.
func TestConsoleAccounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp)
	}{
		{"an admin sees the callback URL, the token and the key", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "admin")
			rec := b.do("GET", "/admin/accounts", nil)
			wantStatus(t, "accounts page", rec, http.StatusOK)
			wantIn(t, "zh-CN page", pageText(rec.Body.String()), []string{"账号与渠道", "品牌服务号", "公众号",
				"https://wj.example.com/wechat/oa/" + acctOA, acctToken, acctAESKey, "从未导入",
				"aliyun", "签名 【品牌】", "news@brand.example", "22:00-08:00 (CST)", "*:3/1d", "没有旅程设置自己的免打扰时段", "API 密钥"},
				[]string{"right-secret", "stale-secret", "仅管理员可见"})
			rec = b.do("GET", "/admin/accounts?lang=en", nil)
			wantIn(t, "en page", pageText(rec.Body.String()), []string{"Accounts & channels", "Official Account", "Callback URL",
				acctToken, "Never imported", "Check credentials"}, []string{"公众号"})
		}},
		{"a viewer sees the token masked and no buttons", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "view")
			rec := b.do("GET", "/admin/accounts", nil)
			wantStatus(t, "accounts page", rec, http.StatusOK)
			wantIn(t, "viewer's page", pageText(rec.Body.String()), []string{"https://wj.example.com/wechat/oa/" + acctOA, "••••••••", "仅管理员可见"},
				[]string{acctToken, acctAESKey, "检查凭据", "测试发送", "API 密钥"})
			tok := b.token("/admin/accounts")
			rec = b.do("POST", "/admin/accounts/check", url.Values{"appid": {acctOA}, "csrf_token": {tok}})
			wantStatus(t, "viewer's check", rec, http.StatusForbidden)
		}},
		{"a journey with its own quiet hours is listed", func(t *testing.T, app *adminApp) {
			src := "key: night\nname: Night owls\nquiet_hours: \"23:00-07:00\"\nfrequency_caps: [{channel: sms, max: 1, per: 1d}]\n" +
				"trigger: { event: wechat.subscribe }\nsteps:\n  - { id: hello, send: { channel: wechat.text, text: hi } }\n"
			j := model.Journey{Key: "night", Name: "Night owls", Status: "active"}
			app.db.Create(&j)
			v := model.JourneyVersion{JourneyID: j.ID, Version: 1, Source: src, Hash: "h"}
			app.db.Create(&v)
			app.db.Model(&j).Update("current_version_id", v.ID)
			rec := signedIn(t, app, "view").do("GET", "/admin/accounts", nil)
			wantIn(t, "overrides", pageText(rec.Body.String()), []string{"Night owls", "23:00-07:00", "sms 1/1d"}, []string{"没有旅程设置"})
		}},
		{"the credentials check says they work, or what is wrong", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "op")
			rec := b.post("/admin/accounts", "/admin/accounts/check", url.Values{"appid": {acctOA}})
			wantStatus(t, "check", rec, http.StatusOK)
			wantIn(t, "good check", pageText(rec.Body.String()), []string{"凭据有效：平台已向本服务器发放 access token。"}, []string{"right-secret"})
			rec = b.post("/admin/accounts?lang=en", "/admin/accounts/check", url.Values{"appid": {acctBad}})
			wantIn(t, "bad check", pageText(rec.Body.String()), []string{"The AppSecret is wrong (errcode 40125)"}, []string{"stale-secret", "new-secret"})
		}},
		{"an operator sends a test SMS and the audit log records it", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "op")
			rec := b.post("/admin/accounts", "/admin/accounts/test", url.Values{"channel": {"sms"}, "to": {"13800000000"}, "template": {"SMS_1"}})
			wantStatus(t, "test send", rec, http.StatusOK)
			wantIn(t, "sent", pageText(rec.Body.String()), []string{"已发送：服务商已受理（编号 sms-42）。"}, nil)
			rec = b.post("/admin/accounts?lang=en", "/admin/accounts/test", url.Values{"channel": {"sms"}, "to": {"13900000000"}, "template": {"SMS_1"}})
			wantIn(t, "refused", pageText(rec.Body.String()), []string{"Not sent (the address cannot be reached)"}, nil)
			if es := auditLog(t, app, "?action=channel.test"); len(es) != 2 || !hasEntry(es, "op", AuditChannelTest, "sms") {
				t.Errorf("audit: %+v", es)
			}
			rec = signedIn(t, app, "view").post("/admin/accounts", "/admin/accounts/test", url.Values{"channel": {"sms"}, "to": {"13800000000"}})
			wantStatus(t, "viewer's test send", rec, http.StatusForbidden)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newAccountsApp(t))
		})
	}
}

// TestConsoleFollowerImport starts a follower import from the accounts
// page and follows its progress.
func TestConsoleFollowerImport(t *testing.T) {
	t.Parallel()
	sync := &oneSync{}
	app := newAccountsApp(t, func(c *Config) { c.Followers = sync })
	refresh := `<meta http-equiv="refresh" content="5">`
	b := signedIn(t, app, "op")
	rec := b.post("/admin/accounts", "/admin/accounts/followers", url.Values{"appid": {acctOA}})
	wantStatus(t, "start", rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/admin/accounts?done=sync_started" || len(sync.started) != 1 || sync.started[0] != acctOA {
		t.Errorf("start: to %q, started %v", loc, sync.started)
	}
	now := time.Now()
	app.db.Create(&model.FollowerSync{AppID: acctOA, RunID: "r1", Status: "running", Imported: 5, Total: 10, StartedAt: now, UpdatedAt: now})
	page := b.do("GET", "/admin/accounts?done=sync_started", nil).Body.String()
	wantIn(t, "running", page, []string{refresh}, nil)
	wantIn(t, "running", pageText(page), []string{"已开始导入粉丝", "导入中: 5 / 10"}, nil)
	rec = b.post("/admin/accounts", "/admin/accounts/followers", url.Values{"appid": {acctOA}})
	if loc := rec.Header().Get("Location"); loc != "/admin/accounts?done=sync_running" {
		t.Errorf("a second start goes to %q", loc)
	}
	app.db.Model(&model.FollowerSync{}).Where("app_id = ?", acctOA).Updates(map[string]any{"status": "done", "imported": 10})
	page = b.do("GET", "/admin/accounts?lang=en", nil).Body.String()
	wantIn(t, "done", page, nil, []string{refresh})
	wantIn(t, "done", pageText(page), []string{"Imported: 10 / 10"}, nil)
	if es := auditLog(t, app, "?action=followers.sync"); len(es) != 1 || !hasEntry(es, "op", AuditFollowerSync, acctOA) {
		t.Errorf("audit: %+v", es)
	}
	rec = signedIn(t, app, "view").post("/admin/accounts", "/admin/accounts/followers", url.Values{"appid": {acctOA}})
	wantStatus(t, "viewer's start", rec, http.StatusForbidden)
}

// TestConsoleAPIKeys creates, uses and revokes API keys through the
// console and the admin API.
func TestConsoleAPIKeys(t *testing.T) {
	t.Parallel()
	keyRe := regexp.MustCompile(`<code id="the-key">(wj_[A-Za-z0-9_-]+)</code>`)
	event := `{"type":"order.paid","member":{"phone":"13800000000"},"id":"o-1"}`
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp)
	}{
		{"an admin creates a key, sees it once, uses it, revokes it", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "admin")
			rec := b.post("/admin/apikeys", "/admin/apikeys", url.Values{"name": {"crm"}, "scope": {"events"}})
			wantStatus(t, "create", rec, http.StatusCreated)
			m := keyRe.FindStringSubmatch(rec.Body.String())
			if m == nil {
				t.Fatalf("the new key is not shown: %.2000s", rec.Body)
			}
			key := m[1]
			wantIn(t, "created page", pageText(rec.Body.String()), []string{"只显示这一次"}, nil)
			rec = b.do("GET", "/admin/apikeys?lang=en", nil)
			wantIn(t, "list", pageText(rec.Body.String()), []string{"crm", KeyPrefix(key) + "…", "events (post events)", "never", "Active"}, []string{key})
			wantStatus(t, "the key posts an event", withKey(app, key, "POST", "/api/v1/events", event), http.StatusAccepted)
			var k model.APIKey
			app.db.Where("name = ?", "crm").Take(&k)
			rec = b.post("/admin/apikeys", fmt.Sprintf("/admin/apikeys/%d/revoke", k.ID), url.Values{})
			wantStatus(t, "revoke unconfirmed", rec, http.StatusBadRequest)
			rec = b.post("/admin/apikeys", fmt.Sprintf("/admin/apikeys/%d/revoke", k.ID), url.Values{"confirm": {"yes"}})
			wantStatus(t, "revoke", rec, http.StatusSeeOther)
			wantStatus(t, "the revoked key", withKey(app, key, "POST", "/api/v1/events", event), http.StatusUnauthorized)
			rec = b.do("GET", "/admin/apikeys?lang=zh-CN", nil)
			wantIn(t, "after revoking", pageText(rec.Body.String()), []string{"已吊销"}, nil)
			es := auditLog(t, app, "")
			if !hasEntry(es, "admin", AuditAPIKeyCreate, "crm") || !hasEntry(es, "admin", AuditAPIKeyRevoke, "crm") {
				t.Errorf("audit: %+v", es)
			}
		}},
		{"an operator cannot see or create keys", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "op")
			wantStatus(t, "operator's page", b.do("GET", "/admin/apikeys", nil), http.StatusForbidden)
			rec := b.post("/admin/accounts", "/admin/apikeys", url.Values{"name": {"sneaky"}, "scope": {"admin"}})
			wantStatus(t, "operator's create", rec, http.StatusForbidden)
			wantStatus(t, "operator's API create", b.call("POST", "/api/v1/apikeys", `{"name":"sneaky"}`), http.StatusForbidden)
			var n int64
			app.db.Model(&model.APIKey{}).Where("name = ?", "sneaky").Count(&n)
			if n != 0 {
				t.Errorf("%d keys named sneaky", n)
			}
			rec = b.do("GET", "/admin/accounts", nil)
			wantIn(t, "operator's accounts page", pageText(rec.Body.String()), nil, []string{"API 密钥 ›"})
		}},
		{"the admin API creates, lists and revokes keys", func(t *testing.T, app *adminApp) {
			rec := withKey(app, "bot-key", "POST", "/api/v1/apikeys", `{"name":"shop","scope":"events"}`)
			wantStatus(t, "create", rec, http.StatusCreated)
			key := regexp.MustCompile(`"key":"(wj_[^"]+)"`).FindStringSubmatch(rec.Body.String())
			if key == nil {
				t.Fatalf("no key: %s", rec.Body)
			}
			wantStatus(t, "the key posts an event", withKey(app, key[1], "POST", "/api/v1/events", event), http.StatusAccepted)
			rec = withKey(app, "bot-key", "GET", "/api/v1/apikeys", "")
			wantIn(t, "list", rec.Body.String(), []string{`"name":"shop"`, `"prefix":"` + KeyPrefix(key[1]) + `"`}, []string{key[1]})
			id := regexp.MustCompile(`"id":(\d+),"name":"shop"`).FindStringSubmatch(rec.Body.String())[1]
			wantStatus(t, "revoke", withKey(app, "bot-key", "POST", "/api/v1/apikeys/"+id+"/revoke", ""), http.StatusOK)
			wantStatus(t, "the revoked key", withKey(app, key[1], "POST", "/api/v1/events", event), http.StatusUnauthorized)
			wantStatus(t, "an unknown key", withKey(app, "bot-key", "POST", "/api/v1/apikeys/999/revoke", ""), http.StatusNotFound)
			wantStatus(t, "a bad scope", withKey(app, "bot-key", "POST", "/api/v1/apikeys", `{"name":"x","scope":"root"}`), http.StatusBadRequest)
			wantStatus(t, "the environment's name", withKey(app, "bot-key", "POST", "/api/v1/apikeys", `{"name":"WEJOURNEY_API_KEY"}`), http.StatusBadRequest)
			if es := auditLog(t, app, "?action=apikey.create"); !hasEntry(es, "deploy-bot", AuditAPIKeyCreate, "shop") {
				t.Errorf("audit: %+v", es)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newAccountsApp(t))
		})
	}
}

// TestConsoleQRCodes creates a QR code from the console, downloads it,
// and counts a follow through it.
func TestConsoleQRCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp)
	}{
		{"an operator creates a code; its PNG downloads; a follow through it counts", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "op")
			rec := b.do("GET", "/admin/qrcodes", nil)
			wantIn(t, "empty page", pageText(rec.Body.String()), []string{"还没有二维码：在下面为门店、海报或活动创建一个。"}, nil)
			rec = b.post("/admin/qrcodes", "/admin/qrcodes", url.Values{"label": {"Nanjing West Rd store"}, "kind": {"permanent"}})
			wantStatus(t, "create", rec, http.StatusSeeOther)
			var qr model.QRCode
			if err := app.db.Take(&qr).Error; err != nil {
				t.Fatal(err)
			}
			if qr.Scene != "nanjing_west_rd_store" {
				t.Errorf("scene %q, want one made from the label", qr.Scene)
			}
			rec = b.do("GET", "/admin/qrcodes?lang=en", nil)
			page := rec.Body.String()
			wantIn(t, "list", pageText(page), []string{"Nanjing West Rd store", "nanjing_west_rd_store", "Permanent"}, nil)
			follows := regexp.MustCompile(`<td class="follows">(\d+)</td>`)
			if m := follows.FindStringSubmatch(page); m == nil || m[1] != "0" {
				t.Errorf("follows before any: %v", m)
			}
			rec = b.do("GET", fmt.Sprintf("/admin/qrcodes/%d/png", qr.ID), nil)
			wantStatus(t, "png", rec, http.StatusOK)
			if ct := rec.Header().Get("Content-Type"); ct != "image/png" || !bytes.HasPrefix(rec.Body.Bytes(), []byte("\x89PNG")) {
				t.Errorf("png: %s, %q", ct, rec.Body.Bytes()[:min(8, rec.Body.Len())])
			}
			// A follow through the code, as WeChat calls back.
			now := time.Now()
			xml := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[o-fan1]]></FromUserName>`+
				`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>`+
				`<EventKey><![CDATA[qrscene_nanjing_west_rd_store]]></EventKey></xml>`, now.Unix())
			rec = httptest.NewRecorder()
			app.h.ServeHTTP(rec, cb{appid: acctOA, token: acctToken, aesKey: acctAESKey, at: now, xml: xml}.post(t))
			wantStatus(t, "follow callback", rec, http.StatusOK)
			if m := follows.FindStringSubmatch(b.do("GET", "/admin/qrcodes", nil).Body.String()); m == nil || m[1] != "1" {
				t.Errorf("follows after one: %v", m)
			}
			if es := auditLog(t, app, "?action=qrcode.create"); !hasEntry(es, "op", AuditQRCodeCreate, "nanjing_west_rd_store") {
				t.Errorf("audit: %+v", es)
			}
		}},
		{"an operator creates a contact-me link; its PNG downloads", func(t *testing.T, app *adminApp) {
			b := signedIn(t, app, "op")
			rec := b.do("GET", "/admin/qrcodes?lang=en", nil)
			wantIn(t, "empty", pageText(rec.Body.String()), []string{"No contact-me links yet"}, nil)
			rec = b.post("/admin/qrcodes", "/admin/contact-ways", url.Values{"label": {"门店导购"}, "state": {"store_7"}, "users": {"rep1, rep2"}})
			wantStatus(t, "create", rec, http.StatusSeeOther)
			rec = b.do("GET", rec.Header().Get("Location")+"&lang=zh-CN", nil)
			wantIn(t, "list", pageText(rec.Body.String()), []string{"联系我链接已创建", "门店导购", "store_7", "rep1, rep2"}, []string{"还没有联系我链接"})
			var way model.ContactWay
			if err := app.db.Take(&way).Error; err != nil {
				t.Fatal(err)
			}
			rec = b.do("GET", fmt.Sprintf("/admin/contact-ways/%d/png", way.ID), nil)
			wantStatus(t, "png", rec, http.StatusOK)
			if ct := rec.Header().Get("Content-Type"); ct != "image/png" || !bytes.HasPrefix(rec.Body.Bytes(), []byte("\x89PNG")) {
				t.Errorf("png: %s", ct)
			}
			wantStatus(t, "an unknown code's png", b.do("GET", "/admin/contact-ways/99/png", nil), http.StatusNotFound)
			if es := auditLog(t, app, "?action=contactway.create"); !hasEntry(es, "op", AuditContactWayCreate, "store_7") {
				t.Errorf("audit: %+v", es)
			}
		}},
		{"a viewer cannot create a code; a taken scene is refused", func(t *testing.T, app *adminApp) {
			v := signedIn(t, app, "view")
			wantIn(t, "viewer's page", v.do("GET", "/admin/qrcodes", nil).Body.String(), []string{`id="no-qrcodes"`}, []string{`id="create-qr"`})
			rec := v.post("/admin/qrcodes", "/admin/qrcodes", url.Values{"label": {"x"}, "scene": {"s1"}})
			wantStatus(t, "viewer's create", rec, http.StatusForbidden)
			b := signedIn(t, app, "op")
			wantStatus(t, "create", b.post("/admin/qrcodes", "/admin/qrcodes", url.Values{"label": {"A"}, "scene": {"s1"}}), http.StatusSeeOther)
			rec = b.post("/admin/qrcodes", "/admin/qrcodes", url.Values{"label": {"B"}, "scene": {"s1"}})
			wantStatus(t, "same scene", rec, http.StatusConflict)
			wantIn(t, "refusal", pageText(rec.Body.String()), []string{"该场景值已被使用"}, nil)
			rec = b.do("POST", "/admin/qrcodes", url.Values{"label": {"C"}, "scene": {"s2"}})
			wantStatus(t, "a form without its CSRF token", rec, http.StatusForbidden)
			var n int64
			app.db.Model(&model.QRCode{}).Count(&n)
			if n != 1 {
				t.Errorf("%d codes, want 1", n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newAccountsApp(t))
		})
	}
}
