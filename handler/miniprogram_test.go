package handler

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/model"
)

const (
	mpAppID  = "wxmini0000000001"
	mpSecret = "token-signing-key-for-tests"
)

// fakeSessions is a MiniProgramSessions over known codes: each answers
// once, as WeChat's are; an unknown code is refused.
type fakeSessions struct {
	mu    sync.Mutex
	codes map[string][2]string // code -> openid, unionid
	err   error                // answered for every code when set
}

func (f *fakeSessions) Code2Session(_ context.Context, code string) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", "", f.err
	}
	id, ok := f.codes[code]
	if !ok {
		return "", "", fmt.Errorf("code2session: errcode 40029: %w", ErrLoginCodeRefused)
	}
	delete(f.codes, code)
	return id[0], id[1], nil
}

// mpEnv is a fresh handler with a mini-program configured, and its clock.
type mpEnv struct {
	*cbEnv
	sessions *fakeSessions
	clk      *clock.Simulated
}

func newMPEnv(t *testing.T) *mpEnv {
	t.Helper()
	e := &mpEnv{clk: clock.NewSimulated(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)),
		sessions: &fakeSessions{codes: map[string][2]string{"code-ok": {"o_mp_1", "u_1"}, "code-no-union": {"o_mp_2", ""}}}}
	e.cbEnv = newCallbackEnv(t, func(c *Config) {
		c.MiniProgram, c.MiniProgramAppID, c.MiniProgramSecret = e.sessions, mpAppID, []byte(mpSecret)
		c.Now = e.clock
	})
	return e
}

func (e *mpEnv) clock() time.Time { return e.clk.Now() }

func (e *mpEnv) advance(d time.Duration) { e.clk.Advance(d) }

// post sends body to path with the headers and returns the answer.
func (e *mpEnv) post(path, body string, headers map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return e.serve(req)
}

// login exchanges code for a token, failing the test if it cannot.
func (e *mpEnv) login(t *testing.T, code string) string {
	t.Helper()
	rec := e.post("/api/v1/miniprogram/session", fmt.Sprintf(`{"code":%q}`, code), nil)
	var ans struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ans) != nil || ans.Token == "" || ans.ExpiresIn != 7200 {
		t.Fatalf("session for %q: %d %s; want 200 with a token expiring in 7200 s", code, rec.Code, rec.Body)
	}
	return ans.Token
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// forge returns tok with its claims replaced and its signature kept.
func forge(t *testing.T, tok string, change func(*mpClaims)) string {
	t.Helper()
	payload, sig, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var cl mpClaims
	if err := json.Unmarshal(raw, &cl); err != nil {
		t.Fatal(err)
	}
	change(&cl)
	b, _ := json.Marshal(cl)
	return base64.RawURLEncoding.EncodeToString(b) + "." + sig
}

const (
	openedHome = `{"type":"miniprogram.opened","props":{"page":"pages/index/index"},"at":"2026-11-24T18:00:00+08:00"}`
	closedHome = `{"type":"miniprogram.closed","props":{"page":"pages/index/index","duration_s":42.5},"at":"2026-11-24T18:00:42+08:00"}`
)

// TestMiniProgram: each case runs on a fresh handler and database; steps
// get the token of a login with code-ok (or build one from it).
func TestMiniProgram(t *testing.T) {
	t.Parallel()
	type step struct {
		name       string
		path       string // "session" or "events"
		body       string
		auth       func(t *testing.T, e *mpEnv, tok string) map[string]string
		wantStatus int
		wantIn     []string
		wantEvents int
	}
	withToken := func(t *testing.T, e *mpEnv, tok string) map[string]string { return bearer(tok) }
	noAuth := func(*testing.T, *mpEnv, string) map[string]string { return nil }
	expired := func(t *testing.T, e *mpEnv, tok string) map[string]string {
		e.advance(MiniProgramTokenTTL)
		return bearer(tok)
	}
	events := func(evs ...string) string { return `{"events":[` + strings.Join(evs, ",") + `]}` }
	cases := []struct {
		name  string
		login bool // log in with code-ok first
		steps []step
	}{
		{"a session token posts events of its member", true, []step{
			{"opened and closed", "events", events(openedHome, closedHome), withToken, 202, []string{`"accepted":2`, `"duplicates":0`}, 2},
			{"one event on its own", "events", `{"type":"miniprogram.opened","props":{"page":"pages/shop/shop"}}`, withToken, 202, []string{`"accepted":1`}, 3},
		}},
		{"a repeated event is a duplicate", true, []step{
			{"with an id", "events", `{"id":"v-1","type":"miniprogram.opened","props":{"page":"p/a"}}`, withToken, 202, []string{`"accepted":1`}, 1},
			{"the same id again", "events", `{"id":"v-1","type":"miniprogram.opened","props":{"page":"p/a"}}`, withToken, 202, []string{`"accepted":0`, `"duplicates":1`}, 1},
			{"the same id, another page", "events", `{"id":"v-1","type":"miniprogram.opened","props":{"page":"p/b"}}`, withToken, 409, []string{`already used`}, 1},
			{"without id: type, at and page", "events", openedHome, withToken, 202, []string{`"accepted":1`}, 2},
			{"the same again", "events", openedHome, withToken, 202, []string{`"duplicates":1`}, 2},
			{"twice in one batch", "events", events(closedHome, closedHome), withToken, 202, []string{`"accepted":1`, `"duplicates":1`}, 3},
		}},
		{"no token", false, []step{
			{"no Authorization", "events", openedHome, noAuth, 401, []string{"Bearer"}, 0},
			{"an empty bearer", "events", openedHome, func(*testing.T, *mpEnv, string) map[string]string { return bearer("") }, 401, nil, 0},
			{"an events API key is no token", "events", openedHome, func(*testing.T, *mpEnv, string) map[string]string { return bearer(testKey) }, 401, []string{"invalid token"}, 0},
		}},
		{"forged tokens", true, []step{
			{"another openid, the signature kept", "events", openedHome, func(t *testing.T, _ *mpEnv, tok string) map[string]string {
				return bearer(forge(t, tok, func(c *mpClaims) { c.OpenID = "o_someone_else" }))
			}, 401, []string{"invalid token"}, 0},
			{"a later expiry, the signature kept", "events", openedHome, func(t *testing.T, _ *mpEnv, tok string) map[string]string {
				return bearer(forge(t, tok, func(c *mpClaims) { c.Exp += 86400 }))
			}, 401, []string{"invalid token"}, 0},
			{"the signature changed", "events", openedHome, func(t *testing.T, _ *mpEnv, tok string) map[string]string {
				payload, sig, _ := strings.Cut(tok, ".")
				b, _ := base64.RawURLEncoding.DecodeString(sig)
				b[0] ^= 1
				return bearer(payload + "." + base64.RawURLEncoding.EncodeToString(b))
			}, 401, []string{"invalid token"}, 0},
			{"signed with another key", "events", openedHome, func(t *testing.T, e *mpEnv, _ string) map[string]string {
				return bearer(signMPToken([]byte("not the key"), mpClaims{AppID: mpAppID, OpenID: "o_mp_1", Exp: e.clock().Add(time.Hour).Unix()}))
			}, 401, []string{"invalid token"}, 0},
			{"no signature", "events", openedHome, func(t *testing.T, _ *mpEnv, tok string) map[string]string {
				payload, _, _ := strings.Cut(tok, ".")
				return bearer(payload)
			}, 401, []string{"invalid token"}, 0},
			{"another mini-program's", "events", openedHome, func(t *testing.T, e *mpEnv, _ string) map[string]string {
				return bearer(signMPToken([]byte(mpSecret), mpClaims{AppID: "wxother", OpenID: "o_mp_1", Exp: e.clock().Add(time.Hour).Unix()}))
			}, 401, []string{"another mini-program"}, 0},
		}},
		{"tokens expire after two hours", true, []step{
			{"a second short of two hours", "events", openedHome, func(t *testing.T, e *mpEnv, tok string) map[string]string {
				e.advance(MiniProgramTokenTTL - time.Second)
				return bearer(tok)
			}, 202, []string{`"accepted":1`}, 1},
			{"at two hours", "events", closedHome, func(t *testing.T, e *mpEnv, tok string) map[string]string {
				e.advance(time.Second)
				return bearer(tok)
			}, 401, []string{"expired"}, 1},
		}},
		{"an expired token stores nothing", true, []step{
			{"two hours later", "events", events(openedHome, closedHome), expired, 401, []string{"expired"}, 0},
		}},
		{"the session refuses", false, []step{
			{"an unknown code", "session", `{"code":"code-nope"}`, noAuth, 400, []string{"wx.login again"}, 0},
			{"broken JSON", "session", `{"code":`, noAuth, 400, []string{"not JSON"}, 0},
			{"no code", "session", `{}`, noAuth, 400, []string{"wx.login"}, 0},
			{"a code of the wrong type", "session", `{"code":42}`, noAuth, 400, nil, 0},
			{"a used code", "session", `{"code":"code-ok"}`, noAuth, 200, []string{`"token":`, `"expires_in":7200`}, 0},
			{"the same code again", "session", `{"code":"code-ok"}`, noAuth, 400, []string{"already used"}, 0},
		}},
		{"bad events store nothing", true, []step{
			{"broken JSON", "events", `{"type":`, withToken, 400, []string{"not JSON"}, 0},
			{"an unknown type among good ones", "events", events(openedHome, `{"type":"miniprogram.shared","props":{"page":"p"}}`), withToken, 400, []string{`"index":1`, "miniprogram.opened or miniprogram.closed"}, 0},
			{"a brand type", "events", `{"type":"order.paid","props":{"page":"p"}}`, withToken, 400, []string{"type"}, 0},
			{"no page", "events", `{"type":"miniprogram.opened","props":{}}`, withToken, 400, []string{"props.page"}, 0},
			{"a negative duration", "events", `{"type":"miniprogram.closed","props":{"page":"p","duration_s":-1}}`, withToken, 400, []string{"props.duration_s"}, 0},
			{"a duration that is no number", "events", `{"type":"miniprogram.closed","props":{"page":"p","duration_s":"12"}}`, withToken, 400, []string{"props.duration_s"}, 0},
			{"another prop", "events", `{"type":"miniprogram.closed","props":{"page":"p","price":1}}`, withToken, 400, []string{"props.price"}, 0},
			{"a member of its own", "events", `{"type":"miniprogram.opened","props":{"page":"p"},"member":{"phone":"13800000000"}}`, withToken, 400, []string{"unknown field"}, 0},
			{"a bad time", "events", `{"type":"miniprogram.opened","props":{"page":"p"},"at":"now"}`, withToken, 400, []string{"RFC 3339"}, 0},
			{"no events", "events", `{"events":[]}`, withToken, 400, []string{"send 1 to"}, 0},
			{"not JSON content", "events", openedHome, func(t *testing.T, e *mpEnv, tok string) map[string]string {
				return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "text/plain"}
			}, 415, nil, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newMPEnv(t)
			tok := ""
			if tc.login {
				tok = e.login(t, "code-ok")
			}
			for _, s := range tc.steps {
				path := "/api/v1/miniprogram/" + s.path
				rec := e.post(path, s.body, s.auth(t, e, tok))
				if rec.Code != s.wantStatus {
					t.Errorf("%s: status %d, want %d; body %s", s.name, rec.Code, s.wantStatus, rec.Body)
				}
				for _, want := range s.wantIn {
					if !strings.Contains(rec.Body.String(), want) {
						t.Errorf("%s: body %s does not contain %q", s.name, rec.Body, want)
					}
				}
				if n := len(e.events(t)); n != s.wantEvents {
					t.Errorf("%s: %d events stored, want %d", s.name, n, s.wantEvents)
				}
			}
		})
	}
}

// TestMiniProgramStoresTheTokensMember: the stored events name the member
// by the mini-program's appid and openid, and the unionid code2session
// gave, whatever the mini-program posted.
func TestMiniProgramStoresTheTokensMember(t *testing.T) {
	t.Parallel()
	e := newMPEnv(t)
	for _, tc := range []struct {
		code, openid, unionid string
	}{{"code-ok", "o_mp_1", "u_1"}, {"code-no-union", "o_mp_2", ""}} {
		tok := e.login(t, tc.code)
		if rec := e.post("/api/v1/miniprogram/events", closedHome, bearer(tok)); rec.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", tc.code, rec.Code, rec.Body)
		}
		var ev model.Event
		if err := e.db.Where("member_key = ?", model.IdentityMPOpenID+":"+mpAppID+"/"+tc.openid).Take(&ev).Error; err != nil {
			t.Fatalf("%s: no event of mp_openid %s: %v", tc.code, tc.openid, err)
		}
		want := model.MemberRef{MPAppID: mpAppID, MPOpenID: tc.openid, UnionID: tc.unionid}
		if ev.Member != want || ev.Source != "miniprogram" || ev.Type != "miniprogram.closed" {
			t.Errorf("%s: stored %s from %s for %+v; want miniprogram.closed from miniprogram for %+v", tc.code, ev.Type, ev.Source, ev.Member, want)
		}
		if ev.Props["page"] != "pages/index/index" || ev.Props["duration_s"] != 42.5 || !ev.At.Equal(time.Date(2026, 11, 24, 10, 0, 42, 0, time.UTC)) {
			t.Errorf("%s: props %v at %v; want page pages/index/index, duration_s 42.5 at 10:00:42 UTC", tc.code, ev.Props, ev.At)
		}
	}
}

// TestMiniProgramWeChatFails: WeChat's refusals and failures answer the
// mini-program with what to do, and nothing is stored.
func TestMiniProgramWeChatFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
		wantIn     string
		retryAfter string
	}{
		{"a refused code", fmt.Errorf("errcode 40163: %w", ErrLoginCodeRefused), 400, "wx.login again", ""},
		{"WeChat's rate limit", fmt.Errorf("errcode 45011: %w", ErrLoginRateLimited), 429, "rate limit", "60"},
		{"WeChat unreachable", errors.New("dial tcp: connection refused"), 502, "could not reach WeChat", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newMPEnv(t)
			e.sessions.err = tc.err
			rec := e.post("/api/v1/miniprogram/session", `{"code":"code-ok"}`, nil)
			if rec.Code != tc.wantStatus || !strings.Contains(rec.Body.String(), tc.wantIn) || strings.Contains(rec.Body.String(), "token") {
				t.Errorf("answer %d %s; want %d with %q and no token", rec.Code, rec.Body, tc.wantStatus, tc.wantIn)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if n := len(e.events(t)); n != 0 {
				t.Errorf("%d events stored, want none", n)
			}
		})
	}
}

// TestMiniProgramNotConfigured: without a mini-program both endpoints say
// what to set.
func TestMiniProgramNotConfigured(t *testing.T) {
	t.Parallel()
	e := newCallbackEnv(t, nil)
	for _, path := range []string{"/api/v1/miniprogram/session", "/api/v1/miniprogram/events"} {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"code":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		rec := e.serve(req)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "WEJOURNEY_MINIPROGRAM_APPID") {
			t.Errorf("%s: %d %s; want 404 naming WEJOURNEY_MINIPROGRAM_APPID", path, rec.Code, rec.Body)
		}
	}
}
