package fakewx

import (
	"net/http"
	"sync"
)

// The mini-program login API (GET /sns/jscode2session), mirroring WeChat:
//
//   - appid and secret are required (41002, 41004) and, with
//     Config.Secrets, checked like the token endpoints (40013, 40125);
//   - grant_type must be authorization_code (40002);
//   - a code registered with AddLoginCode answers openid, session_key and,
//     when registered with one, unionid — once: the same code again is
//     40163 ("code been used");
//   - any other code is 40029 ("invalid code");
//   - SetLoginError makes every call answer an errcode (45011, -1, ...)
//     until cleared with 0.

// loginCodes are the wx.login codes the fake knows. Its zero value is
// ready to use.
type loginCodes struct {
	mu    sync.Mutex
	codes map[string]loginCode
	err   int
	calls int
}

type loginCode struct {
	appid, openid, unionid string
	used                   bool
}

// AddLoginCode registers a wx.login code of the mini-program appid
// ("" for any): code2session answers it once with openid and unionid
// ("" for none).
func (s *Server) AddLoginCode(appid, code, openid, unionid string) {
	l := &s.logins
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.codes == nil {
		l.codes = map[string]loginCode{}
	}
	l.codes[code] = loginCode{appid: appid, openid: openid, unionid: unionid}
}

// SetLoginError makes every code2session call answer errcode (after the
// appid and secret checks) until it is cleared with 0.
func (s *Server) SetLoginError(errcode int) {
	s.logins.mu.Lock()
	defer s.logins.mu.Unlock()
	s.logins.err = errcode
}

// LoginCalls returns how many code2session calls reached the fake.
func (s *Server) LoginCalls() int {
	s.logins.mu.Lock()
	defer s.logins.mu.Unlock()
	return s.logins.calls
}

func (s *Server) handleCode2Session(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErr(w, 43001)
		return
	}
	q := r.URL.Query()
	appid, secret := q.Get("appid"), q.Get("secret")
	switch {
	case appid == "":
		writeErr(w, 41002)
		return
	case secret == "":
		writeErr(w, 41004)
		return
	}
	if s.cfg.Secrets != nil {
		want, ok := s.cfg.Secrets[appid]
		if !ok {
			writeErr(w, 40013)
			return
		}
		if want != secret {
			writeErr(w, 40125)
			return
		}
	}
	if q.Get("grant_type") != "authorization_code" {
		writeJSON(w, map[string]any{"errcode": 40002, "errmsg": "invalid grant_type"})
		return
	}
	l := &s.logins
	l.mu.Lock()
	l.calls++
	if l.err != 0 {
		code := l.err
		l.mu.Unlock()
		writeErr(w, code)
		return
	}
	lc, ok := l.codes[q.Get("js_code")]
	if ok && lc.appid != "" && lc.appid != appid {
		ok = false // another mini-program's code
	}
	switch {
	case !ok:
		l.mu.Unlock()
		writeJSON(w, map[string]any{"errcode": 40029, "errmsg": "invalid code"})
		return
	case lc.used:
		l.mu.Unlock()
		writeJSON(w, map[string]any{"errcode": 40163, "errmsg": "code been used"})
		return
	}
	lc.used = true
	l.codes[q.Get("js_code")] = lc
	l.mu.Unlock()
	ans := map[string]any{"openid": lc.openid, "session_key": "fakewx-session-key-" + lc.openid}
	if lc.unionid != "" {
		ans["unionid"] = lc.unionid
	}
	writeJSON(w, ans)
}
