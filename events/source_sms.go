package events

import (
	"strings"
	"unicode"

	"golang.org/x/text/width"

	"github.com/wejourney/wejourney/model"
)

// Event types of SMS (source_sms.go).
const (
	// SMSReceived is a member's SMS to the brand (a reply to one of its
	// messages): from the providers' uplink callbacks, or posted by the
	// brand through the events API. A reply OptOutReply recognises opts
	// the member out of marketing SMS.
	SMSReceived = "sms.received"
	// SMSUnsubscribed opts the member out of marketing SMS.
	SMSUnsubscribed = "sms.unsubscribed"
)

// SMS is the source of SMS events: the providers' uplink callbacks
// (POST /sms/aliyun/uplink, /sms/tencent/uplink). It owns no namespace:
// brands post sms.received and sms.unsubscribed through the events API
// too (their SMS gateway's replies).
type SMS struct{}

// Name implements Source.
func (SMS) Name() string { return "sms" }

// Namespace implements Source: none, so the events API accepts sms.* types.
func (SMS) Namespace() string { return "" }

// Events implements Source.
func (SMS) Events() []Spec {
	return []Spec{
		{Type: SMSReceived, Props: []string{"text", "phone", "sign", "provider", "dest_code"}, Open: true,
			Doc: "the member sent an SMS (a reply); TD, T, N or 退订 opts them out of marketing SMS"},
		{Type: SMSUnsubscribed, Open: true, Doc: "the member opted out of marketing SMS"},
	}
}

// Apply implements Source: an opt-out reply or sms.unsubscribed records
// the member's opt-out of marketing SMS at the event's time.
func (SMS) Apply(m *model.Member, ev *model.Event) {
	switch ev.Type {
	case SMSUnsubscribed:
		m.OptOut("sms", ev.At)
	case SMSReceived:
		if text, ok := ev.Props["text"].(string); ok && OptOutReply(text) {
			m.OptOut("sms", ev.At)
		}
	}
}

// optOutWords are the replies that opt a member out of marketing SMS,
// compared after OptOutReply's normalisation.
var optOutWords = map[string]bool{"TD": true, "T": true, "N": true, "退订": true}

// OptOutReply reports whether an SMS reply opts the member out: the whole
// reply, trimmed of spaces and punctuation around it, with full-width
// letters folded (ＴＤ) and case ignored, is TD, T, N or 退订. Anything
// longer ("TD谢谢", "不要退订") is an ordinary reply.
func OptOutReply(text string) bool {
	t := width.Narrow.String(strings.TrimSpace(text))
	t = strings.TrimFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) })
	return optOutWords[strings.ToUpper(t)]
}
