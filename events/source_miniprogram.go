package events

import "github.com/wejourney/wejourney/model"

// Event types of the mini-program (source_miniprogram.go), posted by the
// mini-program itself to POST /api/v1/miniprogram/events.
const (
	MiniProgramOpened = "miniprogram.opened"
	MiniProgramClosed = "miniprogram.closed"
	// MiniProgramSubscribeAuthorized: the member accepted a template in
	// wx.requestSubscribeMessage (one send per acceptance).
	MiniProgramSubscribeAuthorized = "miniprogram.subscribe_authorized"
)

// MiniProgram is the mini-program source (POST /api/v1/miniprogram/events):
// pages opened and closed, posted by the mini-program with the session token
// of the member it logged in (wx.login, code2session). Its member is named by
// the mini-program's appid and openid, and the unionid when WeChat gave one.
type MiniProgram struct{}

// Name implements Source.
func (MiniProgram) Name() string { return "miniprogram" }

// Namespace implements Source.
func (MiniProgram) Namespace() string { return "miniprogram." }

// Events implements Source.
func (MiniProgram) Events() []Spec {
	props := []string{"page", "duration_s"}
	return []Spec{
		{Type: MiniProgramOpened, Props: props, Doc: "the member opened (showed) a page of the mini-program"},
		{Type: MiniProgramClosed, Props: props, Doc: "the member left a page of the mini-program; duration_s is how long it was shown"},
		{Type: MiniProgramSubscribeAuthorized, Props: []string{"template_id", "source"},
			Doc: "the member accepted template_id in wx.requestSubscribeMessage: one subscription message may be sent (source miniprogram)"},
	}
}

// Apply implements Source: every mini-program event is the member
// interacting. It changes no Official Account subscription: a mini-program
// openid says nothing about following.
func (MiniProgram) Apply(m *model.Member, ev *model.Event) {
	at := ev.At
	m.LastInteractionAt = &at
}
