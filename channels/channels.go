// Package channels defines how the journey engine hands a rendered message to
// a delivery channel (WeChat, WeCom, SMS, email, webhook) and how a channel
// reports failure.
//
// The contract: a Sender delivers one Message and returns the provider's id
// for it, or an error. Errors are classified with the sentinels below and
// checked with errors.Is:
//
//   - ErrUnreachable: permanent for this message and this member (unfollowed,
//     outside the 48 h window, no phone). The engine does not retry; it takes
//     the step's fallback.
//   - ErrQuota: the account's quota is spent (45009, 45047). Retry later,
//     after RetryAfter when the error carries one.
//   - ErrPermanent: the request itself is wrong (bad template id, bad
//     credentials). Retrying cannot help; the step fails.
//   - anything else is temporary (network, 5xx, token refresh races) and is
//     retried with backoff.
//
// A Sender must be safe for concurrent use. It must not retry on its own
// beyond refreshing a credential once: the engine owns retries so that it can
// keep its at-most-once promise.
package channels

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Channel names used in journey steps (`send.channel`).
const (
	WeChatText            = "wechat.text"
	WeChatNews            = "wechat.news"
	WeChatImage           = "wechat.image"
	WeChatMiniprogramPage = "wechat.miniprogram_page"
	WeChatTemplate        = "wechat.template"
	WeChatSubscribe       = "wechat.subscribe_message"
	WeComWelcome          = "wecom.welcome"
	WeComText             = "wecom.text"
	SMS                   = "sms"
	Email                 = "email"
	Webhook               = "webhook"
)

// Error classes. Wrap them (fmt.Errorf("...: %w", ErrUnreachable)) or use
// *Error, whose Unwrap returns its Class.
var (
	// ErrUnreachable means the member cannot receive this message on this
	// channel now (unfollowed, window closed, no address). Take the fallback.
	ErrUnreachable = errors.New("member unreachable on this channel")
	// ErrQuota means a platform quota or rate limit was hit. Retry later.
	ErrQuota = errors.New("channel quota exceeded")
	// ErrPermanent means the request is wrong and retrying cannot help.
	ErrPermanent = errors.New("permanent channel error")
)

// Error is a provider error with its code, classified into one of the
// sentinel classes (or nil for a temporary error).
type Error struct {
	// Class is ErrUnreachable, ErrQuota, ErrPermanent or nil (temporary).
	Class error
	// Code is the provider's error code, e.g. 45015 for WeChat.
	Code int
	// Msg is the provider's error message.
	Msg string
	// RetryAfter, when set with ErrQuota, is how long to wait before retrying.
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string {
	class := "temporary"
	if e.Class != nil {
		class = e.Class.Error()
	}
	return fmt.Sprintf("%s: code %d: %s", class, e.Code, e.Msg)
}

// Unwrap returns the error's class so errors.Is matches the sentinels.
func (e *Error) Unwrap() error { return e.Class }

// Recipient names the member on every channel the engine knows of. A sender
// uses the fields it needs and returns ErrUnreachable when they are empty.
type Recipient struct {
	MemberID       int64
	AppID          string // Official Account appid the OpenID belongs to
	OpenID         string
	UnionID        string
	ExternalUserID string // WeCom external contact
	Phone          string
	Email          string
}

// Message is one rendered message for one member.
type Message struct {
	// DeliveryID is the engine's row id for this delivery; stable across retries.
	DeliveryID int64
	// IdempotencyKey is stable across retries of the same delivery; senders pass
	// it to providers that dedupe (WeChat template client_msg_id, SMS out_id).
	IdempotencyKey string
	// Channel is one of the channel names above.
	Channel string
	// To is the member.
	To Recipient
	// Text is the body of text messages (wechat.text, wecom.text, email body).
	Text string
	// Subject is the email subject.
	Subject string
	// TemplateID names a WeChat template, subscribe-message template or SMS template.
	TemplateID string
	// URL is the link of a template message or news article.
	URL string
	// Data holds template data (WeChat template keywords, SMS params).
	Data map[string]string
	// Extra carries channel-specific rendered fields (miniprogram appid/pagepath,
	// media_id, welcome_code, ...).
	Extra map[string]string
}

// Result is what the provider said about an accepted message.
type Result struct {
	// ProviderID is the provider's message id, when it returns one.
	ProviderID string
	// Sandbox is true when the message was only logged (no real credentials).
	Sandbox bool
}

// Sender delivers messages on one or more channels.
type Sender interface {
	// Send delivers msg once. See the package doc for the error contract.
	Send(ctx context.Context, msg Message) (Result, error)
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, msg Message) (Result, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, msg Message) (Result, error) { return f(ctx, msg) }

// Registry maps channel names to senders.
type Registry map[string]Sender

// ErrNoSender is returned by Registry.Send for a channel nobody registered.
var ErrNoSender = errors.New("no sender for channel")

// Send routes msg to the sender registered for msg.Channel.
func (r Registry) Send(ctx context.Context, msg Message) (Result, error) {
	s, ok := r[msg.Channel]
	if !ok {
		return Result{}, fmt.Errorf("%w %q: %w", ErrNoSender, msg.Channel, ErrPermanent)
	}
	return s.Send(ctx, msg)
}
