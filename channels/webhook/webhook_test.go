package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels"
)

// Each answer of the brand's system is classed for the engine: 2xx sent,
// 429 a quota with its Retry-After, 408/5xx and no answer retried, any
// other status and a bad URL never retried.
func TestSendClassifiesAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		url       string // default: the server
		wantClass error
		wantTemp  bool
		wantAfter time.Duration
	}{
		{name: "200 sent", status: 200},
		{name: "204 sent", status: 204},
		{name: "429 quota after Retry-After", status: 429, header: map[string]string{"Retry-After": "7"}, wantClass: channels.ErrQuota, wantAfter: 7 * time.Second},
		{name: "503 retried", status: 503, wantTemp: true},
		{name: "408 retried", status: 408, wantTemp: true},
		{name: "400 permanent", status: 400, wantClass: channels.ErrPermanent},
		{name: "404 permanent", status: 404, wantClass: channels.ErrPermanent},
		{name: "not http", url: "ftp://crm.example.com/x", wantClass: channels.ErrPermanent},
		{name: "no answer retried", url: "http://127.0.0.1:1/x", wantTemp: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			u := tc.url
			if u == "" {
				u = srv.URL + "/hook"
			}
			_, err := New(Config{Timeout: 2 * time.Second}).Send(context.Background(), channels.Message{Channel: channels.Webhook, URL: u, IdempotencyKey: "wj-1"})
			switch {
			case tc.wantClass == nil && !tc.wantTemp:
				if err != nil {
					t.Fatalf("Send: %v; want success", err)
				}
			case tc.wantTemp:
				if err == nil || errors.Is(err, channels.ErrPermanent) || errors.Is(err, channels.ErrQuota) || errors.Is(err, channels.ErrUnreachable) {
					t.Fatalf("Send: %v; want a temporary error", err)
				}
			default:
				if !errors.Is(err, tc.wantClass) {
					t.Fatalf("Send: %v; want %v", err, tc.wantClass)
				}
			}
			var ce *channels.Error
			if tc.wantAfter > 0 && (!errors.As(err, &ce) || ce.RetryAfter != tc.wantAfter) {
				t.Errorf("Send: %v; want RetryAfter %v", err, tc.wantAfter)
			}
		})
	}
}

// A request carries the method, the headers, the body with its content
// type, the idempotency key, and the signature only when a secret is set.
func TestSendRequest(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{"", "s3cret"} {
		var got *http.Request
		var body []byte
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r
			body, _ = io.ReadAll(r.Body)
		}))
		msg := channels.Message{Channel: channels.Webhook, URL: srv.URL + "/leads?x=1", Text: ` {"a": 1}`, IdempotencyKey: "wj-42",
			Extra: map[string]string{ExtraMethod: "PATCH", HeaderPrefix + "X-Brand": "acme"}}
		if _, err := New(Config{Secret: secret}).Send(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		if got.Method != http.MethodPatch || got.URL.RequestURI() != "/leads?x=1" || got.Header.Get("X-Brand") != "acme" ||
			got.Header.Get("Idempotency-Key") != "wj-42" || got.Header.Get("Content-Type") != "application/json" || string(body) != msg.Text {
			t.Errorf("secret %q: got %s %s headers %v body %q", secret, got.Method, got.URL.RequestURI(), got.Header, body)
		}
		sig := got.Header.Get(SignatureHeader)
		if (secret == "") != (sig == "") || (secret != "" && !Verify(secret, body, sig)) {
			t.Errorf("secret %q: signature %q", secret, sig)
		}
	}
}
