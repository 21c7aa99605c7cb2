package events

import "github.com/wejourney/wejourney/model"

// Event types of email tracking (source_email.go), recorded by the open
// pixel, the click redirect and the unsubscribe page of the email channel.
const (
	EmailOpened       = "email.opened"
	EmailClicked      = "email.clicked"
	EmailUnsubscribed = "email.unsubscribed"
)

// Email is the source of email tracking events (GET /t/o/{token}, GET
// /t/c/{token}, GET/POST /u/{token}): the member is the one the signed
// token's delivery was sent to. Props: delivery_id (the delivery the
// message was), journey_id, and url for a click.
type Email struct{}

// Name implements Source.
func (Email) Name() string { return "email" }

// Namespace implements Source.
func (Email) Namespace() string { return "email." }

// Events implements Source.
func (Email) Events() []Spec {
	return []Spec{
		{Type: EmailOpened, Props: []string{"delivery_id", "journey_id"}, Doc: "the member's mail client loaded the open pixel of an email (one per delivery)"},
		{Type: EmailClicked, Props: []string{"url", "delivery_id", "journey_id"}, Doc: "the member followed a link of an email; url is the link (one per delivery and link)"},
		{Type: EmailUnsubscribed, Props: []string{"delivery_id", "journey_id"}, Doc: "the member unsubscribed from marketing email (the unsubscribe page, or their mail client's one-click unsubscribe)"},
	}
}

// Apply implements Source: email.unsubscribed puts the member on the
// "email" opt-out list, so no marketing email reaches them again
// (transactional ones still do). Opens and clicks change nothing: they are
// not an interaction WeChat counts.
func (Email) Apply(m *model.Member, ev *model.Event) {
	if ev.Type == EmailUnsubscribed {
		m.OptOut("email", ev.At)
	}
}
