package handler

import (
	"context"
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// welcomeYAML is the journey the console tests publish.
const welcomeYAML = "key: welcome\nname: Welcome\ntrigger: { event: wechat.subscribe }\nsteps:\n  - { id: hello, send: { channel: wechat.text, text: hi } }\n"

// consoleDB is a fresh SQLite database, migrated, with users admin, op
// (operator) and view (viewer), each with password NAME+"-password", and
// an admin API key "bot-key" named deploy-bot.
func consoleDB(t *testing.T) *gorm.DB {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]string{"admin": model.RoleAdmin, "op": model.RoleOperator, "view": model.RoleViewer} {
		addUser(t, db, name, role)
	}
	db.Create(&model.APIKey{Name: "deploy-bot", Hash: HashAPIKey("bot-key"), Scope: model.ScopeAdmin})
	return db
}

// consoleOn is the console and its API on db: an ingestor, the admin
// (cheap bcrypt for unknown users) and the handler of cfg, whose DB,
// Ingestor, Admin and Logger it fills (and Accounts when unset).
func consoleOn(t *testing.T, db *gorm.DB, cfg Config) *adminApp {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db})
	t.Cleanup(ing.Close)
	a := NewAdmin(AdminConfig{DB: db, Secret: []byte("secret"), Logger: quiet})
	t.Cleanup(a.Close)
	cheap, _ := bcrypt.GenerateFromPassword([]byte("dummy"), bcrypt.MinCost)
	a.dummy = cheap
	cfg.DB, cfg.Ingestor, cfg.Admin, cfg.Logger = db, ing, a, quiet
	if cfg.Accounts == nil {
		cfg.Accounts = model.NewAccounts(db, nil)
	}
	return &adminApp{h: New(cfg), db: db, admin: a, ing: ing}
}

// newConsoleApp is a fresh console (consoleDB) with a journey engine
// (wechat.text sent nowhere).
func newConsoleApp(t *testing.T) *adminApp {
	t.Helper()
	db := consoleDB(t)
	reg := channels.NewRegistry()
	reg.Register(channels.WeChatText, channels.SenderFunc(func(context.Context, channels.Message) (channels.Result, error) {
		return channels.Result{ProviderID: "m1"}, nil
	}), channels.Capabilities{Address: channels.ByOpenID})
	eng := journey.New(journey.Config{DB: db, Senders: reg, Logger: slog.New(slog.DiscardHandler)})
	app := consoleOn(t, db, Config{Journeys: eng, TestRuns: eng, Senders: reg})
	app.eng = eng
	return app
}

// addUser creates a user with a role and the password NAME+"-password".
func addUser(t *testing.T, db *gorm.DB, name, role string) {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte(name+"-password"), bcrypt.MinCost)
	if err := db.Create(&model.AdminUser{Username: name, PasswordHash: string(hash), Role: role}).Error; err != nil {
		t.Fatal(err)
	}
}

// signedIn returns a browser signed in as name.
func signedIn(t *testing.T, app *adminApp, name string) *browser {
	t.Helper()
	b := app.browser(t)
	wantStatus(t, "sign in as "+name, b.login(name, name+"-password"), http.StatusSeeOther)
	return b
}

// call sends a JSON (or YAML) body to the admin API with the browser's
// session and the CSRF token of its pages, as the console's scripts would.
func (b *browser) call(method, path, body string) *httptest.ResponseRecorder {
	b.t.Helper()
	tok := b.token("/admin/")
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", tok)
	req.RemoteAddr = b.remote
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	rec := httptest.NewRecorder()
	b.app.h.ServeHTTP(rec, req)
	return rec
}

// withKey sends a request to the admin API with an API key.
func withKey(app *adminApp, key, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	app.h.ServeHTTP(rec, req)
	return rec
}

// post submits a console form with the CSRF token of the page it is on.
func (b *browser) post(page, path string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	form.Set("csrf_token", b.token(page))
	return b.do("POST", path, form)
}

// auditLog reads GET /api/v1/audit as deploy-bot.
func auditLog(t *testing.T, app *adminApp, query string) []AuditRow {
	t.Helper()
	rec := withKey(app, "bot-key", "GET", "/api/v1/audit"+query, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/audit%s: %d %s", query, rec.Code, rec.Body)
	}
	var out struct{ Entries []AuditRow }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out.Entries
}

// hasEntry reports whether the log has an entry of actor, action and object.
func hasEntry(es []AuditRow, actor, action, object string) bool {
	for _, e := range es {
		if e.Actor == actor && e.Action == action && e.Object == object {
			return true
		}
	}
	return false
}

// navText returns the text of the page's navigation (tags removed).
func navText(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<nav[^>]*>(.*?)</nav>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no <nav>: %.300s", page)
	}
	return regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[1], " ")
}

func userExists(app *adminApp, name string) bool {
	var n int64
	app.db.Model(&model.AdminUser{}).Where("username = ?", name).Count(&n)
	return n == 1
}

// TestConsoleRoles walks the console and its API as each role: what each
// may do, what it is refused (403, in the console a page saying so), and
// what the audit log then shows.
func TestConsoleRoles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp)
	}{
		{"a viewer reads but cannot publish; an operator publishes", func(t *testing.T, app *adminApp) {
			view := signedIn(t, app, "view")
			wantStatus(t, "viewer reads journeys", view.call("GET", "/api/v1/journeys", ""), 200)
			wantStatus(t, "viewer publishes", view.call("POST", "/api/v1/journeys/welcome/publish", welcomeYAML), 403,
				"you do not have permission", `"needs":"operator"`)
			var n int64
			app.db.Model(&model.Journey{}).Where("key = ?", "welcome").Count(&n)
			if n != 0 {
				t.Fatal("the viewer's refused publish made a journey")
			}
			op := signedIn(t, app, "op")
			wantStatus(t, "operator publishes", op.call("POST", "/api/v1/journeys/welcome/publish", welcomeYAML), 200, `"published":true`)
			wantStatus(t, "viewer pauses", view.call("POST", "/api/v1/journeys/welcome/pause", ""), 403)
			wantStatus(t, "operator pauses", op.call("POST", "/api/v1/journeys/welcome/pause", ""), 200, `"status":"paused"`)
		}},
		{"an operator cannot manage users or read the audit log", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			wantStatus(t, "users page", op.do("GET", "/admin/users", nil), 403, "你没有权限", "管理员")
			form := url.Values{"username": {"mallory"}, "role": {"admin"}, "password": {"mallory-password"}}
			wantStatus(t, "add a user", op.post("/admin/", "/admin/users", form), 403, "你没有权限")
			wantStatus(t, "remove admin", op.post("/admin/", "/admin/users/remove", url.Values{"username": {"admin"}, "confirm": {"yes"}}), 403)
			wantStatus(t, "promote itself", op.post("/admin/", "/admin/users/role", url.Values{"username": {"op"}, "role": {"admin"}}), 403)
			wantStatus(t, "audit API", op.call("GET", "/api/v1/audit", ""), 403, `"needs":"admin"`)
			if userExists(app, "mallory") || !userExists(app, "admin") {
				t.Error("a refused user change happened")
			}
			var u model.AdminUser
			app.db.Where("username = ?", "op").Take(&u)
			if u.Role != model.RoleOperator {
				t.Errorf("op's role is %s after a refused promotion", u.Role)
			}
		}},
		{"a form posted without its CSRF token is refused", func(t *testing.T, app *adminApp) {
			adm := signedIn(t, app, "admin")
			form := url.Values{"username": {"carol"}, "role": {"operator"}, "password": {"carol-password"}}
			wantStatus(t, "add without a token", adm.do("POST", "/admin/users", form), 403, "CSRF")
			if userExists(app, "carol") {
				t.Fatal("a form without its CSRF token added a user")
			}
			wantStatus(t, "add with the form's token", adm.post("/admin/users", "/admin/users", form), 303)
			if !userExists(app, "carol") {
				t.Fatal("the form with its token added no user")
			}
			wantStatus(t, "carol signs in", app.browser(t).login("carol", "carol-password"), 303)
		}},
		{"the last admin cannot be removed, disabled or demoted", func(t *testing.T, app *adminApp) {
			adm := signedIn(t, app, "admin")
			for _, c := range []struct{ path, role string }{{"/admin/users/remove", ""}, {"/admin/users/disable", ""}, {"/admin/users/role", "operator"}} {
				wantStatus(t, c.path, adm.post("/admin/users", c.path, url.Values{"username": {"admin"}, "role": {c.role}, "confirm": {"yes"}}), 409, "最后一位管理员")
			}
			var u model.AdminUser
			if app.db.Where("username = ?", "admin").Take(&u).Error != nil || u.Role != model.RoleAdmin || u.DisabledAt != nil {
				t.Fatalf("the last admin after the refused changes: %+v", u)
			}
			// With a second admin, the first can go.
			wantStatus(t, "promote op", adm.post("/admin/users", "/admin/users/role", url.Values{"username": {"op"}, "role": {"admin"}}), 303)
			op := signedIn(t, app, "op")
			wantStatus(t, "op removes admin, unconfirmed", op.post("/admin/users", "/admin/users/remove", url.Values{"username": {"admin"}}), 400, "确认删除")
			if !userExists(app, "admin") {
				t.Fatal("an unconfirmed removal removed admin")
			}
			wantStatus(t, "op removes admin", op.post("/admin/users", "/admin/users/remove", url.Values{"username": {"admin"}, "confirm": {"yes"}}), 303)
			if userExists(app, "admin") {
				t.Error("admin was not removed")
			}
			wantStatus(t, "removed admin's session", adm.do("GET", "/admin/", nil), 302)
			wantStatus(t, "op, now the last admin, demotes itself", op.post("/admin/users", "/admin/users/role", url.Values{"username": {"op"}, "role": {"viewer"}}), 409)
		}},
		{"a role change and a disabled user count at the next request", func(t *testing.T, app *adminApp) {
			adm, op := signedIn(t, app, "admin"), signedIn(t, app, "op")
			wantStatus(t, "publish", op.call("POST", "/api/v1/journeys/welcome/publish", welcomeYAML), 200)
			wantStatus(t, "demote op", adm.post("/admin/users", "/admin/users/role", url.Values{"username": {"op"}, "role": {"viewer"}}), 303)
			wantStatus(t, "op, now a viewer, pauses", op.call("POST", "/api/v1/journeys/welcome/pause", ""), 403)
			wantStatus(t, "disable op", adm.post("/admin/users", "/admin/users/disable", url.Values{"username": {"op"}}), 303)
			wantStatus(t, "disabled op's session", op.do("GET", "/admin/", nil), 302)
			wantStatus(t, "disabled op signs in", app.browser(t).login("op", "op-password"), 401)
			wantStatus(t, "enable op", adm.post("/admin/users", "/admin/users/enable", url.Values{"username": {"op"}}), 303)
			wantStatus(t, "enabled op signs in", app.browser(t).login("op", "op-password"), 303)
		}},
		{"the audit log records sign-ins, journey actions and enrollments by whom", func(t *testing.T, app *adminApp) {
			wantStatus(t, "a wrong password", app.browser(t).login("op", "wrong"), 401)
			op := signedIn(t, app, "op")
			wantStatus(t, "publish", op.call("POST", "/api/v1/journeys/welcome/publish", welcomeYAML), 200)
			wantStatus(t, "pause", op.call("POST", "/api/v1/journeys/welcome/pause", ""), 200)
			wantStatus(t, "resume (by key)", withKey(app, "bot-key", "POST", "/api/v1/journeys/welcome/resume", ""), 200)
			wantStatus(t, "enroll", op.call("POST", "/api/v1/journeys/welcome/enroll", `{"id":"r1","member":{"unionid":"u1"}}`), 202)
			app.db.Create(&model.Member{OpenID: "o_t", AppID: "wx1"})
			wantStatus(t, "test run", op.call("POST", "/api/v1/journeys/welcome/test", `{"member":{"openid":"o_t"}}`), 200)
			wantStatus(t, "test send", op.call("POST", "/api/v1/channels/wechat.text/test", `{"to":"o_t","appid":"wx1","text":"hi"}`), 200)
			es := auditLog(t, app, "")
			for _, want := range []struct{ actor, action, object string }{
				{"op", AuditSignInFailed, "op"}, {"op", AuditSignIn, "op"}, {"op", AuditJourneyPublish, "welcome"},
				{"op", AuditJourneyPause, "welcome"}, {"deploy-bot", AuditJourneyResume, "welcome"},
				{"op", AuditJourneyEnroll, "welcome"}, {"op", AuditJourneyTest, "welcome"}, {"op", AuditChannelTest, "wechat.text"},
			} {
				if !hasEntry(es, want.actor, want.action, want.object) {
					t.Errorf("no audit entry %s %s %s in %+v", want.actor, want.action, want.object, es)
				}
			}
			if es[0].Action != AuditChannelTest {
				t.Errorf("newest entry is %s, want the test send", es[0].Action)
			}
			for _, e := range es {
				switch {
				case e.Action == AuditJourneyPause && (e.Role != model.RoleOperator || e.Via != model.ViaSession || e.IP != "192.0.2.10"):
					t.Errorf("pause entry = %+v, want role operator, via session, ip 192.0.2.10", e)
				case e.Action == AuditJourneyResume && (e.Via != model.ViaAPIKey || !strings.Contains(string(e.Detail), `"api_key_id"`)):
					t.Errorf("resume entry = %+v, want via api_key naming the key", e)
				case e.Action == AuditJourneyEnroll && !strings.Contains(string(e.Detail), `"accepted":1`):
					t.Errorf("enroll entry detail = %s, want accepted 1", e.Detail)
				}
			}
			if got := auditLog(t, app, "?user=deploy-bot"); len(got) != 1 || got[0].Action != AuditJourneyResume {
				t.Errorf("filtered by user deploy-bot: %+v", got)
			}
			// The page, filtered by action, as an admin reads it.
			adm := signedIn(t, app, "admin")
			rec := adm.do("GET", "/admin/audit?action=journey.pause", nil)
			wantStatus(t, "audit page", rec, 200, "暂停旅程", "welcome", "CST")
			if strings.Contains(rec.Body.String(), "发布旅程</td>") {
				t.Error("the page filtered on journey.pause lists a publish")
			}
		}},
		{"the English switch renders English, and stays", func(t *testing.T, app *adminApp) {
			adm := signedIn(t, app, "admin")
			rec := adm.do("GET", "/admin/?lang=en", nil)
			wantStatus(t, "English dashboard", rec, 200, "Dashboard", "Recent deliveries", `lang="en"`)
			if !strings.Contains(html.UnescapeString(rec.Body.String()), "All times are China Standard Time, CST (UTC+8)") {
				t.Error("the English page does not say the times' zone")
			}
			nav := navText(t, rec.Body.String())
			for _, w := range []string{"Journeys", "Members", "Deliveries", "Accounts &amp; channels", "QR codes", "Users", "Audit log"} {
				if !strings.Contains(nav, w) {
					t.Errorf("English nav %q lacks %q", nav, w)
				}
			}
			if regexp.MustCompile(`\p{Han}`).MatchString(nav) {
				t.Errorf("English nav has Chinese: %q", nav)
			}
			wantStatus(t, "the users page next", adm.do("GET", "/admin/users", nil), 200, "Add a user", "Initial password")
			// A browser that asks for English gets it without the switch.
			en := app.browser(t)
			en.header.Set("Accept-Language", "en-US,en;q=0.9")
			wantStatus(t, "login page in English", en.do("GET", "/admin/login", nil), 200, "Log in")
			zh := app.browser(t)
			zh.header.Set("Accept-Language", "zh-TW,zh;q=0.9,en;q=0.5")
			wantStatus(t, "login page in Chinese", zh.do("GET", "/admin/login", nil), 200, "登录")
		}},
		{"the Chinese console has no English in its navigation", func(t *testing.T, app *adminApp) {
			adm := signedIn(t, app, "admin")
			rec := adm.do("GET", "/admin/", nil)
			wantStatus(t, "dashboard", rec, 200, `lang="zh-CN"`, "管理员")
			if !strings.Contains(html.UnescapeString(rec.Body.String()), "中国标准时间 CST (UTC+8)") {
				t.Error("the page does not say the times' zone")
			}
			nav := navText(t, rec.Body.String())
			for _, w := range []string{"仪表盘", "旅程", "会员", "发送记录", "账号与渠道", "二维码", "用户", "审计日志"} {
				if !strings.Contains(nav, w) {
					t.Errorf("nav %q lacks %s", nav, w)
				}
			}
			if w := regexp.MustCompile(`[A-Za-z]{2,}`).FindString(nav); w != "" {
				t.Errorf("the Chinese nav has the English word %q: %q", w, nav)
			}
			if strings.Contains(rec.Body.String(), `class="badge" id="role">admin<`) {
				t.Error("the role shows in English on the Chinese page")
			}
			for _, n := range consoleNav {
				if rec := adm.do("GET", n.Path, nil); rec.Code != 200 || strings.Contains(rec.Body.String(), "即将推出") {
					t.Errorf("nav page %s: %d; want a page of its own", n.Path, rec.Code)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newConsoleApp(t))
		})
	}
}

// Every route of the admin API and the console is decided by the one
// table: a route that changes something and is not listed is an admin's.
func TestRequiredRole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ method, route, want string }{
		{"GET", "/api/v1/journeys", model.RoleViewer},
		{"POST", "/api/v1/journeys/:key/publish", model.RoleOperator},
		{"POST", "/api/v1/journeys/:key/enroll", model.RoleOperator},
		{"POST", "/api/v1/channels/:channel/test", model.RoleOperator},
		{"GET", "/api/v1/audit", model.RoleAdmin},
		{"POST", "/admin/users/:op", model.RoleAdmin},
		{"POST", "/api/v1/some/new/thing", model.RoleAdmin},
	} {
		if got := requiredRole(tc.method, tc.route); got != tc.want {
			t.Errorf("%s %s needs %s, want %s", tc.method, tc.route, got, tc.want)
		}
	}
}
