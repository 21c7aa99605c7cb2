package fakewx

import (
	"encoding/json"
	"net/http"
	"time"
)

// Kinds of the subscription messages the fake records (Message.Kind).
const (
	// KindSubscribeOnce is an Official Account 一次性订阅消息
	// (/cgi-bin/message/template/subscribe).
	KindSubscribeOnce = "subscribe_once"
	// KindBizSend is an Official Account 订阅通知
	// (/cgi-bin/message/subscribe/bizsend).
	KindBizSend = "bizsend"
	// KindMPSubscribe is a mini-program subscribe message
	// (/cgi-bin/message/subscribe/send).
	KindMPSubscribe = "mp_subscribe"
)

// The three subscription-message send APIs, answered like the template
// send: token, body (44002 empty, 47001 not JSON, 40003 no touser, 40037
// no template_id, 47003 no data), an error injected with SetError for the
// touser, then the message is accepted and recorded with its Raw body.
func (s *Server) handleSubscribeOnce(w http.ResponseWriter, r *http.Request) {
	s.handleSubscribe(w, r, KindSubscribeOnce)
}

func (s *Server) handleBizSend(w http.ResponseWriter, r *http.Request) {
	s.handleSubscribe(w, r, KindBizSend)
}

func (s *Server) handleMPSubscribe(w http.ResponseWriter, r *http.Request) {
	s.handleSubscribe(w, r, KindMPSubscribe)
}

func (s *Server) handleSubscribe(w http.ResponseWriter, r *http.Request, kind string) {
	body, appID, ok := s.readSend(w, r)
	if !ok {
		return
	}
	var req struct {
		ToUser     string `json:"touser"`
		TemplateID string `json:"template_id"`
		URL        string `json:"url"`
		Page       string `json:"page"`
		Data       map[string]struct {
			Value any `json:"value"`
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
	case len(req.Data) == 0:
		writeErr(w, 47003)
		return
	}
	if code := s.injected(req.ToUser); code != 0 {
		writeErr(w, code)
		return
	}
	m := Message{Kind: kind, AppID: appID, ToUser: req.ToUser, MsgType: kind, TemplateID: req.TemplateID,
		URL: req.URL, At: time.Now(), Raw: body, Data: make(map[string]string, len(req.Data))}
	if m.URL == "" {
		m.URL = req.Page
	}
	for k, v := range req.Data {
		if str, ok := v.Value.(string); ok {
			m.Data[k] = str
		}
	}
	s.mu.Lock()
	s.templateID++
	id := s.templateID
	s.mu.Unlock()
	s.record(m)
	writeTemplateOK(w, id)
}
