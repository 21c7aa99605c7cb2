package handler

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// adminApp is a fresh router with the admin page on its own SQLite database.
type adminApp struct {
	h     http.Handler
	db    *gorm.DB
	admin *Admin
	// eng and ing are the journey engine and the ingestor, when the app
	// has them (consoleOn).
	eng *journey.Engine
	ing *journey.Ingestor
}

// newAdminApp returns a fresh app with user admin (password "right-pw"),
// an events key "ev-key", an admin key "adm-key" and journey welcome.
func newAdminApp(t *testing.T, cfg AdminConfig) *adminApp {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	setPassword(t, db, "admin", "right-pw")
	db.Create(&model.APIKey{Name: "events", Hash: HashAPIKey("ev-key"), Scope: model.ScopeEvents})
	db.Create(&model.APIKey{Name: "admin", Hash: HashAPIKey("adm-key"), Scope: model.ScopeAdmin})
	db.Create(&model.Journey{Key: "welcome", Name: "欢迎", Status: model.JourneyActive})
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db})
	t.Cleanup(ing.Close)
	cfg.DB, cfg.Secret = db, []byte("secret")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := NewAdmin(cfg)
	t.Cleanup(a.Close)
	cheap, _ := bcrypt.GenerateFromPassword([]byte("dummy"), bcrypt.MinCost)
	a.dummy = cheap // as cheap as the test users' hashes
	return &adminApp{h: New(Config{DB: db, Ingestor: ing, Accounts: model.NewAccounts(db, nil), Admin: a}), db: db, admin: a}
}

// setPassword creates or updates an admin user, as `admin passwd` does.
func setPassword(t *testing.T, db *gorm.DB, user, pw string) {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	u := model.AdminUser{Username: user}
	if err := db.Where(&u).Assign(model.AdminUser{PasswordHash: string(hash)}).FirstOrCreate(&u).Error; err != nil {
		t.Fatal(err)
	}
}

// browser is one client of the app: its cookies, address and headers.
type browser struct {
	t       *testing.T
	app     *adminApp
	remote  string
	header  http.Header
	cookies map[string]*http.Cookie
}

func (app *adminApp) browser(t *testing.T) *browser {
	return &browser{t: t, app: app, remote: "192.0.2.10:40000", header: http.Header{}, cookies: map[string]*http.Cookie{}}
}

func (b *browser) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	req.RemoteAddr = b.remote
	for k, vs := range b.header {
		req.Header[k] = vs
	}
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	rec := httptest.NewRecorder()
	b.app.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return rec
}

var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// token reads the CSRF token from the form on path.
func (b *browser) token(path string) string {
	b.t.Helper()
	rec := b.do("GET", path, nil)
	m := csrfInput.FindStringSubmatch(rec.Body.String())
	if m == nil {
		b.t.Fatalf("GET %s: no csrf_token in %d %s", path, rec.Code, rec.Body)
	}
	return m[1]
}

// login submits the sign-in form as a person would.
func (b *browser) login(user, pw string) *httptest.ResponseRecorder {
	b.t.Helper()
	tok := b.token("/admin/login")
	return b.do("POST", "/admin/login", url.Values{"username": {user}, "password": {pw}, "csrf_token": {tok}})
}

func (b *browser) logout() *httptest.ResponseRecorder {
	b.t.Helper()
	tok := b.token("/admin/")
	return b.do("POST", "/admin/logout", url.Values{"csrf_token": {tok}})
}

func wantStatus(t *testing.T, what string, rec *httptest.ResponseRecorder, status int, in ...string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("%s: status %d, want %d; body %.300s", what, rec.Code, status, rec.Body)
	}
	for _, s := range in {
		if !strings.Contains(rec.Body.String(), s) {
			t.Errorf("%s: body %.300q does not contain %q", what, rec.Body, s)
		}
	}
}

func TestAdminSignIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp, b *browser)
	}{
		{"the page asks to sign in", func(t *testing.T, app *adminApp, b *browser) {
			rec := b.do("GET", "/admin/", nil)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/admin/login" {
				t.Errorf("GET /admin/ = %d to %q, want 302 to /admin/login", rec.Code, rec.Header().Get("Location"))
			}
			wantStatus(t, "login page", b.do("GET", "/admin/login", nil), 200, "登录", "密码", `name="csrf_token"`)
			wantStatus(t, "in English", b.do("GET", "/admin/login?lang=en", nil), 200, "Log in", "Password")
			wantStatus(t, "the JSON API", b.do("GET", "/api/v1/journeys", nil), 401)
		}},
		{"a wrong password", func(t *testing.T, app *adminApp, b *browser) {
			wantStatus(t, "sign in", b.login("admin", "wrong"), 401, "用户名或密码错误")
			wantStatus(t, "then the page", b.do("GET", "/admin/", nil), 302)
		}},
		{"the right password opens the page and the API", func(t *testing.T, app *adminApp, b *browser) {
			rec := b.login("admin", "right-pw")
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/" {
				t.Fatalf("sign in = %d to %q, want 303 to /admin/", rec.Code, rec.Header().Get("Location"))
			}
			ck := b.cookies[sessionCookie]
			if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure {
				t.Errorf("session cookie = %+v, want HttpOnly, SameSite=Lax, not Secure over plain HTTP", ck)
			}
			wantStatus(t, "page", b.do("GET", "/admin/", nil), 200, "旅程", "welcome", "欢迎")
			wantStatus(t, "API", b.do("GET", "/api/v1/journeys", nil), 200, `"key":"welcome"`)
			if rec := b.do("GET", "/admin/login", nil); rec.Code != http.StatusFound {
				t.Errorf("login page when signed in = %d, want 302 to the page", rec.Code)
			}
		}},
		{"a forged session cookie", func(t *testing.T, app *adminApp, b *browser) {
			b.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: "admin|99999999999|forged"}
			wantStatus(t, "API", b.do("GET", "/api/v1/journeys", nil), 401)
			wantStatus(t, "page", b.do("GET", "/admin/", nil), 302)
		}},
		{"sign-in renews the session token", func(t *testing.T, app *adminApp, b *browser) {
			b.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: "planted-by-an-attacker"}
			b.login("admin", "right-pw")
			if got := b.cookies[sessionCookie].Value; got == "planted-by-an-attacker" {
				t.Error("the session token was not renewed at sign-in")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := newAdminApp(t, AdminConfig{})
			tc.run(t, app, app.browser(t))
		})
	}
}

func TestSignInLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp)
	}{
		{"five wrong passwords lock the user, even with the right one next", func(t *testing.T, app *adminApp) {
			b := app.browser(t)
			for i := range UserFailures {
				b.remote = "192.0.2." + string(rune('1'+i)) + ":1000" // from different IPs
				wantStatus(t, "wrong password", b.login("admin", "wrong"), 401)
			}
			wantStatus(t, "right password", b.login("admin", "right-pw"), 429, "尝试次数过多，请 3 分钟后再试")
			b.header.Set("Accept-Language", "en")
			b.do("GET", "/admin/login?lang=en", nil)
			en := app.browser(t)
			en.cookies = b.cookies
			wantStatus(t, "in English", en.login("admin", "right-pw"), 429, "Too many attempts; try again in 3 min")
			wantStatus(t, "another user still signs in", newUser(t, app, "ops").login("ops", "ops-password"), 303)
		}},
		{"a right password does not count as a failure", func(t *testing.T, app *adminApp) {
			for range UserFailures + 2 {
				b := app.browser(t)
				wantStatus(t, "right password", b.login("admin", "right-pw"), 303)
			}
		}},
		{"twenty attempts from one IP, any user, then 429", func(t *testing.T, app *adminApp) {
			b := app.browser(t)
			for i := range IPAttempts {
				// X-Forwarded-For from a client that is not a trusted proxy changes nothing.
				b.header.Set("X-Forwarded-For", "203.0.113."+string(rune('0'+i%10)))
				b.login("user"+string(rune('a'+i)), "wrong")
			}
			wantStatus(t, "attempt 21", b.login("admin", "right-pw"), 429, "尝试次数过多，请 1 分钟后再试")
			other := app.browser(t)
			other.remote = "198.51.100.7:5000"
			wantStatus(t, "another IP", other.login("admin", "right-pw"), 303)
		}},
		{"behind a trusted proxy the limit is per forwarded client", func(t *testing.T, app *adminApp) {
			app = newAdminApp(t, AdminConfig{TrustedProxies: []string{"10.0.0.0/8"}})
			for i := range IPAttempts {
				b := app.browser(t)
				b.remote = "10.0.0.2:3000"
				b.header.Set("X-Forwarded-For", "203.0.113.1")
				b.login("user"+string(rune('a'+i)), "wrong")
			}
			b := app.browser(t)
			b.remote = "10.0.0.2:3000"
			b.header.Set("X-Forwarded-For", "203.0.113.1")
			wantStatus(t, "the same client", b.login("admin", "right-pw"), 429)
			b = app.browser(t)
			b.remote = "10.0.0.2:3000"
			b.header.Set("X-Forwarded-For", "203.0.113.2")
			wantStatus(t, "another client through the proxy", b.login("admin", "right-pw"), 303)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newAdminApp(t, AdminConfig{}))
		})
	}
}

func newUser(t *testing.T, app *adminApp, name string) *browser {
	setPassword(t, app.db, name, name+"-password")
	b := app.browser(t)
	b.remote = "198.51.100.99:1"
	return b
}

func TestUnknownUserCostsOneComparison(t *testing.T) {
	t.Parallel()
	app := newAdminApp(t, AdminConfig{})
	for _, user := range []string{"admin", "nobody"} {
		b := app.browser(t)
		before := app.admin.compares.Load()
		wantStatus(t, user, b.login(user, "wrong"), 401, "用户名或密码错误")
		if n := app.admin.compares.Load() - before; n != 1 {
			t.Errorf("signing in as %s made %d bcrypt comparisons, want 1", user, n)
		}
	}
}

func TestSignInBusy(t *testing.T) {
	t.Parallel()
	app := newAdminApp(t, AdminConfig{BcryptSlots: 1})
	app.admin.slotWait = 50 * time.Millisecond
	app.admin.slots <- struct{}{} // another sign-in holds the only slot
	b := app.browser(t)
	wantStatus(t, "sign in while busy", b.login("admin", "right-pw"), 503, "服务器繁忙")
	<-app.admin.slots
	wantStatus(t, "then", b.login("admin", "right-pw"), 303)
}

func TestSessionsEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, app *adminApp, b *browser)
	}{
		{"logout", func(t *testing.T, app *adminApp, b *browser) {
			rec := b.logout()
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/login" {
				t.Errorf("logout = %d to %q", rec.Code, rec.Header().Get("Location"))
			}
		}},
		{"a password change", func(t *testing.T, app *adminApp, b *browser) {
			setPassword(t, app.db, "admin", "a-new-password")
		}},
		{"the user deleted", func(t *testing.T, app *adminApp, b *browser) {
			app.db.Where("username = ?", "admin").Delete(&model.AdminUser{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := newAdminApp(t, AdminConfig{})
			b := app.browser(t)
			wantStatus(t, "sign in", b.login("admin", "right-pw"), 303)
			old := *b.cookies[sessionCookie]
			wantStatus(t, "page", b.do("GET", "/admin/", nil), 200)
			tc.end(t, app, b)
			// Replay the old cookie, as someone who copied it would.
			thief := app.browser(t)
			thief.cookies[sessionCookie] = &old
			rec := thief.do("GET", "/admin/", nil)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/admin/login" {
				t.Errorf("replayed cookie on /admin/ = %d to %q, want 302 to /admin/login", rec.Code, rec.Header().Get("Location"))
			}
			thief.cookies[sessionCookie] = &old
			wantStatus(t, "replayed cookie on the API", thief.do("GET", "/api/v1/journeys", nil), 401)
		})
	}
	t.Run("the new password signs in again", func(t *testing.T) {
		t.Parallel()
		app := newAdminApp(t, AdminConfig{})
		setPassword(t, app.db, "admin", "a-new-password")
		b := app.browser(t)
		wantStatus(t, "old password", b.login("admin", "right-pw"), 401)
		wantStatus(t, "new password", b.login("admin", "a-new-password"), 303)
		wantStatus(t, "page", b.do("GET", "/admin/", nil), 200)
	})
}

func TestCookieSecure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    AdminConfig
		remote string
		proto  string
		origin string // what the browser sends: the scheme it is on
		want   bool
	}{
		{"auto, plain HTTP", AdminConfig{}, "192.0.2.1:1", "", "http", false},
		{"always", AdminConfig{CookieSecure: "always"}, "192.0.2.1:1", "", "https", true},
		{"never, even through an https proxy", AdminConfig{CookieSecure: "never", TrustedProxies: []string{"10.0.0.1"}}, "10.0.0.1:1", "https", "https", false},
		{"auto, trusted proxy says https", AdminConfig{TrustedProxies: []string{"10.0.0.1"}}, "10.0.0.1:1", "https", "https", true},
		{"auto, an untrusted client says https", AdminConfig{TrustedProxies: []string{"10.0.0.1"}}, "192.0.2.1:1", "https", "http", false},
		{"auto, no trusted proxy configured", AdminConfig{}, "10.0.0.1:1", "https", "http", false},
		{"auto, https public URL", AdminConfig{PublicURL: "https://journeys.example.com"}, "192.0.2.1:1", "", "https", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := newAdminApp(t, tc.cfg)
			b := app.browser(t)
			b.remote = tc.remote
			if tc.proto != "" {
				b.header.Set("X-Forwarded-Proto", tc.proto)
			}
			b.header.Set("Origin", tc.origin+"://example.com")
			rec := b.login("admin", "right-pw")
			wantStatus(t, "sign in", rec, 303)
			for _, name := range []string{sessionCookie, csrfCookie} {
				ck := b.cookies[name]
				if ck == nil {
					t.Fatalf("no %s cookie", name)
				}
				if ck.Secure != tc.want {
					t.Errorf("%s Secure = %v, want %v", name, ck.Secure, tc.want)
				}
			}
		})
	}
}

func TestAdminHeaders(t *testing.T) {
	t.Parallel()
	app := newAdminApp(t, AdminConfig{})
	b := app.browser(t)
	for _, path := range []string{"/admin/login", "/admin/"} {
		rec := b.do("GET", path, nil)
		if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy = %q, want frame-ancestors 'none'", path, got)
		}
		if got := rec.Header().Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options = %q, want DENY", path, got)
		}
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		post   func(b *browser) *httptest.ResponseRecorder
		status int
		in     []string
	}{
		{"sign-in without a token", func(b *browser) *httptest.ResponseRecorder {
			b.token("/admin/login") // the CSRF cookie is there, the field is not
			return b.do("POST", "/admin/login", url.Values{"username": {"admin"}, "password": {"right-pw"}})
		}, 403, []string{"CSRF", "刷新页面"}},
		{"sign-in with a token from another browser", func(b *browser) *httptest.ResponseRecorder {
			other := b.app.browser(b.t)
			tok := other.token("/admin/login")
			b.token("/admin/login")
			return b.do("POST", "/admin/login", url.Values{"username": {"admin"}, "password": {"right-pw"}, "csrf_token": {tok}})
		}, 403, []string{"CSRF"}},
		{"sign-in from another site", func(b *browser) *httptest.ResponseRecorder {
			tok := b.token("/admin/login")
			b.header.Set("Origin", "http://evil.example")
			return b.do("POST", "/admin/login", url.Values{"username": {"admin"}, "password": {"right-pw"}, "csrf_token": {tok}})
		}, 403, []string{"CSRF"}},
		{"sign-in with the form's token", func(b *browser) *httptest.ResponseRecorder {
			return b.login("admin", "right-pw")
		}, 303, nil},
		{"logout without a token", func(b *browser) *httptest.ResponseRecorder {
			b.login("admin", "right-pw")
			rec := b.do("POST", "/admin/logout", url.Values{})
			if b.do("GET", "/admin/", nil).Code != http.StatusOK {
				b.t.Error("a refused logout ended the session")
			}
			return rec
		}, 403, []string{"CSRF"}},
		{"in English", func(b *browser) *httptest.ResponseRecorder {
			b.token("/admin/login?lang=en")
			return b.do("POST", "/admin/login", url.Values{"username": {"admin"}, "password": {"right-pw"}})
		}, 403, []string{"reload the page"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := newAdminApp(t, AdminConfig{})
			wantStatus(t, tc.name, tc.post(app.browser(t)), tc.status, tc.in...)
		})
	}
}

func TestAPIKeyScopes(t *testing.T) {
	t.Parallel()
	event := `{"id":"e1","type":"order.paid","member":{"phone":"13800000000"}}`
	for _, tc := range []struct {
		name   string
		key    string
		method string
		path   string
		status int
		in     string
	}{
		{"events key posts events", "ev-key", "POST", "/api/v1/events", 202, `"accepted":1`},
		{"events key cannot read the admin API", "ev-key", "GET", "/api/v1/journeys", 403, `needs scope \"admin\"`},
		{"admin key reads journeys", "adm-key", "GET", "/api/v1/journeys", 200, `"key":"welcome"`},
		{"admin key reads deliveries", "adm-key", "GET", "/api/v1/deliveries", 200, `"deliveries"`},
		{"admin key cannot post events", "adm-key", "POST", "/api/v1/events", 403, `needs scope \"events\"`},
		{"unknown key", "nope", "GET", "/api/v1/journeys", 401, "invalid api key"},
		{"revoked events key", "revoked-key", "POST", "/api/v1/events", 401, "revoked"},
		{"revoked admin key", "revoked-admin", "GET", "/api/v1/journeys", 401, "revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := newAdminApp(t, AdminConfig{})
			now := time.Now()
			app.db.Create(&model.APIKey{Name: "old", Hash: HashAPIKey("revoked-key"), Scope: model.ScopeEvents, RevokedAt: &now})
			app.db.Create(&model.APIKey{Name: "old admin", Hash: HashAPIKey("revoked-admin"), Scope: model.ScopeAdmin, RevokedAt: &now})
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(event))
			req.Header.Set("Authorization", "Bearer "+tc.key)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			app.h.ServeHTTP(rec, req)
			wantStatus(t, tc.name, rec, tc.status, tc.in)
		})
	}
}

func TestAPIKeyLastUsed(t *testing.T) {
	t.Parallel()
	app := newAdminApp(t, AdminConfig{})
	call := func() {
		req := httptest.NewRequest("GET", "/api/v1/journeys", nil)
		req.Header.Set("Authorization", "Bearer adm-key")
		rec := httptest.NewRecorder()
		app.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	lastUsed := func() *time.Time {
		var k model.APIKey
		app.db.Where("name = ?", "admin").Take(&k)
		return k.LastUsedAt
	}
	call()
	first := lastUsed()
	if first == nil {
		t.Fatal("last_used_at not set after a call")
	}
	call()
	if second := lastUsed(); !second.Equal(*first) {
		t.Errorf("last_used_at moved from %v to %v within a minute", first, second)
	}
	old := time.Now().Add(-2 * time.Minute).UTC()
	app.db.Model(&model.APIKey{}).Where("name = ?", "admin").Update("last_used_at", old)
	call()
	if third := lastUsed(); !third.After(old.Add(time.Minute)) {
		t.Errorf("last_used_at = %v after a call two minutes later, want now", third)
	}
}

func TestSessionStoreCleanup(t *testing.T) {
	t.Parallel()
	app := newAdminApp(t, AdminConfig{})
	s := app.admin.store
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	s.Commit("old", []byte("x"), past)
	s.Commit("live", []byte("y"), future)
	if _, found, _ := s.Find("old"); found {
		t.Error("an expired session was found")
	}
	if b, found, _ := s.Find("live"); !found || string(b) != "y" {
		t.Errorf("live session = %q, %v", b, found)
	}
	s.Commit("live", []byte("z"), future)
	if b, _, _ := s.Find("live"); string(b) != "z" {
		t.Errorf("a second commit did not replace the data: %q", b)
	}
	if n, err := s.DeleteExpired(t.Context()); err != nil || n != 1 {
		t.Errorf("DeleteExpired = %d, %v; want 1", n, err)
	}
}
