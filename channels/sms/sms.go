// Package sms is the `sms` channel: one Sender over one provider, chosen by
// WEJOURNEY_SMS_PROVIDER. Providers live one per file: aliyun.go (Alibaba
// Cloud SMS, SendSms through the generic darabonba OpenAPI client),
// tencent.go (Tencent Cloud SMS, SendSms v20210111), webhook.go (the brand's
// own gateway, DESIGN.md's contract) and log.go (development: logs, sends
// nothing).
//
// The Sender does what every provider shares: it finds the member's phone
// (none, or not a phone number: ErrUnreachable), normalises it to E.164,
// spends the per-phone allowance and the provider's call rate from the
// shared channels.Limiter, and hands the message to the provider, whose
// answer it classifies into the channels error classes. It never retries:
// the engine does.
package sms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/wejourney/wejourney/channels"
)

// Provider names (WEJOURNEY_SMS_PROVIDER).
const (
	Aliyun  = "aliyun"
	Tencent = "tencent"
	Webhook = "webhook"
	Log     = "log"
)

// Providers lists the provider names New accepts.
func Providers() []string { return []string{Aliyun, Tencent, Webhook, Log} }

// DefaultPhoneRates is the per-phone allowance when Config.PhoneRates is
// nil: 5 messages an hour and 10 a day to one number, the providers' own
// default flow control for notifications (Aliyun: 5/hour, 10/day per
// number and signature), so a journey is held by wejourney (ErrQuota, retried
// later) before the provider refuses.
var DefaultPhoneRates = []channels.Rate{{N: 5, Per: time.Hour}, {N: 10, Per: 24 * time.Hour}}

// DefaultProviderRate is the provider call rate when Config.ProviderRate is
// zero: 100 calls a second from all processes together (Aliyun and Tencent
// allow thousands a second per account; a brand's own gateway may not).
var DefaultProviderRate = channels.Rate{N: 100, Per: time.Second}

// Config builds a Sender.
type Config struct {
	// Provider is one of Providers().
	Provider string
	// SignName is the approved SMS signature (签名), required by aliyun and
	// tencent.
	SignName string
	// Aliyun's credentials and endpoint ("dysmsapi.aliyuncs.com" when
	// empty; "http://127.0.0.1:port" for tests).
	AliyunAccessKeyID     string
	AliyunAccessKeySecret string
	AliyunEndpoint        string
	// Tencent's credentials, SMS application, region (ap-guangzhou when
	// empty) and endpoint ("sms.tencentcloudapi.com" when empty;
	// "http://127.0.0.1:port" for tests).
	TencentSecretID  string
	TencentSecretKey string
	TencentSDKAppID  string
	TencentRegion    string
	TencentEndpoint  string
	// WebhookURL and WebhookSecret are the brand's gateway and the HMAC key
	// its requests are signed with.
	WebhookURL    string
	WebhookSecret string
	// PhoneRates bound messages to one phone number (nil:
	// DefaultPhoneRates; an empty non-nil slice: no limit). ProviderRate
	// bounds calls to the provider (zero: DefaultProviderRate; N < 0: no
	// limit). Both are spent from Limiter; nil Limiter: no limits.
	PhoneRates   []channels.Rate
	ProviderRate channels.Rate
	Limiter      channels.Limiter
	// HTTPClient is used for the provider's API (nil: one with Timeout).
	HTTPClient *http.Client
	// Timeout bounds one provider call (zero: 10 s).
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// provider is one SMS API.
type provider interface {
	// name is the provider's name (Providers()).
	name() string
	// send delivers msg to phone (E.164) once.
	send(ctx context.Context, phone string, msg channels.Message) (channels.Result, error)
	// resend reports whether the provider drops a second request carrying
	// the same idempotency key (channels.Capabilities.Resend).
	resend() bool
	// idempotencyField names the request field the key travels in.
	idempotencyField() string
}

// Sender sends the `sms` channel through one provider. It implements
// channels.Provider and is safe for concurrent use.
type Sender struct {
	p            provider
	limiter      channels.Limiter
	phoneRates   []channels.Rate
	providerRate channels.Rate
	log          *slog.Logger
}

// New returns the Sender of cfg.Provider. An error names the missing or
// wrong setting (by its WEJOURNEY_ variable).
func New(cfg Config) (*Sender, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.PhoneRates == nil {
		cfg.PhoneRates = DefaultPhoneRates
	}
	if cfg.ProviderRate == (channels.Rate{}) {
		cfg.ProviderRate = DefaultProviderRate
	}
	var (
		p   provider
		err error
	)
	switch cfg.Provider {
	case Aliyun:
		p, err = newAliyun(cfg)
	case Tencent:
		p, err = newTencent(cfg)
	case Webhook:
		p, err = newWebhook(cfg)
	case Log, "":
		p = logProvider{log: cfg.Logger}
		// Nothing is sent: no allowance is spent.
		cfg.Limiter = nil
	default:
		return nil, fmt.Errorf("WEJOURNEY_SMS_PROVIDER: %q: want one of %s", cfg.Provider, strings.Join(Providers(), ", "))
	}
	if err != nil {
		return nil, err
	}
	return &Sender{p: p, limiter: cfg.Limiter, phoneRates: cfg.PhoneRates, providerRate: cfg.ProviderRate, log: cfg.Logger}, nil
}

// Provider is the name of the sender's provider.
func (s *Sender) Provider() string { return s.p.name() }

// Development reports whether the sender is the log provider: messages are
// logged, never sent.
func (s *Sender) Development() bool { return s.p.name() == Log }

// Channels implements channels.Provider: the `sms` channel.
func (s *Sender) Channels() map[string]channels.Capabilities {
	return map[string]channels.Capabilities{channels.SMS: {
		Address:          channels.ByPhone,
		OptOut:           "sms",
		Requires:         []string{"template"},
		Resend:           s.p.resend(),
		IdempotencyField: s.p.idempotencyField(),
	}}
}

// Send implements channels.Sender.
func (s *Sender) Send(ctx context.Context, msg channels.Message) (channels.Result, error) {
	if msg.To.Phone == "" {
		return channels.Result{}, &channels.Error{Class: channels.ErrUnreachable, Msg: "member has no phone number"}
	}
	phone, ok := E164(msg.To.Phone)
	if !ok {
		return channels.Result{}, &channels.Error{Class: channels.ErrUnreachable, Msg: fmt.Sprintf("%.40q is not a phone number", msg.To.Phone)}
	}
	if msg.Template == "" {
		return channels.Result{}, &channels.Error{Class: channels.ErrPermanent, Msg: "sms: the step names no template"}
	}
	if s.limiter != nil {
		for _, r := range s.phoneRates {
			if err := s.limiter.Take(ctx, PhoneLimitKey(phone, r), r); err != nil {
				return channels.Result{}, fmt.Errorf("sms: per-phone limit: %w", err)
			}
		}
		if s.providerRate.N > 0 {
			if err := s.limiter.Take(ctx, "sms:"+s.p.name(), s.providerRate); err != nil {
				return channels.Result{}, fmt.Errorf("sms: %s call rate: %w", s.p.name(), err)
			}
		}
	}
	res, err := s.p.send(ctx, phone, msg)
	if err != nil {
		return res, fmt.Errorf("sms %s: %w", s.p.name(), err)
	}
	return res, nil
}

// PhoneLimitKey is the limiter key of one phone's allowance r:
// "sms:phone:<E.164 phone>" for the first rate period of an hour, and with
// ":<period>" appended for the others ("sms:phone:+8613800000000:24h0m0s").
func PhoneLimitKey(phone string, r channels.Rate) string {
	if r.Per == time.Hour {
		return "sms:phone:" + phone
	}
	return "sms:phone:" + phone + ":" + r.Per.String()
}

// E164 normalises a phone number to E.164: spaces, dashes, dots and
// parentheses are dropped; an 11-digit mainland China mobile number
// (1xxxxxxxxxx), or one written 86…/0086…, gets +86; a number with a
// leading + (or 00) keeps its country code. It reports false for anything
// else.
func E164(s string) (string, bool) {
	var b strings.Builder
	for i, r := range strings.TrimSpace(s) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ', r == '-', r == '.', r == '(', r == ')':
		default:
			return "", false
		}
	}
	d := b.String()
	plus := strings.HasPrefix(d, "+")
	d = strings.TrimPrefix(d, "+")
	if !plus && strings.HasPrefix(d, "00") {
		d, plus = d[2:], true
	}
	switch {
	case !plus && mainland(d):
		return "+86" + d, true
	case !plus && strings.HasPrefix(d, "86") && mainland(d[2:]):
		return "+" + d, true
	case plus && strings.HasPrefix(d, "86"):
		if !mainland(d[2:]) {
			return "", false
		}
		return "+" + d, true
	case plus && len(d) >= 8 && len(d) <= 15 && d[0] != '0':
		return "+" + d, true
	}
	return "", false
}

// mainland reports whether d is an 11-digit mainland China mobile number.
func mainland(d string) bool {
	return len(d) == 11 && d[0] == '1' && strings.Trim(d, "0123456789") == ""
}

// Mainland returns an E.164 number's national form for a mainland China
// number ("+8613800000000" → "13800000000"), and the digits with the
// country code otherwise ("+85291234567" → "85291234567"), as Aliyun's
// PhoneNumbers takes them.
func Mainland(e164 string) string {
	d := strings.TrimPrefix(e164, "+")
	if strings.HasPrefix(d, "86") && mainland(d[2:]) {
		return d[2:]
	}
	return d
}

// errTimeout marks a provider call that may have reached the provider (a
// timeout after the request left): with a provider that does not dedupe,
// the engine records the delivery as unknown and does not send it again.
var errTimeout = context.DeadlineExceeded

// classify wraps a provider error code into *channels.Error of class.
func classify(class error, code, msg string) *channels.Error {
	return &channels.Error{Class: class, Msg: code + ": " + msg}
}

// isTimeout reports whether err (or its text, for SDKs that flatten
// errors) says the call timed out.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return true
	}
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "timeout") || strings.Contains(s, "deadline exceeded")
}
