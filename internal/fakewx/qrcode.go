package fakewx

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// QRCodeCall is one accepted /cgi-bin/qrcode/create call.
type QRCodeCall struct {
	AppID         string // from the access token
	ActionName    string // QR_STR_SCENE, QR_LIMIT_STR_SCENE, QR_SCENE, QR_LIMIT_SCENE
	SceneStr      string
	SceneID       int64
	ExpireSeconds int // as requested (0 when absent)
	Ticket        string
	URL           string
	Raw           []byte
}

// qrState is the fake's QR code bookkeeping (Server.qrs).
type qrState struct {
	mu    sync.Mutex
	calls []QRCodeCall
	err   int
	seq   int
}

func (s *Server) qr() *qrState { return &s.qrs }

// QRCodes returns the accepted qrcode/create calls in order.
func (s *Server) QRCodes() []QRCodeCall {
	st := s.qr()
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]QRCodeCall(nil), st.calls...)
}

// SetQRCodeError makes qrcode/create answer errcode (after the token check)
// until cleared with 0.
func (s *Server) SetQRCodeError(errcode int) {
	st := s.qr()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.err = errcode
}

// handleQRCodeCreate is POST /cgi-bin/qrcode/create: it checks the token
// (41001, 40001), the action (40097 unknown action_name, 40058 no scene or
// a scene_str outside 1 to 64 characters, an expire_seconds over 2592000),
// an injected error, then answers a ticket, the expire_seconds of a
// temporary code (default 60) and the url the QR image encodes.
func (s *Server) handleQRCodeCreate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, 43002)
		return
	}
	info, ok := s.tokenOf(w, r)
	if !ok {
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || len(raw) == 0 {
		writeErr(w, 44002)
		return
	}
	var req struct {
		ExpireSeconds int    `json:"expire_seconds"`
		ActionName    string `json:"action_name"`
		ActionInfo    struct {
			Scene struct {
				SceneStr string `json:"scene_str"`
				SceneID  int64  `json:"scene_id"`
			} `json:"scene"`
		} `json:"action_info"`
	}
	if json.Unmarshal(raw, &req) != nil {
		writeErr(w, 47001)
		return
	}
	invalid := func(msg string) {
		writeJSON(w, map[string]any{"errcode": 40058, "errmsg": "invalid parameter: " + msg})
	}
	sc := req.ActionInfo.Scene
	temporary := false
	switch req.ActionName {
	case "QR_STR_SCENE", "QR_LIMIT_STR_SCENE":
		if n := len([]rune(sc.SceneStr)); n < 1 || n > 64 {
			invalid("scene_str")
			return
		}
		temporary = req.ActionName == "QR_STR_SCENE"
	case "QR_SCENE", "QR_LIMIT_SCENE":
		if sc.SceneID <= 0 {
			invalid("scene_id")
			return
		}
		temporary = req.ActionName == "QR_SCENE"
	default:
		writeJSON(w, map[string]any{"errcode": 40097, "errmsg": "invalid args: action_name"})
		return
	}
	if req.ExpireSeconds > 2592000 {
		invalid("expire_seconds")
		return
	}
	st := s.qr()
	st.mu.Lock()
	if st.err != 0 {
		code := st.err
		st.mu.Unlock()
		writeErr(w, code)
		return
	}
	st.seq++
	n := strconv.Itoa(st.seq)
	c := QRCodeCall{AppID: info.appID, ActionName: req.ActionName, SceneStr: sc.SceneStr, SceneID: sc.SceneID,
		ExpireSeconds: req.ExpireSeconds, Ticket: "gQFakeTicket" + n + "==", URL: "http://weixin.qq.com/q/fake" + n, Raw: raw}
	st.calls = append(st.calls, c)
	st.mu.Unlock()
	ans := map[string]any{"ticket": c.Ticket, "url": c.URL}
	if temporary {
		exp := req.ExpireSeconds
		if exp <= 0 {
			exp = 60
		}
		ans["expire_seconds"] = exp
	}
	writeJSON(w, ans)
}
