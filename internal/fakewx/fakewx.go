// Package fakewx is a fake WeChat Official Account API for tests and
// benchmarks. It is a real HTTP server on loopback (httptest) that answers
// the same paths as https://api.weixin.qq.com, so production code reaches it
// through its API base: WEJOURNEY_WECHAT_API_BASE, which the app passes to
// channels/wechat as Config.APIBase. Nothing else changes.
//
// The contract, mirroring WeChat:
//
//   - Every answer is JSON with HTTP 200, also when errcode != 0.
//   - POST /cgi-bin/stable_token and GET /cgi-bin/token hand out access
//     tokens for any appid with a non-empty secret (or, with Config.Secrets,
//     only for known appids with the right secret). A token encodes its appid,
//     so every accepted message is attributed to the account that sent it.
//     Like WeChat's stable_token, a non-forced stable_token call hands out
//     the appid's current token again while it is valid; /cgi-bin/token and
//     force_refresh=true mint a new one (older ones stay valid until
//     ExpireTokens, like WeChat's 5-minute grace).
//   - POST /cgi-bin/message/custom/send and /cgi-bin/message/template/send
//     check the token (41001 missing, 40001 unknown or expired), the body
//     (44002 empty, 47001 not JSON, 40003 no touser, 40008 bad msgtype,
//     40037 no template_id), then an error injected with SetError, and only
//     then accept and record the message.
//   - The subscription-message sends (subscribe.go: template/subscribe,
//     subscribe/bizsend, subscribe/send) are checked the same way and
//     recorded with Kind KindSubscribeOnce, KindBizSend or KindMPSubscribe.
//   - Faults for the send endpoints: SetHTTPStatus makes them answer a
//     non-200 status (WeChat's gateway failing), SetDropConnections makes
//     them close the connection without answering (a network error). Token
//     endpoints keep working.
//   - A template client_msg_id already accepted for the same appid is
//     answered with success and the original msgid, and is not recorded a
//     second time (WeChat's dedupe).
//
// The server is safe for concurrent use and cheap enough for thousands of
// messages per second: one mutex, JSON decoding outside it.
package fakewx

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Config configures a fake server. The zero value is ready to use.
type Config struct {
	// OnMessage, if set, is called synchronously for every accepted message
	// (custom or template send), with its arrival time, before the HTTP answer
	// is written. It runs outside the server's lock, so it may call the
	// server's methods; concurrent sends call it concurrently.
	OnMessage func(Message)
	// Secrets, if non-nil, restricts token requests to these appids (40013
	// "invalid appid" otherwise) and requires the matching secret (40125
	// "invalid appsecret" otherwise). Nil accepts any appid with a non-empty
	// secret.
	Secrets map[string]string
	// Listener, if set, is served instead of a random loopback port (the
	// bench uses a fixed address an external server is configured with).
	Listener net.Listener
	// UnionIDs makes user info answer, for an openid no test added, a
	// follower with the unionid "u" + openid: an account bound to the Open
	// Platform, where every follow's lookup finds a unionid.
	UnionIDs bool
	// FailEvery, when positive, answers every FailEvery-th send request
	// (customer-service and template, counted together) with errcode -1
	// ("system busy"), recording nothing: the sender must retry it.
	FailEvery int
}

// Message is one message accepted by the fake.
type Message struct {
	Kind        string            // "custom", "template", or a subscription message's kind (subscribe.go)
	AppID       string            // derived from the access_token used
	ToUser      string            // openid
	MsgType     string            // custom: "text","news","image","miniprogrampage",...; template: "template"
	Text        string            // custom text content
	TemplateID  string            // template id
	URL         string            // template url, or the first news article's url
	Data        map[string]string // template data values by key
	ClientMsgID string            // template client_msg_id when sent
	At          time.Time         // arrival time
	Raw         []byte            // the JSON body as received
}

// Server is a running fake. Create it with New and stop it with Close.
type Server struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:34567. Use it as the
	// API base in place of https://api.weixin.qq.com.
	URL string

	cfg Config
	hs  *httptest.Server

	mu         sync.Mutex
	msgs       []Message
	changed    chan struct{}        // closed and cleared on every new message; created by Wait
	tokens     map[string]tokenInfo // access token -> owner
	current    map[string]string    // appid -> current stable token
	errs       map[string]int       // openid -> injected errcode
	clientIDs  map[string]int64     // appid + "\x00" + client_msg_id -> msgid
	httpStatus int                  // non-zero: send endpoints answer this status
	drop       bool                 // send endpoints close the connection unanswered
	fetches    int
	sends      int    // send requests past the token and body checks
	busy       int    // of which answered -1 by FailEvery
	dupes      int    // template sends dropped as repeats of an accepted client_msg_id
	users      *users // the user-management APIs (fakewx_users.go)
	tokenSeq   int64
	templateID int64
	logins     loginCodes // /sns/jscode2session (jscode2session.go)
	qrs        qrState    // qrcode/create (qrcode.go)
}

type tokenInfo struct {
	appID   string
	expired bool
}

// New starts the fake on 127.0.0.1 with httptest; Close stops it.
func New(cfg Config) *Server {
	s := &Server{
		cfg:       cfg,
		tokens:    map[string]tokenInfo{},
		current:   map[string]string{},
		errs:      map[string]int{},
		clientIDs: map[string]int64{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/cgi-bin/stable_token", s.handleStableToken)
	mux.HandleFunc("/cgi-bin/token", s.handleToken)
	mux.HandleFunc("/cgi-bin/message/custom/send", s.handleCustomSend)
	mux.HandleFunc("/cgi-bin/message/template/send", s.handleTemplateSend)
	mux.HandleFunc("/cgi-bin/message/template/subscribe", s.handleSubscribeOnce)
	mux.HandleFunc("/cgi-bin/message/subscribe/bizsend", s.handleBizSend)
	mux.HandleFunc("/cgi-bin/message/subscribe/send", s.handleMPSubscribe)
	mux.HandleFunc("/cgi-bin/qrcode/create", s.handleQRCodeCreate)
	mux.HandleFunc("/sns/jscode2session", s.handleCode2Session)
	s.users = registerUsers(s, mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "fakewx: no such API: "+r.URL.Path, http.StatusNotFound)
	})
	if cfg.Listener != nil {
		s.hs = &httptest.Server{Listener: cfg.Listener, Config: &http.Server{Handler: mux}}
		s.hs.Start()
	} else {
		s.hs = httptest.NewServer(mux)
	}
	s.URL = s.hs.URL
	return s
}

// Close stops the server and closes its connections.
func (s *Server) Close() { s.hs.Close() }

// Messages returns all accepted messages in arrival order. The slice is a
// copy; the messages' Data and Raw are shared and must not be modified.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// MessagesTo returns the accepted messages to openid in arrival order.
func (s *Server) MessagesTo(openid string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msgs {
		if m.ToUser == openid {
			out = append(out, m)
		}
	}
	return out
}

// Wait blocks until cond(all accepted messages) is true or ctx ends, and then
// returns ctx's error with the number of messages seen. cond is called on
// every change (not on a timer); it gets a read-only view of the messages in
// arrival order and must neither modify nor keep it.
func (s *Server) Wait(ctx context.Context, cond func([]Message) bool) error {
	for {
		s.mu.Lock()
		// Messages are only ever appended, so the prefix we hand out is never
		// written again; capping the capacity keeps cond from appending into it.
		view := s.msgs[:len(s.msgs):len(s.msgs)]
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()

		if cond(view) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fakewx: wait with %d messages: %w", len(view), ctx.Err())
		}
	}
}

// SetError makes every send to openid answer {"errcode":errcode,...} (after
// the token and body checks) until it is cleared with errcode 0.
func (s *Server) SetError(openid string, errcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errcode == 0 {
		delete(s.errs, openid)
		return
	}
	s.errs[openid] = errcode
}

// SetHTTPStatus makes both send endpoints answer every request with HTTP
// status code (e.g. 502) and a short text body, before any check, until it is
// cleared with 0. Nothing is recorded meanwhile.
func (s *Server) SetHTTPStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.httpStatus = code
}

// SetDropConnections makes both send endpoints close the connection without
// an answer (the client sees a network error such as EOF) while on is true.
func (s *Server) SetDropConnections(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = on
}

// tokenOf checks the request's access_token and returns whose it is; it
// answers 41001 (missing) or 40001 (unknown or expired) and false when it
// is not one the fake issued and still honours.
func (s *Server) tokenOf(w http.ResponseWriter, r *http.Request) (tokenInfo, bool) {
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		writeErr(w, 41001)
		return tokenInfo{}, false
	}
	s.mu.Lock()
	info, known := s.tokens[tok]
	s.mu.Unlock()
	if !known || info.expired {
		writeErr(w, 40001)
		return tokenInfo{}, false
	}
	return info, true
}

// ExpireTokens makes every token issued so far answer 40001 from now on.
// The next token request of any kind mints a new token.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, info := range s.tokens {
		info.expired = true
		s.tokens[tok] = info
	}
	clear(s.current)
}

// TokenFetches returns how many successful token requests were answered,
// i.e. how many times a token was issued to a client (a non-forced
// stable_token call that hands out the current token again counts too).
func (s *Server) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// errMsgs are the errmsg texts WeChat uses for the codes the fake produces.
var errMsgs = map[int]string{
	0:     "ok",
	40001: "invalid credential, access_token is invalid or not latest",
	40003: "invalid openid",
	40008: "invalid message type",
	40013: "invalid appid",
	40037: "invalid template_id",
	40125: "invalid appsecret",
	41001: "access_token missing",
	41002: "appid missing",
	41004: "appsecret missing",
	42001: "access_token expired",
	43001: "require GET method",
	43002: "require POST method",
	43004: "require subscribe",
	43101: "user refuse to accept the msg",
	44002: "empty post data",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit, mustslower retry next minute",
	45015: "response out of time limit or subscription is canceled",
	45047: "out of response count limit",
	47001: "data format error",
	48001: "api unauthorized",
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int) {
	msg, ok := errMsgs[code]
	if !ok {
		msg = "fakewx injected error"
	}
	writeJSON(w, struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}{code, msg})
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
}

// issue hands out a token for appid; forceNew mints one even when the
// appid has a valid current token. It returns 0 and the token, or an errcode.
func (s *Server) issue(appID, secret string, forceNew bool) (int, string) {
	switch {
	case appID == "":
		return 41002, ""
	case secret == "":
		return 41004, ""
	}
	if s.cfg.Secrets != nil {
		want, ok := s.cfg.Secrets[appID]
		if !ok {
			return 40013, ""
		}
		if want != secret {
			return 40125, ""
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetches++
	if tok, ok := s.current[appID]; ok && !forceNew {
		return 0, tok
	}
	s.tokenSeq++
	tok := "fakewx." + strconv.FormatInt(s.tokenSeq, 10) + "." + appID
	s.tokens[tok] = tokenInfo{appID: appID}
	s.current[appID] = tok
	return 0, tok
}

func (s *Server) handleStableToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002)
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || len(body) == 0 {
		writeErr(w, 44002)
		return
	}
	if json.Unmarshal(body, &req) != nil {
		writeErr(w, 47001)
		return
	}
	if req.GrantType != "client_credential" {
		writeJSON(w, map[string]any{"errcode": 40002, "errmsg": "invalid grant_type"})
		return
	}
	code, tok := s.issue(req.AppID, req.Secret, req.ForceRefresh)
	if code != 0 {
		writeErr(w, code)
		return
	}
	writeJSON(w, tokenAnswer{AccessToken: tok, ExpiresIn: 7200})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErr(w, 43001)
		return
	}
	q := r.URL.Query()
	if q.Get("grant_type") != "client_credential" {
		writeJSON(w, map[string]any{"errcode": 40002, "errmsg": "invalid grant_type"})
		return
	}
	code, tok := s.issue(q.Get("appid"), q.Get("secret"), true)
	if code != 0 {
		writeErr(w, code)
		return
	}
	writeJSON(w, tokenAnswer{AccessToken: tok, ExpiresIn: 7200})
}

// readSend does the checks common to both send APIs. It returns the body and
// the token's appid, or writes the error answer and returns ok == false.
func (s *Server) readSend(w http.ResponseWriter, r *http.Request) (body []byte, appID string, ok bool) {
	s.mu.Lock()
	status, drop := s.httpStatus, s.drop
	s.mu.Unlock()
	if drop {
		if hj, isHJ := w.(http.Hijacker); isHJ {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return nil, "", false
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2: abort the stream
	}
	if status != 0 {
		http.Error(w, fmt.Sprintf("fakewx: injected HTTP %d", status), status)
		return nil, "", false
	}
	if r.Method != http.MethodPost {
		writeErr(w, 43002)
		return nil, "", false
	}
	info, ok := s.tokenOf(w, r)
	if !ok {
		return nil, "", false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || len(body) == 0 {
		writeErr(w, 44002)
		return nil, "", false
	}
	s.mu.Lock()
	s.sends++
	busy := s.cfg.FailEvery > 0 && s.sends%s.cfg.FailEvery == 0
	if busy {
		s.busy++
	}
	s.mu.Unlock()
	if busy {
		writeErr(w, -1)
		return nil, "", false
	}
	return body, info.appID, true
}

// Busy returns how many send requests FailEvery answered with -1.
func (s *Server) Busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy
}

// injected returns the errcode set with SetError for openid, or 0.
func (s *Server) injected(openid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs[openid]
}

// record stores an accepted message and wakes Wait.
func (s *Server) record(m Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	s.mu.Unlock()
	if s.cfg.OnMessage != nil {
		s.cfg.OnMessage(m)
	}
}

var customTypes = map[string]bool{
	"text": true, "image": true, "voice": true, "video": true, "music": true,
	"news": true, "mpnews": true, "mpnewsarticle": true, "msgmenu": true,
	"wxcard": true, "miniprogrampage": true,
}

func (s *Server) handleCustomSend(w http.ResponseWriter, r *http.Request) {
	body, appID, ok := s.readSend(w, r)
	if !ok {
		return
	}
	var req struct {
		ToUser  string `json:"touser"`
		MsgType string `json:"msgtype"`
		Text    *struct {
			Content string `json:"content"`
		} `json:"text"`
		News *struct {
			Articles []struct {
				URL string `json:"url"`
			} `json:"articles"`
		} `json:"news"`
	}
	if json.Unmarshal(body, &req) != nil {
		writeErr(w, 47001)
		return
	}
	switch {
	case req.ToUser == "":
		writeErr(w, 40003)
		return
	case !customTypes[req.MsgType]:
		writeErr(w, 40008)
		return
	}
	if code := s.injected(req.ToUser); code != 0 {
		writeErr(w, code)
		return
	}
	m := Message{
		Kind:    "custom",
		AppID:   appID,
		ToUser:  req.ToUser,
		MsgType: req.MsgType,
		At:      time.Now(),
		Raw:     body,
	}
	if req.Text != nil {
		m.Text = req.Text.Content
	}
	if req.News != nil && len(req.News.Articles) > 0 {
		m.URL = req.News.Articles[0].URL
	}
	s.record(m)
	writeErr(w, 0)
}

func (s *Server) handleTemplateSend(w http.ResponseWriter, r *http.Request) {
	body, appID, ok := s.readSend(w, r)
	if !ok {
		return
	}
	var req struct {
		ToUser      string `json:"touser"`
		TemplateID  string `json:"template_id"`
		URL         string `json:"url"`
		ClientMsgID string `json:"client_msg_id"`
		Data        map[string]struct {
			Value string `json:"value"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &req) != nil {
		writeErr(w, 47001)
		return
	}
	switch {
	case req.ToUser == "":
		writeErr(w, 40003)
		return
	case req.TemplateID == "":
		writeErr(w, 40037)
		return
	}
	if code := s.injected(req.ToUser); code != 0 {
		writeErr(w, code)
		return
	}

	s.mu.Lock()
	dedupeKey := appID + "\x00" + req.ClientMsgID
	if req.ClientMsgID != "" {
		if id, dup := s.clientIDs[dedupeKey]; dup {
			s.dupes++
			s.mu.Unlock()
			writeTemplateOK(w, id)
			return
		}
	}
	s.templateID++
	id := s.templateID
	if req.ClientMsgID != "" {
		s.clientIDs[dedupeKey] = id
	}
	s.mu.Unlock()

	m := Message{
		Kind:        "template",
		AppID:       appID,
		ToUser:      req.ToUser,
		MsgType:     "template",
		TemplateID:  req.TemplateID,
		URL:         req.URL,
		ClientMsgID: req.ClientMsgID,
		At:          time.Now(),
		Raw:         body,
	}
	if len(req.Data) > 0 {
		m.Data = make(map[string]string, len(req.Data))
		for k, v := range req.Data {
			m.Data[k] = v.Value
		}
	}
	s.record(m)
	writeTemplateOK(w, id)
}

func writeTemplateOK(w http.ResponseWriter, msgID int64) {
	writeJSON(w, struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
		MsgID   int64  `json:"msgid"`
	}{0, "ok", msgID})
}

// Duplicates is how many template sends were answered success without
// being recorded, because their client_msg_id was accepted before.
func (s *Server) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dupes
}
