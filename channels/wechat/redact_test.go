package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/util"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/fakewx"
)

// When WeChat answers 5xx or the connection fails, net/http's error names
// the URL with ?access_token=…; Send's error must not, and must stay a
// temporary error.
func TestSendErrorsHoldNoToken(t *testing.T) {
	t.Parallel()
	for _, fault := range []string{"HTTP 502", "HTTP 503 template", "dropped connection", "timeout"} {
		t.Run(fault, func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, fakewx.Config{})
			s, _ := newSender(t, fake.URL, nil)
			ctx := context.Background()
			msg := channels.Message{Channel: channels.WeChatText, To: to("o1"), Text: "x"}
			if _, err := s.Send(ctx, msg); err != nil { // fetches and caches the token
				t.Fatal(err)
			}
			token, _ := s.cache.Get(TokenCacheKey(appID)).(string)
			if token == "" {
				t.Fatal("no cached token")
			}
			switch fault {
			case "HTTP 502":
				fake.SetHTTPStatus(http.StatusBadGateway)
			case "HTTP 503 template":
				fake.SetHTTPStatus(http.StatusServiceUnavailable)
				msg = channels.Message{Channel: channels.WeChatTemplate, To: to("o1"), TemplateID: "T"}
			case "dropped connection":
				fake.SetDropConnections(true)
			case "timeout":
				fake.SetDropConnections(false)
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Nanosecond)
				defer cancel()
			}
			_, err := s.Send(ctx, msg)
			if err == nil {
				t.Fatal("Send succeeded through the fault")
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "secret") {
				t.Errorf("error holds the access token or secret: %v", err)
			}
			if fault != "timeout" && !strings.Contains(err.Error(), "access_token=xxxxx") {
				t.Errorf("error %q does not show the masked URL (test set-up?)", err)
			}
			for _, class := range []error{channels.ErrPermanent, channels.ErrUnreachable, channels.ErrQuota} {
				if errors.Is(err, class) {
					t.Errorf("errors.Is(%v, %v): a transport fault must stay temporary", err, class)
				}
			}
			if fault == "timeout" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a timed-out send is not context.DeadlineExceeded: %v", err)
			}
		})
	}
}

// The non-stable token endpoint has the AppSecret in its URL; a transport
// error fetching a token must not carry it.
func TestTokenErrorHoldsNoSecret(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer srv.Close()
	_, raw := util.HTTPGetContext(context.Background(),
		srv.URL+"/cgi-bin/token?grant_type=client_credential&appid=wx1&secret="+url.QueryEscape("the-app-secret"))
	if raw == nil || !strings.Contains(raw.Error(), "the-app-secret") {
		t.Fatalf("test set-up: silenceper's error %v does not name the secret", raw)
	}
	err := tokenError(fmt.Errorf("get access token: %w", raw))
	if strings.Contains(err.Error(), "the-app-secret") {
		t.Errorf("token error holds the AppSecret: %v", err)
	}
	if !errors.Is(err, raw) {
		t.Errorf("token error lost its cause: %v", err)
	}
}
