package fakewecom

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Paths of the sending APIs the fake serves.
const (
	SendWelcomePath    = "/cgi-bin/externalcontact/send_welcome_msg"
	MessageSendPath    = "/cgi-bin/message/send"
	MarkTagPath        = "/cgi-bin/externalcontact/mark_tag"
	AddMsgTemplatePath = "/cgi-bin/externalcontact/add_msg_template"
)

// WelcomeCodeTTL is how long after its issue a welcome_code is accepted.
const WelcomeCodeTTL = 20 * time.Second

// Request is one request to a sending API.
type Request struct {
	// At is when the fake received it.
	At time.Time
	// CorpID is the corp of the access token.
	CorpID string
	// Body is the JSON body as sent.
	Body []byte
	// Errcode is what the fake answered (0: accepted).
	Errcode int
}

// Decode unmarshals the request's body into v, panicking on bad JSON (a
// test helper).
func (r Request) Decode(v any) {
	if err := json.Unmarshal(r.Body, v); err != nil {
		panic(fmt.Sprintf("fakewecom: request body %s: %v", r.Body, err))
	}
}

// WelcomeCall is one send_welcome_msg call that passed the token check.
type WelcomeCall struct {
	Code string
	// IssuedAt is when IssueWelcomeCode issued the code (for a code the
	// fake did not issue: the time of its first use).
	IssuedAt time.Time
	// At is when the call was received.
	At time.Time
	// Errcode is the answer: 0, 41051 (used before) or 41050 (expired).
	Errcode int
	Body    []byte
}

type welcomeCode struct {
	issued time.Time
	used   bool
}

func (s *Server) sendRoutes(mux *http.ServeMux) {
	mux.HandleFunc(SendWelcomePath, s.handleWelcome)
	mux.HandleFunc(MessageSendPath, s.handleMessageSend)
	mux.HandleFunc(MarkTagPath, s.handleMarkTag)
	mux.HandleFunc(AddMsgTemplatePath, s.handleAddMsgTemplate)
}

// SetNow replaces the fake's clock (time.Now), which times welcome codes
// and stamps requests.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// IssueWelcomeCode returns a new welcome_code, as WeCom puts one in a
// contact-added callback: send_welcome_msg accepts it once within
// WelcomeCodeTTL of now. A code the fake never issued is accepted once too,
// as if issued at its first use.
func (s *Server) IssueWelcomeCode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	code := fmt.Sprintf("WELCOMECODE%08d", s.seq)
	s.welcome[code] = &welcomeCode{issued: s.now()}
	return code
}

// Welcomes returns the send_welcome_msg calls in order, accepted or not.
func (s *Server) Welcomes() []WelcomeCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]WelcomeCall(nil), s.welcomes...)
}

// Requests returns the requests of path (a sending API) that passed the
// token check and SetError and SetFailFraction, in order, with what the
// fake answered.
func (s *Server) Requests(path string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs[path]...)
}

// SetInvalidUsers makes message/send answer these userids in invaliduser.
func (s *Server) SetInvalidUsers(userids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range userids {
		s.invalid[u] = true
	}
}

// SetGroupFail makes add_msg_template put these external_userids in its
// fail_list.
func (s *Server) SetGroupFail(externalUserIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range externalUserIDs {
		s.groupFail[id] = true
	}
}

// SetFailFraction makes the fraction f (0 to 1) of path's calls with a
// valid token answer -1 (system busy), spread evenly: with 0.25, the 4th,
// 8th, ... call fail. 0 clears it.
func (s *Server) SetFailFraction(path string, f float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failFrac[path] = f
	s.failSeen[path] = 0
}

// busy reports whether this call of path is one SetFailFraction fails.
// The caller holds mu.
func (s *Server) busy(path string) bool {
	f := s.failFrac[path]
	if f <= 0 {
		return false
	}
	n := s.failSeen[path]
	s.failSeen[path] = n + 1
	return int(float64(n+1)*f) > int(float64(n)*f)
}

// readSend reads a sending API's body after checkCall and records it;
// ok false means an answer was written.
func (s *Server) readSend(w http.ResponseWriter, r *http.Request, v any) (corp string, at time.Time, raw []byte, ok bool) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002, "require POST")
		return "", time.Time{}, nil, false
	}
	corp, ok = s.checkCall(w, r)
	if !ok {
		return "", time.Time{}, nil, false
	}
	raw, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	at = s.now()
	s.mu.Unlock()
	if err := json.Unmarshal(raw, v); err != nil {
		s.record(r.URL.Path, Request{At: at, CorpID: corp, Body: raw, Errcode: 47001})
		writeErr(w, 47001, err.Error())
		return "", time.Time{}, nil, false
	}
	return corp, at, raw, true
}

// record keeps a request.
func (s *Server) record(path string, req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs[path] = append(s.reqs[path], req)
}

// answer records req with errcode and writes the answer: an error, or
// extra fields with errcode 0.
func (s *Server) answer(w http.ResponseWriter, path string, req Request, errcode int, detail string, extra map[string]any) {
	req.Errcode = errcode
	s.record(path, req)
	if errcode != 0 {
		writeErr(w, errcode, detail)
		return
	}
	out := map[string]any{"errcode": 0, "errmsg": "ok"}
	for k, v := range extra {
		out[k] = v
	}
	writeJSON(w, out)
}

// attachmentsOK checks WeCom's attachments shape: each has a known
// msgtype and that type's object with its required fields.
func attachmentsOK(atts []map[string]json.RawMessage) string {
	required := map[string][]string{"image": nil, "link": {"title", "url"},
		"miniprogram": {"title", "pic_media_id", "appid", "page"}, "video": {"media_id"}, "file": {"media_id"}}
	if len(atts) > 9 {
		return "more than 9 attachments"
	}
	for i, a := range atts {
		var typ string
		_ = json.Unmarshal(a["msgtype"], &typ)
		fields, known := required[typ]
		if !known {
			return fmt.Sprintf("attachments[%d]: msgtype %q", i, typ)
		}
		var obj map[string]any
		if err := json.Unmarshal(a[typ], &obj); err != nil || obj == nil {
			return fmt.Sprintf("attachments[%d]: no %s object", i, typ)
		}
		for _, f := range fields {
			if v, _ := obj[f].(string); v == "" {
				return fmt.Sprintf("attachments[%d]: %s.%s missing", i, typ, f)
			}
		}
		if typ == "image" && obj["media_id"] == nil && obj["pic_url"] == nil {
			return fmt.Sprintf("attachments[%d]: image needs media_id or pic_url", i)
		}
	}
	return ""
}

func (s *Server) handleWelcome(w http.ResponseWriter, r *http.Request) {
	var req struct {
		WelcomeCode string `json:"welcome_code"`
		Text        *struct {
			Content string `json:"content"`
		} `json:"text"`
		Attachments []map[string]json.RawMessage `json:"attachments"`
	}
	corp, at, raw, ok := s.readSend(w, r, &req)
	if !ok {
		return
	}
	rec := Request{At: at, CorpID: corp, Body: raw}
	if req.WelcomeCode == "" {
		s.answer(w, r.URL.Path, rec, 40058, "welcome_code", nil)
		return
	}
	if (req.Text == nil || req.Text.Content == "") && len(req.Attachments) == 0 {
		s.answer(w, r.URL.Path, rec, 40058, "text or attachments required", nil)
		return
	}
	if bad := attachmentsOK(req.Attachments); bad != "" {
		s.answer(w, r.URL.Path, rec, 40058, bad, nil)
		return
	}
	s.mu.Lock()
	wc, known := s.welcome[req.WelcomeCode]
	if !known {
		wc = &welcomeCode{issued: at}
		s.welcome[req.WelcomeCode] = wc
	}
	code := 0
	switch {
	case wc.used:
		code = 41051
	case at.Sub(wc.issued) > WelcomeCodeTTL:
		code = 41050
	default:
		wc.used = true
	}
	s.welcomes = append(s.welcomes, WelcomeCall{Code: req.WelcomeCode, IssuedAt: wc.issued, At: at, Errcode: code, Body: raw})
	s.mu.Unlock()
	s.answer(w, r.URL.Path, rec, code, "", nil)
}

func (s *Server) handleMessageSend(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ToUser  string `json:"touser"`
		MsgType string `json:"msgtype"`
		AgentID int64  `json:"agentid"`
		Text    struct {
			Content string `json:"content"`
		} `json:"text"`
	}
	corp, at, raw, ok := s.readSend(w, r, &req)
	if !ok {
		return
	}
	rec := Request{At: at, CorpID: corp, Body: raw}
	switch {
	case req.ToUser == "":
		s.answer(w, r.URL.Path, rec, 40058, "touser", nil)
		return
	case req.AgentID == 0:
		s.answer(w, r.URL.Path, rec, 41011, "agentid", nil)
		return
	case req.MsgType != "text" || req.Text.Content == "":
		s.answer(w, r.URL.Path, rec, 40008, "msgtype text with text.content", nil)
		return
	}
	var invalid []string
	s.mu.Lock()
	for _, u := range strings.Split(req.ToUser, "|") {
		if s.invalid[u] {
			invalid = append(invalid, u)
		}
	}
	s.seq++
	id := fmt.Sprintf("appmsg%08d", s.seq)
	s.mu.Unlock()
	extra := map[string]any{"msgid": id}
	if len(invalid) > 0 {
		extra["invaliduser"] = strings.Join(invalid, "|")
	}
	s.answer(w, r.URL.Path, rec, 0, "", extra)
}

func (s *Server) handleMarkTag(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID         string   `json:"userid"`
		ExternalUserID string   `json:"external_userid"`
		AddTag         []string `json:"add_tag"`
		RemoveTag      []string `json:"remove_tag"`
	}
	corp, at, raw, ok := s.readSend(w, r, &req)
	if !ok {
		return
	}
	rec := Request{At: at, CorpID: corp, Body: raw}
	switch {
	case req.UserID == "":
		s.answer(w, r.URL.Path, rec, 40003, "userid", nil)
	case req.ExternalUserID == "":
		s.answer(w, r.URL.Path, rec, 40096, "", nil)
	case len(req.AddTag) == 0 && len(req.RemoveTag) == 0:
		s.answer(w, r.URL.Path, rec, 40058, "add_tag or remove_tag", nil)
	default:
		s.answer(w, r.URL.Path, rec, 0, "", nil)
	}
}

func (s *Server) handleAddMsgTemplate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ChatType       string   `json:"chat_type"`
		ExternalUserID []string `json:"external_userid"`
		Sender         string   `json:"sender"`
		Text           *struct {
			Content string `json:"content"`
		} `json:"text"`
		Attachments []map[string]json.RawMessage `json:"attachments"`
	}
	corp, at, raw, ok := s.readSend(w, r, &req)
	if !ok {
		return
	}
	rec := Request{At: at, CorpID: corp, Body: raw}
	switch {
	case req.ChatType != "" && req.ChatType != "single" && req.ChatType != "group":
		s.answer(w, r.URL.Path, rec, 40058, "chat_type", nil)
		return
	case (req.Text == nil || req.Text.Content == "") && len(req.Attachments) == 0:
		s.answer(w, r.URL.Path, rec, 40058, "text or attachments required", nil)
		return
	}
	if bad := attachmentsOK(req.Attachments); bad != "" {
		s.answer(w, r.URL.Path, rec, 40058, bad, nil)
		return
	}
	fail := []string{}
	s.mu.Lock()
	for _, id := range req.ExternalUserID {
		if s.groupFail[id] {
			fail = append(fail, id)
		}
	}
	s.seq++
	id := fmt.Sprintf("msgGROUP%08d", s.seq)
	s.mu.Unlock()
	s.answer(w, r.URL.Path, rec, 0, "", map[string]any{"fail_list": fail, "msgid": id})
}
