// Package fakewecom is a fake WeCom (企业微信) server API for tests: a real
// HTTP server on loopback (httptest) answering the paths of
// https://qyapi.weixin.qq.com that channels/wecom calls, so production code
// reaches it through its API base (WEJOURNEY_WECOM_API_BASE).
//
// The contract, mirroring WeCom:
//
//   - Every API answer is JSON with HTTP 200, also when errcode != 0.
//   - GET /cgi-bin/gettoken?corpid=&corpsecret= hands out a token for a
//     corp registered with AddCorp and its secret (40013 unknown corpid,
//     40001 wrong secret, 41002/41004 missing). Each fetch mints a new
//     token; older ones stay valid until ExpireTokens.
//   - The other APIs check access_token (41001 missing, 40014 unknown,
//     42001 expired), then an errcode injected with SetError for that path,
//     then their body.
//   - POST /cgi-bin/externalcontact/add_contact_way needs type 1 or 2,
//     scene 1 or 2, a non-empty user list (type 1: one user) and a state of
//     at most 30 characters (40058 otherwise); it records the call and
//     answers a config_id and a qr_code URL on this server that serves a PNG
//     QR code of "https://work.weixin.qq.com/ca/<config_id>".
//   - GET /cgi-bin/externalcontact/get?external_userid= answers a contact
//     registered with AddContact (84061 for an unknown one, 40096 for an
//     empty id).
//   - The sending APIs (send.go) record every request body with the time it
//     was received (Requests): send_welcome_msg (a welcome_code is taken
//     once, within 20 s of IssueWelcomeCode: 41051 when used again, 41050
//     when expired), message/send (invaliduser for users named with
//     SetInvalidUsers), externalcontact/mark_tag and
//     externalcontact/add_msg_template (fail_list for customers named with
//     SetGroupFail). SetFailFraction makes a fraction of a path's calls
//     answer -1 (system busy).
package fakewecom

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	qrcode "github.com/skip2/go-qrcode"
)

// Paths the fake serves.
const (
	TokenPath           = "/cgi-bin/gettoken"
	AddContactWayPath   = "/cgi-bin/externalcontact/add_contact_way"
	ExternalContactPath = "/cgi-bin/externalcontact/get"
	qrPrefix            = "/fake-qr/"
)

// QRSize is the width and height of the QR code images the fake serves.
const QRSize = 300

// FollowUser is one rep of a registered contact.
type FollowUser struct {
	UserID string `json:"userid"`
	State  string `json:"state"`
	Remark string `json:"remark"`
}

// Contact is an external contact the fake knows.
type Contact struct {
	ExternalUserID string
	Name           string
	UnionID        string
	Type           int // 1 WeChat user (default), 2 WeCom user
	FollowUsers    []FollowUser
}

// ContactWayCall is one accepted add_contact_way call.
type ContactWayCall struct {
	CorpID     string
	Type       int
	Scene      int
	Users      []string
	State      string
	Remark     string
	SkipVerify *bool // nil when the body had no skip_verify
	ConfigID   string
	Raw        []byte
}

// Server is a running fake; create it with New and stop it with Close.
type Server struct {
	// URL is the base URL to use as the WeCom API base.
	URL string

	hs *httptest.Server

	mu       sync.Mutex
	corps    map[string]string // corpid -> secret
	tokens   map[string]tokenInfo
	contacts map[string]Contact
	ways     []ContactWayCall
	errs     map[string]int // path -> injected errcode
	calls    map[string]int // path -> requests
	seq      int

	now       func() time.Time
	reqs      map[string][]Request
	welcome   map[string]*welcomeCode
	welcomes  []WelcomeCall
	invalid   map[string]bool // userids message/send cannot reach
	groupFail map[string]bool // external_userids add_msg_template refuses
	failFrac  map[string]float64
	failSeen  map[string]int
}

type tokenInfo struct {
	corpID  string
	expired bool
}

// New starts a fake on 127.0.0.1.
func New() *Server { return NewOn(nil) }

// NewOn starts a fake on ln (nil: a free port on 127.0.0.1), as a bench
// with a server in another process needs a known address.
func NewOn(ln net.Listener) *Server {
	s := &Server{corps: map[string]string{}, tokens: map[string]tokenInfo{}, contacts: map[string]Contact{},
		errs: map[string]int{}, calls: map[string]int{}, now: time.Now, reqs: map[string][]Request{},
		welcome: map[string]*welcomeCode{}, invalid: map[string]bool{}, groupFail: map[string]bool{},
		failFrac: map[string]float64{}, failSeen: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc(TokenPath, s.handleToken)
	mux.HandleFunc(AddContactWayPath, s.handleAddContactWay)
	mux.HandleFunc(ExternalContactPath, s.handleExternalContact)
	mux.HandleFunc(qrPrefix, s.handleQR)
	s.sendRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "fakewecom: no such API: "+r.URL.Path, http.StatusNotFound)
	})
	s.hs = httptest.NewUnstartedServer(mux)
	if ln != nil {
		s.hs.Listener.Close()
		s.hs.Listener = ln
	}
	s.hs.Start()
	s.URL = s.hs.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.hs.Close() }

// AddCorp lets gettoken hand out tokens for corpid with secret.
func (s *Server) AddCorp(corpid, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corps[corpid] = secret
}

// AddContact registers an external contact for externalcontact/get.
func (s *Server) AddContact(c Contact) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Type == 0 {
		c.Type = 1
	}
	s.contacts[c.ExternalUserID] = c
}

// SetError makes every call of path (e.g. AddContactWayPath) with a valid
// token answer errcode, until cleared with 0. gettoken itself answers it
// too when path is TokenPath.
func (s *Server) SetError(path string, errcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errcode == 0 {
		delete(s.errs, path)
		return
	}
	s.errs[path] = errcode
}

// ExpireTokens makes every token issued so far answer 42001.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.tokens {
		v.expired = true
		s.tokens[k] = v
	}
}

// Calls returns how many requests path received (TokenPath: token fetches
// answered with a token).
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// ContactWays returns the accepted add_contact_way calls in order.
func (s *Server) ContactWays() []ContactWayCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ContactWayCall(nil), s.ways...)
}

// QRContent is what the QR code of configID's image encodes.
func QRContent(configID string) string { return "https://work.weixin.qq.com/ca/" + configID }

var errMsgs = map[int]string{
	0:     "ok",
	40001: "invalid secret",
	40013: "invalid corpid",
	40014: "invalid access_token",
	40058: "invalid parameter",
	40096: "invalid external userid",
	41001: "access_token missing",
	41002: "corpid missing",
	41004: "corpsecret missing",
	42001: "access_token expired",
	-1:    "system busy",
	41050: "welcome_code expired",
	41051: "externaluser has started chatting",
	45009: "api freq out of limit",
	84061: "not external contact",
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, detail string) {
	msg, ok := errMsgs[code]
	if !ok {
		msg = "fakewecom injected error"
	}
	if detail != "" {
		msg += ": " + detail
	}
	writeJSON(w, map[string]any{"errcode": code, "errmsg": msg})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	corpid, secret := q.Get("corpid"), q.Get("corpsecret")
	s.mu.Lock()
	defer s.mu.Unlock()
	code := s.errs[TokenPath]
	switch want, known := s.corps[corpid]; {
	case corpid == "":
		code = 41002
	case secret == "":
		code = 41004
	case !known:
		code = 40013
	case want != secret:
		code = 40001
	}
	if code != 0 {
		writeErr(w, code, "")
		return
	}
	s.calls[TokenPath]++
	s.seq++
	tok := "fakewecom." + strconv.Itoa(s.seq) + "." + corpid
	s.tokens[tok] = tokenInfo{corpID: corpid}
	writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": 7200})
}

// checkCall counts the call and checks its token and an injected error; it
// returns the token's corp or writes the error.
func (s *Server) checkCall(w http.ResponseWriter, r *http.Request) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[r.URL.Path]++
	tok := r.URL.Query().Get("access_token")
	info, known := s.tokens[tok]
	switch {
	case tok == "":
		writeErr(w, 41001, "")
		return "", false
	case !known:
		writeErr(w, 40014, "")
		return "", false
	case info.expired:
		writeErr(w, 42001, "")
		return "", false
	}
	if code := s.errs[r.URL.Path]; code != 0 {
		writeErr(w, code, "")
		return "", false
	}
	if s.busy(r.URL.Path) {
		writeErr(w, -1, "")
		return "", false
	}
	return info.corpID, true
}

func (s *Server) handleAddContactWay(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002, "require POST")
		return
	}
	corp, ok := s.checkCall(w, r)
	if !ok {
		return
	}
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req struct {
		Type       int      `json:"type"`
		Scene      int      `json:"scene"`
		User       []string `json:"user"`
		State      string   `json:"state"`
		Remark     string   `json:"remark"`
		SkipVerify *bool    `json:"skip_verify"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		writeErr(w, 47001, err.Error())
		return
	}
	switch {
	case req.Type != 1 && req.Type != 2:
		writeErr(w, 40058, "type")
		return
	case req.Scene != 1 && req.Scene != 2:
		writeErr(w, 40058, "scene")
		return
	case len(req.User) == 0 || (req.Type == 1 && len(req.User) != 1):
		writeErr(w, 40058, "user")
		return
	case utf8.RuneCountInString(req.State) > 30:
		writeErr(w, 40058, "state longer than 30 characters")
		return
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("cfg%06d%s", s.seq, strings.Repeat("0", 26))
	s.ways = append(s.ways, ContactWayCall{CorpID: corp, Type: req.Type, Scene: req.Scene, Users: req.User,
		State: req.State, Remark: req.Remark, SkipVerify: req.SkipVerify, ConfigID: id, Raw: raw})
	s.mu.Unlock()
	writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok", "config_id": id, "qr_code": s.URL + qrPrefix + id + ".png"})
}

func (s *Server) handleExternalContact(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.checkCall(w, r); !ok {
		return
	}
	id := r.URL.Query().Get("external_userid")
	if id == "" {
		writeErr(w, 40096, "")
		return
	}
	s.mu.Lock()
	c, ok := s.contacts[id]
	s.mu.Unlock()
	if !ok {
		writeErr(w, 84061, "")
		return
	}
	follow := c.FollowUsers
	if follow == nil {
		follow = []FollowUser{}
	}
	writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok",
		"external_contact": map[string]any{"external_userid": c.ExternalUserID, "name": c.Name, "type": c.Type, "unionid": c.UnionID},
		"follow_user":      follow})
}

// handleQR serves the QR code image of a contact way the fake created.
func (s *Server) handleQR(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, qrPrefix), ".png")
	s.mu.Lock()
	s.calls[qrPrefix]++
	found := false
	for _, c := range s.ways {
		found = found || c.ConfigID == id
	}
	s.mu.Unlock()
	if !found {
		http.NotFound(w, r)
		return
	}
	png, err := qrcode.Encode(QRContent(id), qrcode.Medium, QRSize)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(png)
}
