package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/cache"
	"github.com/sirupsen/logrus"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/fakewx"
)

const appID = "wxtest0001"

// accounts is a static Accounts.
type accounts map[string]Account

func (a accounts) Account(_ context.Context, appid string) (Account, error) {
	acct, ok := a[appid]
	if !ok {
		return Account{}, fmt.Errorf("appid %q: %w", appid, ErrUnknownAccount)
	}
	return acct, nil
}

var testAccounts = accounts{
	appID:        {AppID: appID, AppSecret: "secret"},
	"wxsandbox":  {AppID: "wxsandbox"},
	"wxwrongkey": {AppID: "wxwrongkey", AppSecret: "wrong"},
	"wxnotatwx":  {AppID: "wxnotatwx", AppSecret: "secret"},
}

// startFake starts a fake WeChat for this test; a Sender reaches it with
// newSender(t, fake.URL, …).
func startFake(t *testing.T, cfg fakewx.Config) *fakewx.Server {
	t.Helper()
	fake := fakewx.New(cfg)
	t.Cleanup(fake.Close)
	return fake
}

// noHTTP starts a server that fails the test on any request and returns its
// URL, for Config.APIBase, and its request count.
func noHTTP(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		t.Errorf("unexpected HTTP call %s %s", r.Method, r.URL)
		http.Error(w, "no", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &hits
}

// newSender returns a Sender of testAccounts calling the API at base, and
// its log.
func newSender(t *testing.T, base string, c cache.Cache) (*Sender, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	return NewSender(Config{
		Accounts: testAccounts,
		Cache:    c,
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		APIBase:  base,
	}), &logs
}

func to(openid string) channels.Recipient {
	return channels.Recipient{MemberID: 7, AppID: appID, OpenID: openid}
}

var ignoreVolatile = cmpopts.IgnoreFields(fakewx.Message{}, "At", "Raw")

func TestSendArrives(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		msg    channels.Message
		want   fakewx.Message
		wantID string
		// wantRaw are JSON fragments the body must contain.
		wantRaw []string
	}{
		{
			name: "text",
			msg:  channels.Message{Channel: channels.WeChatText, To: to("o-text"), Text: "你好 <a href=\"https://x/?a=1&b=2\">x</a>"},
			want: fakewx.Message{Kind: "custom", AppID: appID, ToUser: "o-text", MsgType: "text",
				Text: "你好 <a href=\"https://x/?a=1&b=2\">x</a>"},
		},
		{
			name: "news",
			msg: channels.Message{Channel: channels.WeChatNews, To: to("o-news"), URL: "https://example.com/a",
				Extra: map[string]string{"title": "T", "description": "D", "picurl": "https://example.com/p.png"}},
			want:    fakewx.Message{Kind: "custom", AppID: appID, ToUser: "o-news", MsgType: "news", URL: "https://example.com/a"},
			wantRaw: []string{`"articles":[{"title":"T","description":"D","url":"https://example.com/a","picurl":"https://example.com/p.png"}]`},
		},
		{
			name:    "image",
			msg:     channels.Message{Channel: channels.WeChatImage, To: to("o-img"), Extra: map[string]string{"media_id": "M1"}},
			want:    fakewx.Message{Kind: "custom", AppID: appID, ToUser: "o-img", MsgType: "image"},
			wantRaw: []string{`"image":{"media_id":"M1"}`},
		},
		{
			name: "miniprogram page",
			msg: channels.Message{Channel: channels.WeChatMiniprogramPage, To: to("o-mp"),
				Extra: map[string]string{"appid": "wxmini", "pagepath": "pages/a?x=1", "title": "Go", "thumb_media_id": "TH"}},
			want:    fakewx.Message{Kind: "custom", AppID: appID, ToUser: "o-mp", MsgType: "miniprogrampage"},
			wantRaw: []string{`"miniprogrampage":{"title":"Go","appid":"wxmini","pagepath":"pages/a?x=1","thumb_media_id":"TH"}`},
		},
		{
			name: "template",
			msg: channels.Message{Channel: channels.WeChatTemplate, To: to("o-tpl"), IdempotencyKey: "delivery-42",
				TemplateID: "TPL1", URL: "https://example.com/t", Data: map[string]string{"first": "Hi", "keyword1": "42"},
				Extra: map[string]string{"miniprogram_appid": "wxmini", "miniprogram_pagepath": "pages/b"}},
			want: fakewx.Message{Kind: "template", AppID: appID, ToUser: "o-tpl", MsgType: "template", TemplateID: "TPL1",
				URL: "https://example.com/t", Data: map[string]string{"first": "Hi", "keyword1": "42"}, ClientMsgID: "delivery-42"},
			wantID:  "1",
			wantRaw: []string{`"miniprogram":{"appid":"wxmini","pagepath":"pages/b"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, fakewx.Config{})
			s, _ := newSender(t, fake.URL, nil)
			res, err := s.Send(context.Background(), tt.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if diff := cmp.Diff(channels.Result{ProviderID: tt.wantID}, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			got := fake.Messages()
			if diff := cmp.Diff([]fakewx.Message{tt.want}, got, ignoreVolatile); diff != "" {
				t.Fatalf("messages at the fake (-want +got):\n%s", diff)
			}
			for _, frag := range tt.wantRaw {
				if !bytes.Contains(got[0].Raw, []byte(frag)) {
					t.Errorf("body %s\nlacks %s", got[0].Raw, frag)
				}
			}
		})
	}
}

func TestTemplateClientMsgIDDedupe(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	s, _ := newSender(t, fake.URL, nil)
	msg := channels.Message{Channel: channels.WeChatTemplate, To: to("o1"), IdempotencyKey: "d-1",
		TemplateID: "TPL", Data: map[string]string{"k": "v"}}
	var ids []string
	for range 2 { // the engine retrying a delivery whose answer it lost
		res, err := s.Send(context.Background(), msg)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		ids = append(ids, res.ProviderID)
	}
	msg.IdempotencyKey = "d-2"
	res, err := s.Send(context.Background(), msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	ids = append(ids, res.ProviderID)

	if diff := cmp.Diff([]string{"1", "1", "2"}, ids); diff != "" {
		t.Errorf("ProviderIDs (-want +got):\n%s", diff)
	}
	var keys []string
	for _, m := range fake.MessagesTo("o1") {
		keys = append(keys, m.ClientMsgID)
	}
	if diff := cmp.Diff([]string{"d-1", "d-2"}, keys); diff != "" {
		t.Errorf("client_msg_ids accepted (-want +got):\n%s", diff)
	}
}

func TestSendErrorClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		channel string
		errcode int
		want    error // class; nil: temporary
	}{
		{"outside window", channels.WeChatText, 45015, channels.ErrUnreachable},
		{"unfollowed", channels.WeChatNews, 43004, channels.ErrUnreachable},
		{"not subscribed", channels.WeChatTemplate, 43101, channels.ErrUnreachable},
		{"daily quota", channels.WeChatText, 45009, channels.ErrQuota},
		{"cs message limit", channels.WeChatImage, 45047, channels.ErrUnreachable},
		{"frequency", channels.WeChatTemplate, 45011, channels.ErrQuota},
		{"bad template", channels.WeChatTemplate, 40037, channels.ErrPermanent},
		{"unauthorized", channels.WeChatText, 48001, channels.ErrPermanent},
		{"system busy", channels.WeChatText, -1, nil},
		{"unknown code", channels.WeChatTemplate, 99999, nil},
	}
	sentinels := []error{channels.ErrUnreachable, channels.ErrQuota, channels.ErrPermanent}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, fakewx.Config{})
			fake.SetError("o1", tt.errcode)
			s, _ := newSender(t, fake.URL, nil)
			msg := channels.Message{Channel: tt.channel, To: to("o1"), Text: "x", TemplateID: "TPL",
				Extra: map[string]string{"title": "t", "media_id": "m"}}
			_, err := s.Send(context.Background(), msg)
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			for _, sentinel := range sentinels {
				if got, want := errors.Is(err, sentinel), sentinel == tt.want; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, want)
				}
			}
			var we *channels.Error
			if !errors.As(err, &we) || we.Code != tt.errcode {
				t.Errorf("error %v: want a *channels.Error with code %d", err, tt.errcode)
			}
			if n := len(fake.Messages()); n != 0 {
				t.Errorf("%d messages accepted, want 0", n)
			}
			if n := fake.TokenFetches(); n != 1 {
				t.Errorf("TokenFetches() = %d, want 1 (no refresh for errcode %d)", n, tt.errcode)
			}
		})
	}
}

func TestExpiredTokenRefreshedOnce(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	s, logs := newSender(t, fake.URL, nil)
	ctx := context.Background()
	send := func(text string) error {
		_, err := s.Send(ctx, channels.Message{Channel: channels.WeChatText, To: to("o1"), Text: text})
		return err
	}
	if err := send("before"); err != nil {
		t.Fatalf("first send: %v", err)
	}
	fake.ExpireTokens() // WeChat now answers 40001 to the cached token
	if err := send("after"); err != nil {
		t.Fatalf("send with an expired token: %v", err)
	}
	var texts []string
	for _, m := range fake.Messages() {
		texts = append(texts, m.Text)
	}
	if diff := cmp.Diff([]string{"before", "after"}, texts); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if got := fake.TokenFetches(); got != 2 {
		t.Errorf("TokenFetches() = %d, want 2", got)
	}
	if !strings.Contains(logs.String(), "access token rejected") {
		t.Errorf("logs lack the refresh:\n%s", logs)
	}

	// A token WeChat keeps rejecting: one refresh, then the error, classified.
	fake.SetError("o1", 40001)
	err := send("never")
	var we *channels.Error
	if !errors.As(err, &we) || we.Code != 40001 || we.Class != nil {
		t.Errorf("persistent 40001: err = %v, want a temporary *channels.Error with code 40001", err)
	}
	if got := fake.TokenFetches(); got != 3 {
		t.Errorf("TokenFetches() after persistent 40001 = %d, want 3 (exactly one refresh)", got)
	}
	if n := len(fake.Messages()); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

func TestSandboxMakesNoHTTPCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  channels.Message
		want []string // in the log line
	}{
		{
			name: "text",
			msg:  channels.Message{Channel: channels.WeChatText, To: channels.Recipient{AppID: "wxsandbox", OpenID: "o1"}, Text: "hello there"},
			want: []string{"channel=wechat.text", "appid=wxsandbox", "openid=o1", `text="hello there"`},
		},
		{
			name: "template",
			msg: channels.Message{Channel: channels.WeChatTemplate, To: channels.Recipient{AppID: "wxsandbox", OpenID: "o2"},
				TemplateID: "TPL9", Data: map[string]string{"k": "v"}},
			want: []string{"channel=wechat.template", "appid=wxsandbox", "openid=o2", "template_id=TPL9", "data=map[k:v]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base, hits := noHTTP(t)
			s, logs := newSender(t, base, nil)
			res, err := s.Send(context.Background(), tt.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if diff := cmp.Diff(channels.Result{Sandbox: true}, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			line := logs.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, `level=INFO msg="wechat sandbox: would send"`) {
				t.Errorf("log = %q, want one Info line %q", line, "wechat sandbox: would send")
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("log %q lacks %q", line, w)
				}
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("%d HTTP calls, want 0", n)
			}
		})
	}
}

// errAccounts fails every lookup with err.
type errAccounts struct{ err error }

func (e errAccounts) Account(context.Context, string) (Account, error) { return Account{}, e.err }

func TestLocalErrors(t *testing.T) {
	t.Parallel()
	dbDown := errors.New("db down")
	tests := []struct {
		name     string
		accounts Accounts
		msg      channels.Message
		want     error   // class; nil: temporary
		alsoIs   []error // further errors.Is matches
	}{
		{"unknown channel", testAccounts, channels.Message{Channel: channels.SMS, To: to("o1"), Text: "x"}, channels.ErrPermanent, nil},
		{"subscribe message not handled here", testAccounts, channels.Message{Channel: channels.WeChatSubscribe, To: to("o1")}, channels.ErrPermanent, nil},
		{"no openid", testAccounts, channels.Message{Channel: channels.WeChatText, To: channels.Recipient{AppID: appID}, Text: "x"}, channels.ErrUnreachable, nil},
		{"no appid", testAccounts, channels.Message{Channel: channels.WeChatTemplate, To: channels.Recipient{OpenID: "o1"}, TemplateID: "T"}, channels.ErrUnreachable, nil},
		{"unknown account", testAccounts, channels.Message{Channel: channels.WeChatText, To: channels.Recipient{AppID: "wxnobody", OpenID: "o1"}, Text: "x"}, channels.ErrPermanent, []error{ErrUnknownAccount}},
		{"accounts failing", errAccounts{dbDown}, channels.Message{Channel: channels.WeChatText, To: to("o1"), Text: "x"}, nil, []error{dbDown}},
		{"empty text", testAccounts, channels.Message{Channel: channels.WeChatText, To: to("o1")}, channels.ErrPermanent, nil},
		{"image without media_id", testAccounts, channels.Message{Channel: channels.WeChatImage, To: to("o1")}, channels.ErrPermanent, nil},
		{"news without title or url", testAccounts, channels.Message{Channel: channels.WeChatNews, To: to("o1")}, channels.ErrPermanent, nil},
		{"miniprogram without pagepath", testAccounts, channels.Message{Channel: channels.WeChatMiniprogramPage, To: to("o1"),
			Extra: map[string]string{"appid": "wxmini", "thumb_media_id": "T"}}, channels.ErrPermanent, nil},
		{"template without id", testAccounts, channels.Message{Channel: channels.WeChatTemplate, To: to("o1")}, channels.ErrPermanent, nil},
	}
	sentinels := []error{channels.ErrUnreachable, channels.ErrQuota, channels.ErrPermanent}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base, _ := noHTTP(t)
			s := NewSender(Config{Accounts: tt.accounts, Logger: slog.New(slog.DiscardHandler), APIBase: base})
			_, err := s.Send(context.Background(), tt.msg)
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			for _, sentinel := range sentinels {
				if got, want := errors.Is(err, sentinel), sentinel == tt.want; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, want)
				}
			}
			for _, also := range tt.alsoIs {
				if !errors.Is(err, also) {
					t.Errorf("errors.Is(%v, %v) = false", err, also)
				}
			}
		})
	}
}

func TestTransportAndTokenErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T) string // the API base
		appid string
		want  error // class; nil: temporary
		code  int   // *channels.Error code wanted; 0: none
	}{
		{
			name: "wrong secret",
			setup: func(t *testing.T) string {
				return startFake(t, fakewx.Config{Secrets: map[string]string{"wxwrongkey": "right"}}).URL
			},
			appid: "wxwrongkey", want: channels.ErrPermanent, code: 40125,
		},
		{
			name:  "appid unknown to WeChat",
			setup: func(t *testing.T) string { return startFake(t, fakewx.Config{Secrets: map[string]string{}}).URL },
			appid: "wxnotatwx", want: channels.ErrPermanent, code: 40013,
		},
		{
			name: "HTTP 502",
			setup: func(t *testing.T) string {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "bad gateway", http.StatusBadGateway)
				}))
				t.Cleanup(srv.Close)
				return srv.URL
			},
			appid: appID,
		},
		{
			name: "connection refused",
			setup: func(t *testing.T) string {
				srv := httptest.NewServer(http.NotFoundHandler())
				srv.Close()
				return srv.URL
			},
			appid: appID,
		},
		{
			name: "not JSON",
			setup: func(t *testing.T) string {
				fake := startFake(t, fakewx.Config{})
				// Tokens from the fake, sends to a server answering HTML.
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.Contains(r.URL.Path, "token") {
						resp, err := http.Post(fake.URL+r.URL.Path, "application/json", r.Body)
						if err != nil {
							t.Error(err)
							return
						}
						defer resp.Body.Close()
						_, _ = io.Copy(w, resp.Body)
						return
					}
					_, _ = io.WriteString(w, "<html>maintenance</html>")
				}))
				t.Cleanup(srv.Close)
				return srv.URL
			},
			appid: appID,
		},
	}
	sentinels := []error{channels.ErrUnreachable, channels.ErrQuota, channels.ErrPermanent}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newSender(t, tt.setup(t), nil)
			_, err := s.Send(context.Background(), channels.Message{Channel: channels.WeChatText,
				To: channels.Recipient{AppID: tt.appid, OpenID: "o1"}, Text: "x"})
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			for _, sentinel := range sentinels {
				if got, want := errors.Is(err, sentinel), sentinel == tt.want; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, want)
				}
			}
			var we *channels.Error
			if got := errors.As(err, &we); got != (tt.code != 0) || (got && we.Code != tt.code) {
				t.Errorf("error %v: want *channels.Error with code %d", err, tt.code)
			}
		})
	}
}

func TestContextCancelled(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	s, _ := newSender(t, fake.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Send(ctx, channels.Message{Channel: channels.WeChatText, To: to("o1"), Text: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestConcurrentSendsShareOneToken(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	s, _ := newSender(t, fake.URL, nil)
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Send(context.Background(), channels.Message{Channel: channels.WeChatText,
				To: to(fmt.Sprintf("o%d", i)), Text: "x"})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := len(fake.Messages()); got != n {
		t.Errorf("%d messages, want %d", got, n)
	}
	if got := fake.TokenFetches(); got != 1 {
		t.Errorf("TokenFetches() = %d, want 1", got)
	}
}

func TestRedisSharedToken(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })

	// Two "processes": separate Senders, one Redis.
	a, _ := newSender(t, fake.URL, NewRedisCache(client))
	b, _ := newSender(t, fake.URL, NewRedisCache(client))
	send := func(s *Sender, text string) {
		t.Helper()
		if _, err := s.Send(context.Background(), channels.Message{Channel: channels.WeChatText, To: to("o1"), Text: text}); err != nil {
			t.Fatalf("Send %q: %v", text, err)
		}
	}
	send(a, "a1")
	send(b, "b1")
	if got := fake.TokenFetches(); got != 1 {
		t.Errorf("TokenFetches() = %d, want 1 shared token", got)
	}
	key := TokenCacheKey(appID)
	if !mr.Exists(key) {
		t.Fatalf("Redis keys %v lack %q: TokenCacheKey is not where the token is kept", mr.Keys(), key)
	}
	if ttl := mr.TTL(key); ttl <= 0 || ttl > 7200*time.Second {
		t.Errorf("token TTL = %v, want within (0, 7200s]", ttl)
	}

	fake.ExpireTokens()
	send(b, "b2") // refreshes and stores the new token in Redis
	send(a, "a2") // picks the new token from Redis
	if got := fake.TokenFetches(); got != 2 {
		t.Errorf("TokenFetches() after expiry = %d, want 2", got)
	}
	if got := len(fake.Messages()); got != 4 {
		t.Errorf("%d messages, want 4", got)
	}
}

func TestRedisCache(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	// No retries, so the "Redis down" checks fail fast.
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	c := NewRedisCache(client)

	type state struct {
		Get     any
		IsExist bool
	}
	tests := []struct {
		name string
		do   func(t *testing.T)
		key  string
		want state
	}{
		{"missing", func(*testing.T) {}, "k0", state{nil, false}},
		{"set with ttl", func(t *testing.T) { must(t, c.Set("k1", "tok", time.Minute)) }, "k1", state{"tok", true}},
		{"before ttl", func(*testing.T) { mr.FastForward(59 * time.Second) }, "k1", state{"tok", true}},
		{"after ttl", func(*testing.T) { mr.FastForward(2 * time.Second) }, "k1", state{nil, false}},
		{"no expiry", func(t *testing.T) { must(t, c.Set("k2", "v", 0)); mr.FastForward(time.Hour) }, "k2", state{"v", true}},
		{"delete", func(t *testing.T) { must(t, c.Delete("k2")) }, "k2", state{nil, false}},
		{"delete missing", func(t *testing.T) { must(t, c.Delete("k2")) }, "k2", state{nil, false}},
		{"negative ttl deletes", func(t *testing.T) {
			must(t, c.Set("k3", "v", time.Minute))
			must(t, c.Set("k3", "v2", -time.Second))
		}, "k3", state{nil, false}},
		{"non-string value comes back as string", func(t *testing.T) { must(t, c.Set("k4", 42, time.Minute)) }, "k4", state{"42", true}},
		{"context variants", func(t *testing.T) {
			must(t, c.SetContext(context.Background(), "k5", "v5", time.Minute))
		}, "k5", state{"v5", true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.do(t)
			got := state{c.Get(tt.key), c.IsExist(tt.key)}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("state of %q (-want +got):\n%s", tt.key, diff)
			}
			gotCtx := state{c.GetContext(context.Background(), tt.key), c.IsExistContext(context.Background(), tt.key)}
			if diff := cmp.Diff(tt.want, gotCtx); diff != "" {
				t.Errorf("context state of %q (-want +got):\n%s", tt.key, diff)
			}
		})
	}

	// Redis down: misses and errors, never panics.
	mr.Close()
	if got := c.Get("k1"); got != nil {
		t.Errorf("Get with Redis down = %v, want nil", got)
	}
	if c.IsExist("k1") {
		t.Error("IsExist with Redis down = true")
	}
	if err := c.Set("k1", "v", time.Minute); err == nil {
		t.Error("Set with Redis down: nil error")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code  int
		want  error // class; nil: temporary
		isNil bool  // Classify returns nil
		after time.Duration
	}{
		{code: 0, isNil: true},
		{code: 45009, want: channels.ErrQuota, after: time.Hour}, // the sender holds until the reset
		{code: 45047, want: channels.ErrUnreachable},
		{code: 45011, want: channels.ErrQuota, after: time.Minute},
		{code: 43004, want: channels.ErrUnreachable},
		{code: 43101, want: channels.ErrUnreachable},
		{code: 45015, want: channels.ErrUnreachable},
		{code: 40003, want: channels.ErrUnreachable},
		{code: 40037, want: channels.ErrPermanent},
		{code: 40013, want: channels.ErrPermanent},
		{code: 40125, want: channels.ErrPermanent},
		{code: 41004, want: channels.ErrPermanent},
		{code: 48001, want: channels.ErrPermanent},
		{code: 47001, want: channels.ErrPermanent},
		{code: 44002, want: channels.ErrPermanent},
		{code: 40008, want: channels.ErrPermanent},
		{code: 40001}, // token: refreshed by Send, temporary when it persists
		{code: 42001},
		{code: -1}, // system busy
		{code: 45028},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			err := Classify(tt.code, "msg")
			if tt.isNil {
				if err != nil {
					t.Fatalf("Classify(%d) = %v, want nil", tt.code, err)
				}
				return
			}
			var got *channels.Error
			if !errors.As(err, &got) {
				t.Fatalf("Classify(%d) = %T %v, want a *channels.Error", tt.code, err, err)
			}
			want := channels.Error{Class: tt.want, Code: tt.code, Msg: "msg", RetryAfter: tt.after}
			if diff := cmp.Diff(want, *got, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("Classify(%d) (-want +got):\n%s", tt.code, diff)
			}
		})
	}
}

// Each Sender calls its own APIBase with its own HTTPClient; the default is
// WeChat's API.
func TestAPIBase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, base string
		want       []string // URLs called, access tokens cut off
	}{
		{"fake", "http://127.0.0.1:1234", []string{
			"http://127.0.0.1:1234/cgi-bin/stable_token", "http://127.0.0.1:1234/cgi-bin/message/custom/send"}},
		{"trailing slash", "http://127.0.0.1:1234/", []string{
			"http://127.0.0.1:1234/cgi-bin/stable_token", "http://127.0.0.1:1234/cgi-bin/message/custom/send"}},
		{"gateway path", "https://egress.internal/wx", []string{
			"https://egress.internal/wx/cgi-bin/stable_token", "https://egress.internal/wx/cgi-bin/message/custom/send"}},
		{"default", "", []string{
			DefaultAPIBase + "/cgi-bin/stable_token", DefaultAPIBase + "/cgi-bin/message/custom/send"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got []string
			client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				got = append(got, strings.SplitN(r.URL.String(), "?", 2)[0])
				mu.Unlock()
				answer := `{"errcode":0}`
				if strings.HasSuffix(r.URL.Path, "/stable_token") {
					answer = `{"access_token":"tok","expires_in":7200}`
				}
				return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(answer)), Request: r}, nil
			})}
			s := NewSender(Config{Accounts: testAccounts, Logger: slog.New(slog.DiscardHandler), APIBase: tt.base, HTTPClient: client})
			if _, err := s.Send(context.Background(), channels.Message{Channel: channels.WeChatText, To: to("o1"), Text: "x"}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("URLs called (-want +got):\n%s", diff)
			}
		})
	}
}

// Two Senders in one process, each with its own API: every message reaches
// its own Sender's server, each server hands out its own token, concurrently.
func TestSendersWithOwnAPIs(t *testing.T) {
	t.Parallel()
	fakeA := startFake(t, fakewx.Config{})
	fakeB := startFake(t, fakewx.Config{})
	a, _ := newSender(t, fakeA.URL, nil)
	b, _ := newSender(t, fakeB.URL, nil)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		for name, s := range map[string]*Sender{"a": a, "b": b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := channels.Message{Channel: channels.WeChatText, To: to(fmt.Sprintf("%s-%d", name, i)), Text: name}
				if _, err := s.Send(context.Background(), msg); err != nil {
					t.Errorf("Sender %s: %v", name, err)
				}
			}()
		}
	}
	wg.Wait()
	for name, fake := range map[string]*fakewx.Server{"a": fakeA, "b": fakeB} {
		msgs := fake.Messages()
		if len(msgs) != n {
			t.Errorf("fake %s got %d messages, want %d", name, len(msgs), n)
		}
		for _, m := range msgs {
			if m.Text != name || !strings.HasPrefix(m.ToUser, name+"-") {
				t.Errorf("fake %s got %q to %s, sent by the other Sender", name, m.Text, m.ToUser)
			}
		}
		if got := fake.TokenFetches(); got != 1 {
			t.Errorf("fake %s: TokenFetches() = %d, want 1", name, got)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSilenceSDK changes logrus's global logger, so it does not run in
// parallel with other tests.
func TestSilenceSDK(t *testing.T) {
	old := logrus.StandardLogger().Out
	t.Cleanup(func() { logrus.SetOutput(old) })
	for range 2 { // idempotent
		SilenceSDK()
		if got := logrus.StandardLogger().Out; got != io.Discard {
			t.Errorf("logrus output = %T, want io.Discard", got)
		}
	}
}

func TestSendAnswerDecoding(t *testing.T) {
	t.Parallel()
	// The errcode travels in util.CommonError, embedded in our answer struct.
	var a sendAnswer
	must(t, json.Unmarshal([]byte(`{"errcode":45015,"errmsg":"out of time","msgid":9}`), &a))
	if a.ErrCode != 45015 || a.ErrMsg != "out of time" || a.MsgID != 9 {
		t.Errorf("decoded %+v", a)
	}
}

// BenchmarkSend measures Sender + loopback HTTP + fakewx.
func BenchmarkSend(b *testing.B) {
	fake := fakewx.New(fakewx.Config{})
	defer fake.Close()
	s := NewSender(Config{Accounts: testAccounts, Logger: slog.New(slog.DiscardHandler), APIBase: fake.URL})
	msg := channels.Message{Channel: channels.WeChatText, To: to("o1"), Text: "hello"}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Send(context.Background(), msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
