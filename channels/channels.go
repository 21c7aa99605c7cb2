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
	"slices"
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
	// WeComMarkTag marks corp tags on the member's WeCom contact
	// (externalcontact/mark_tag).
	WeComMarkTag = "wecom.mark_tag"
	// WeComGroupMessage creates a customer group-send task the rep confirms
	// (externalcontact/add_msg_template).
	WeComGroupMessage = "wecom.group_message"
	SMS               = "sms"
	Email             = "email"
	Webhook           = "webhook"
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
	// MPAppID and MPOpenID are the member's mini-program openid
	// (mini-program subscribe messages).
	MPAppID  string
	MPOpenID string
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
	// Category is "marketing" (the default) or "transactional" (codes,
	// receipts: sent even to a member who opted out of marketing).
	Category string
	// To is the member.
	To Recipient
	// Text is the body of text messages (wechat.text, wecom.text, email body).
	Text string
	// Subject is the email subject.
	Subject string
	// TemplateID names a WeChat template or subscribe-message template.
	TemplateID string
	// Template is an SMS template code.
	Template string
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

// Capabilities say what the engine may assume of one channel, so that it
// holds no channel names: a sender declares them, the engine reads them.
type Capabilities struct {
	// Resend is true when the provider drops a second message carrying the
	// same Message.IdempotencyKey: a delivery whose fate is unknown (the
	// process died, or the request timed out, while the provider had it)
	// may then be sent again. Otherwise it is recorded as unknown, never
	// repeated.
	Resend bool
	// IdempotencyField names the provider field the key travels in
	// (WeChat template "client_msg_id", SMS "out_id"), for documentation
	// and the admin page.
	IdempotencyField string
	// NeedsSubscribed is true when the member must follow the Official
	// Account (Recipient.AppID) to receive it: the engine records an
	// unfollowed member as unreachable (43004) without calling the provider.
	NeedsSubscribed bool
	// Address picks the member's address on this channel from the
	// recipient (openid, phone, email); "" when the member has none. It is
	// recorded on the delivery. Nil: deliveries record no address.
	Address func(Recipient) string
	// OptOut names the opt-out list ("sms", "email") the channel honours:
	// a member on it gets no marketing message on this channel, and the
	// provider is not called. "": none.
	OptOut string
	// Urgent is true for messages the platform takes only within seconds
	// (WeCom's welcome_code, 20 s): their steps run on the urgent queue,
	// ahead of every other.
	Urgent bool
	// Requires lists the send-step fields a message on this channel needs:
	// "text", "subject", "template_id", "template", "url". Validation
	// refuses a step without them.
	Requires []string
}

// Addresses of the member on the channels that use them.
var (
	// ByOpenID addresses the member by Official Account openid.
	ByOpenID = func(r Recipient) string { return r.OpenID }
	// ByExternalUserID addresses a WeCom external contact.
	ByExternalUserID = func(r Recipient) string { return r.ExternalUserID }
	// ByPhone addresses the member's mobile number.
	ByPhone = func(r Recipient) string { return r.Phone }
	// ByEmail addresses the member's email.
	ByEmail = func(r Recipient) string { return r.Email }
)

// Provider is a sender that says which channels it serves and what each can
// do. Registry.Add registers it on all of them.
type Provider interface {
	Sender
	// Channels returns the channels the sender serves with their capabilities.
	Channels() map[string]Capabilities
}

type entry struct {
	sender Sender
	caps   Capabilities
}

// Registry maps channel names to the senders built from the configuration
// (in cmd/wejourney). Journey validation asks it whether a channel has a
// sender; the engine asks it for the channel's capabilities. Register every
// sender before the registry is used; it is then safe for concurrent use.
type Registry struct {
	m map[string]entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]entry{}} }

// Register makes s the sender of channel, with caps.
func (r *Registry) Register(channel string, s Sender, caps Capabilities) {
	r.m[channel] = entry{s, caps}
}

// Add registers p on every channel it serves.
func (r *Registry) Add(p Provider) {
	for ch, caps := range p.Channels() {
		r.Register(ch, p, caps)
	}
}

// Capabilities returns what channel can do, and false when no sender serves it.
func (r *Registry) Capabilities(channel string) (Capabilities, bool) {
	if r == nil {
		return Capabilities{}, false
	}
	e, ok := r.m[channel]
	return e.caps, ok
}

// Channels lists the channels that have a sender, sorted.
func (r *Registry) Channels() []string {
	if r == nil {
		return nil
	}
	out := make([]string, 0, len(r.m))
	for ch := range r.m {
		out = append(out, ch)
	}
	slices.Sort(out)
	return out
}

// ErrNoSender is returned by Registry.Send for a channel nobody registered.
var ErrNoSender = errors.New("no sender for channel")

// Send routes msg to the sender registered for msg.Channel.
func (r *Registry) Send(ctx context.Context, msg Message) (Result, error) {
	var e entry
	ok := false
	if r != nil {
		e, ok = r.m[msg.Channel]
	}
	if !ok {
		return Result{}, fmt.Errorf("%w %q: %w", ErrNoSender, msg.Channel, ErrPermanent)
	}
	return e.sender.Send(ctx, msg)
}

// Setup says what configures a channel that has no sender, for validation
// messages ("channel sms has no sender (set WEJOURNEY_SMS_PROVIDER=log …)").
// Unknown channels get "".
func Setup(channel string) string {
	switch channel {
	case WeChatText, WeChatNews, WeChatImage, WeChatMiniprogramPage, WeChatTemplate:
		return "configure an Official Account: WEJOURNEY_WECHAT_APPID"
	case WeChatSubscribe:
		return "configure an Official Account (WEJOURNEY_WECHAT_APPID) or a mini-program (WEJOURNEY_MINIPROGRAM_APPID); members authorise through a subscribe link, the 订阅通知 popup or wx.requestSubscribeMessage"
	case WeComWelcome, WeComText, WeComMarkTag, WeComGroupMessage:
		return "configure a WeCom app: WEJOURNEY_WECOM_CORPID, WEJOURNEY_WECOM_AGENTID and WEJOURNEY_WECOM_SECRET (or add one in the admin)"
	case SMS:
		return "set WEJOURNEY_SMS_PROVIDER=log (development: SMS are logged, not sent), or aliyun, tencent or webhook with its keys"
	case Email:
		return "set WEJOURNEY_SMTP_URL and WEJOURNEY_EMAIL_FROM (or leave WEJOURNEY_SMTP_URL unset and emails are logged)"
	case Webhook:
		return "webhooks need no configuration (WEJOURNEY_WEBHOOK_SECRET signs them)"
	}
	return ""
}

// Known reports whether channel is a channel name of this package, whether
// or not a sender serves it.
func Known(channel string) bool { return Setup(channel) != "" }
