package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wejourney/wejourney/channels"
	webhooks "github.com/wejourney/wejourney/channels/webhook"
)

// SignatureHeader carries the webhook body's HMAC-SHA256:
// "sha256=<hex>", keyed with WEJOURNEY_SMS_WEBHOOK_SECRET (the same
// signature as webhook steps').
const SignatureHeader = webhooks.SignatureHeader

// WebhookRequest is the body the webhook provider POSTs to the brand's
// gateway (DESIGN.md): ID is the same on every retry of one delivery, so
// the gateway drops a repeat.
type WebhookRequest struct {
	ID       string            `json:"id"`
	Phone    string            `json:"phone"`
	Template string            `json:"template"`
	Params   map[string]string `json:"params"`
}

// Sign returns the X-Wejourney-Signature value of body under secret.
func Sign(secret string, body []byte) string { return webhooks.Sign(secret, body) }

// Verify reports whether sig (an X-Wejourney-Signature value) signs body
// under secret, comparing in constant time. Gateways written in Go can use
// it.
func Verify(secret string, body []byte, sig string) bool { return webhooks.Verify(secret, body, sig) }

// webhook POSTs to the brand's own SMS gateway (model: listmonk's
// postback messenger).
type webhook struct {
	url    string
	secret string
	client *http.Client
}

func newWebhook(cfg Config) (*webhook, error) {
	if cfg.WebhookURL == "" {
		return nil, errors.New("WEJOURNEY_SMS_WEBHOOK_URL: required with WEJOURNEY_SMS_PROVIDER=webhook (the brand's SMS gateway)")
	}
	if u, err := url.Parse(cfg.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("WEJOURNEY_SMS_WEBHOOK_URL: not an http(s) URL")
	}
	if cfg.WebhookSecret == "" {
		return nil, errors.New("WEJOURNEY_SMS_WEBHOOK_SECRET: required with WEJOURNEY_SMS_PROVIDER=webhook (requests are signed with it)")
	}
	return &webhook{url: cfg.WebhookURL, secret: cfg.WebhookSecret, client: cfg.HTTPClient}, nil
}

func (*webhook) name() string             { return Webhook }
func (*webhook) resend() bool             { return true } // the gateway dedupes on id
func (*webhook) idempotencyField() string { return "id" }

// send POSTs the message: 2xx sent; 429 ErrQuota (after Retry-After);
// 5xx and no answer temporary; any other status ErrPermanent.
func (w *webhook) send(ctx context.Context, phone string, msg channels.Message) (channels.Result, error) {
	id := msg.IdempotencyKey
	if id == "" {
		id = strconv.FormatInt(msg.DeliveryID, 10)
	}
	params := msg.Data
	if params == nil {
		params = map[string]string{}
	}
	body, err := json.Marshal(WebhookRequest{ID: id, Phone: phone, Template: msg.Template, Params: params})
	if err != nil {
		return channels.Result{}, fmt.Errorf("encode: %w: %w", err, channels.ErrPermanent)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return channels.Result{}, fmt.Errorf("request: %w: %w", err, channels.ErrPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wejourney")
	req.Header.Set(SignatureHeader, Sign(w.secret, body))
	resp, err := w.client.Do(req)
	if err != nil {
		// Never the URL: it may hold the gateway's credentials.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return channels.Result{}, fmt.Errorf("gateway did not answer: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := strings.TrimSpace(string(answer))
	if len(text) > 200 {
		text = text[:200]
	}
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return channels.Result{ProviderID: id}, nil
	case s == http.StatusTooManyRequests:
		return channels.Result{}, &channels.Error{Class: channels.ErrQuota, Code: s, Msg: "gateway: too many requests " + text,
			RetryAfter: webhooks.RetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case s >= 500:
		return channels.Result{}, &channels.Error{Code: s, Msg: "gateway: " + http.StatusText(s) + " " + text}
	default:
		return channels.Result{}, &channels.Error{Class: channels.ErrPermanent, Code: s, Msg: "gateway refused the message: " + http.StatusText(s) + " " + text}
	}
}
