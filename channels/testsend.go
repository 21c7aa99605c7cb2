package channels

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"strings"

	"github.com/wejourney/wejourney/internal/redact"
)

// TestRequest is a test send, outside any journey: the body of POST
// /api/v1/channels/{channel}/test and the flags of `wejourney channels
// test`.
type TestRequest struct {
	// To is the address on the channel: an openid (wechat.*), a phone
	// (sms), an email (email), an external_userid (wecom.welcome,
	// wecom.mark_tag, wecom.group_message) or a rep's userid (wecom.text).
	To string `json:"to"`
	// AppID is the Official Account (wechat.*), the mini-program
	// (wechat.subscribe_message) or the WeCom app "corpid/agentid"
	// (wecom.*); "" means the default.
	AppID      string            `json:"appid"`
	Text       string            `json:"text"`
	Subject    string            `json:"subject"`
	TemplateID string            `json:"template_id"`
	Template   string            `json:"template"`
	URL        string            `json:"url"`
	Data       map[string]string `json:"data"`
	// Params are SMS template params; they are merged into Data.
	Params map[string]string `json:"params"`
	Extra  map[string]string `json:"extra"`
}

// ErrNoAddress is returned by TestRequest.Message when To is empty.
var ErrNoAddress = errors.New("to is required: the address on the channel")

// Message builds the test message for channel: category transactional,
// IdempotencyKey "test-<random>", To set as the channel addresses members.
func (r TestRequest) Message(channel string) (Message, error) {
	if strings.TrimSpace(r.To) == "" {
		return Message{}, ErrNoAddress
	}
	msg := Message{Channel: channel, Category: "transactional", IdempotencyKey: TestKey(),
		Text: r.Text, Subject: r.Subject, TemplateID: r.TemplateID, Template: r.Template, URL: r.URL,
		Data: map[string]string{}, Extra: map[string]string{}}
	maps.Copy(msg.Data, r.Data)
	maps.Copy(msg.Data, r.Params)
	maps.Copy(msg.Extra, r.Extra)
	switch {
	case channel == WeChatSubscribe:
		msg.To = Recipient{MPAppID: r.AppID, MPOpenID: r.To}
	case strings.HasPrefix(channel, "wechat."):
		msg.To = Recipient{AppID: r.AppID, OpenID: r.To}
	case channel == SMS:
		msg.To = Recipient{Phone: r.To}
	case channel == Email:
		msg.To = Recipient{Email: r.To}
	case strings.HasPrefix(channel, "wecom."):
		if r.AppID != "" {
			msg.Extra["wecom_app"] = r.AppID
		}
		if channel == WeComText {
			if msg.Extra["to_user"] == "" {
				msg.Extra["to_user"] = r.To
			}
		} else {
			msg.To = Recipient{ExternalUserID: r.To}
		}
	default:
		msg.To = Recipient{AppID: r.AppID, OpenID: r.To, ExternalUserID: r.To, Phone: r.To, Email: r.To}
	}
	return msg, nil
}

// TestKey returns a fresh idempotency key for a test send, "test-<random>":
// no delivery row stands behind it (DeliveryID is 0).
func TestKey() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

// Failure describes a send's error for an operator: its class
// ("unreachable", "quota", "permanent" or "temporary"), the provider's
// code (0 when none) and the message, with secrets masked.
type Failure struct {
	Class string `json:"class"`
	Code  int    `json:"code"`
	Error string `json:"error"`
}

// Describe returns err's Failure.
func Describe(err error) Failure {
	f := Failure{Class: "temporary", Error: redact.String(err.Error())}
	switch {
	case errors.Is(err, ErrUnreachable):
		f.Class = "unreachable"
	case errors.Is(err, ErrQuota):
		f.Class = "quota"
	case errors.Is(err, ErrPermanent):
		f.Class = "permanent"
	}
	var ce *Error
	if errors.As(err, &ce) {
		f.Code = ce.Code
	}
	return f
}
