// Package webhook is the sender of the `webhook` step kind: it calls the
// brand's own system (a CRM, a coupon service) with a rendered request,
// signed when a secret is configured, and classifies the answer for the
// engine's retries (model: listmonk's postback messenger).
//
// A request carries Idempotency-Key: wj-<delivery id>, the same on every
// retry of one step visit, so the receiver can drop a repeat; the engine
// therefore asks again when a process died while the request was out.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wejourney/wejourney/channels"
)

// SignatureHeader carries the body's HMAC-SHA256, "sha256=<hex>", keyed
// with the configured secret.
const SignatureHeader = "X-Wejourney-Signature"

// Extra keys of a webhook message (channels.Message.Extra): the method,
// and each header as HeaderPrefix + its name.
const (
	ExtraMethod  = "method"
	HeaderPrefix = "header:"
)

// Methods are the HTTP methods a webhook step may use.
var Methods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodGet, http.MethodDelete}

// Sign returns the X-Wejourney-Signature value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig (an X-Wejourney-Signature value) signs body
// under secret, comparing in constant time.
func Verify(secret string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

// RetryAfter reads a Retry-After header: seconds or an HTTP date; zero
// when absent or unreadable.
func RetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Config configures the sender. The zero value works: unsigned requests,
// a 10 s timeout, a client of its own.
type Config struct {
	// Secret signs every request body (SignatureHeader);
	// WEJOURNEY_WEBHOOK_SECRET. "": requests are not signed.
	Secret string
	// Timeout bounds one request. Default 10 s.
	Timeout time.Duration
	// HTTPClient sends the requests. Default: a client of its own with
	// Timeout.
	HTTPClient *http.Client
}

// Sender calls webhooks. It is a channels.Provider of the webhook channel.
type Sender struct {
	secret string
	client *http.Client
}

// New returns a sender for cfg.
func New(cfg Config) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.Timeout}
	}
	return &Sender{secret: cfg.Secret, client: cfg.HTTPClient}
}

// Channels implements channels.Provider: the webhook channel, asked again
// after a crash (the Idempotency-Key lets the receiver drop a repeat).
func (s *Sender) Channels() map[string]channels.Capabilities {
	return map[string]channels.Capabilities{
		channels.Webhook: {Resend: true, IdempotencyField: "Idempotency-Key header"},
	}
}

// Send makes the request of msg: URL, Text as the body, the method and
// headers from Extra. A 2xx answer is success; 429 is ErrQuota (after
// Retry-After); 408, 5xx and no answer are temporary; any other status,
// or a URL that is not http(s), is ErrPermanent.
func (s *Sender) Send(ctx context.Context, msg channels.Message) (channels.Result, error) {
	u, err := url.Parse(msg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return channels.Result{}, &channels.Error{Class: channels.ErrPermanent, Msg: fmt.Sprintf("webhook url %q is not an http(s) URL", msg.URL)}
	}
	method := strings.ToUpper(msg.Extra[ExtraMethod])
	if method == "" {
		method = http.MethodPost
	}
	body := []byte(msg.Text)
	var rd io.Reader
	if method != http.MethodGet || len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return channels.Result{}, fmt.Errorf("webhook request: %w: %w", err, channels.ErrPermanent)
	}
	if len(body) > 0 {
		ct := "text/plain; charset=utf-8"
		if t := bytes.TrimSpace(body); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("User-Agent", "wejourney")
	for k, v := range msg.Extra {
		if name, ok := strings.CutPrefix(k, HeaderPrefix); ok {
			req.Header.Set(name, v)
		}
	}
	if msg.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", msg.IdempotencyKey)
	}
	if s.secret != "" {
		req.Header.Set(SignatureHeader, Sign(s.secret, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// Never the URL in the error: it may hold the receiver's credentials.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return channels.Result{}, fmt.Errorf("webhook %s did not answer: %w", u.Host, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := strings.TrimSpace(string(answer))
	if len(text) > 200 {
		text = text[:200]
	}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return channels.Result{ProviderID: msg.IdempotencyKey}, nil
	case c == http.StatusTooManyRequests:
		return channels.Result{}, &channels.Error{Class: channels.ErrQuota, Code: c, Msg: "webhook: too many requests " + text,
			RetryAfter: RetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case c >= 500 || c == http.StatusRequestTimeout:
		return channels.Result{}, &channels.Error{Code: c, Msg: "webhook: " + http.StatusText(c) + " " + text}
	default:
		return channels.Result{}, &channels.Error{Class: channels.ErrPermanent, Code: c, Msg: "webhook refused: " + http.StatusText(c) + " " + text}
	}
}
