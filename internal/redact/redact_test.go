package redact_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/internal/redact"
)

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"silenceper non-200",
			"http get error : uri=https://api.weixin.qq.com/cgi-bin/message/custom/send?access_token=78_AbC-dEf.123 , statusCode=502",
			"http get error : uri=https://api.weixin.qq.com/cgi-bin/message/custom/send?access_token=xxxxx , statusCode=502"},
		{"token URL with appsecret",
			"https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=s3cr3t",
			"https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=xxxxx"},
		{"url.Error text", `Post "http://127.0.0.1:1/send?access_token=tok&x=1": EOF`,
			`Post "http://127.0.0.1:1/send?access_token=xxxxx&x=1": EOF`},
		{"upper case name", "ACCESS_TOKEN=abc", "ACCESS_TOKEN=xxxxx"},
		{"appsecret form", "appid=wx1&appsecret=abc", "appid=wx1&appsecret=xxxxx"},
		{"postgres key=value DSN", "host=db user=app password=hunter2 dbname=x",
			"host=db user=app password=xxxxx dbname=x"},
		{"JSON", `{"access_token":"tok-1","expires_in":7200}`, `{"access_token":"xxxxx","expires_in":7200}`},
		{"JSON with spaces", `{"secret" : "s3"}`, `{"secret" : "xxxxx"}`},
		{"quoted JSON", `answer "{\"access_token\":\"tok-1\",\"expires_in\":7200}"`,
			`answer "{\"access_token\":\"xxxxx\",\"expires_in\":7200}"`},
		{"URL password", "postgres://app:hunter2@db:5432/x", "postgres://app:xxxxx@db:5432/x"},
		{"URL password with @", "redis://:p@ss@h:6379/0", "redis://:xxxxx@h:6379/0"},
		{"cluster URL", "redis-cluster://:pw@h1:6379,h2:6379", "redis-cluster://:xxxxx@h1:6379,h2:6379"},
		{"MySQL DSN", "root:hunter2@tcp(127.0.0.1:3306)/x", "root:xxxxx@tcp(127.0.0.1:3306)/x"},
		{"already masked", "access_token=xxxxx", "access_token=xxxxx"},
		{"no secret", "delivery failed: 45015 response out of time limit", "delivery failed: 45015 response out of time limit"},
		{"URL without password", "https://example.com/a?b=c", "https://example.com/a?b=c"},
		{"port is not a password", "http://127.0.0.1:8080/admin/", "http://127.0.0.1:8080/admin/"},
		{"name must be whole", "mytoken_count=3 tokenizer=x", "mytoken_count=3 tokenizer=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redact.String(tt.in); got != tt.want {
				t.Errorf("String(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// A real transport error names the URL with its query; Error masks the token
// but keeps the error's class.
func TestErrorKeepsChain(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err == nil {
			<-done // never answer: the client times out
			c.Close()
		}
	}()
	defer ln.Close()
	defer close(done)
	client := &http.Client{Timeout: 50 * time.Millisecond}
	_, err = client.Post("http://"+ln.Addr().String()+"/send?access_token=SECRET-TOKEN", "application/json", nil)
	if err == nil || !strings.Contains(err.Error(), "SECRET-TOKEN") {
		t.Fatalf("test set-up: want a transport error naming the token, got %v", err)
	}
	red := fmt.Errorf("wechat: %w", redact.Error(err))
	if strings.Contains(red.Error(), "SECRET-TOKEN") {
		t.Errorf("masked error still holds the token: %v", red)
	}
	if !strings.Contains(red.Error(), "access_token=xxxxx") {
		t.Errorf("masked error %q lost its shape", red)
	}
	var ue *url.Error
	if !errors.As(red, &ue) || !ue.Timeout() {
		t.Errorf("errors.As(*url.Error) with Timeout lost: %v", red)
	}
	if !errors.Is(red, context.DeadlineExceeded) && !os.IsTimeout(redact.Error(err)) {
		t.Errorf("the timeout class is lost: %v", red)
	}

	plain := errors.New("nothing secret")
	if redact.Error(plain) != plain {
		t.Error("Error wrapped an error that needed no masking")
	}
	if redact.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("secret=from-valuer") }

func TestHandler(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			var next slog.Handler = slog.NewTextHandler(&buf, nil)
			if format == "json" {
				next = slog.NewJSONHandler(&buf, nil)
			}
			log := slog.New(redact.NewHandler(next))
			log = log.With("dsn", "postgres://u:with-attrs@h/db").WithGroup("g")
			log.Warn("send to https://x/send?access_token=in-message failed",
				"err", fmt.Errorf("wechat: %w", errors.New(`uri=https://x/send?access_token=in-error , statusCode=502`)),
				"url", "https://x/token?appid=wx&secret=in-string",
				"stringer", stringer{"password=in-stringer"},
				"bytes", []byte(`{"access_token":"in-bytes"}`),
				"map", map[string]string{"u": "redis://:in-map@h:6379"},
				"valuer", valuer{},
				slog.Group("grp", "inner", "access_token=in-group"),
				"count", 3,
				"plain", "ordinary text",
			)
			out := buf.String()
			for _, leak := range []string{"with-attrs", "in-message", "in-error", "in-string", "in-stringer", "in-bytes", "in-map", "from-valuer", "in-group"} {
				if strings.Contains(out, leak) {
					t.Errorf("log line holds %q:\n%s", leak, out)
				}
			}
			for _, keep := range []string{"ordinary text", "statusCode=502", "count", "3"} {
				if !strings.Contains(out, keep) {
					t.Errorf("log line lost %q:\n%s", keep, out)
				}
			}
		})
	}
}

func TestHandlerEnabled(t *testing.T) {
	t.Parallel()
	h := redact.NewHandler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Error("Enabled does not follow the wrapped handler's level")
	}
}
