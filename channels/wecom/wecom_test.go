package wecom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/silenceper/wechat/v2/cache"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/internal/fakewecom"
)

const (
	corpID = "ww0123456789abcdef"
	app    = corpID + "/1000002"
	secret = "s3cret-value-never-shown"
)

type accounts map[string]Account

func (a accounts) Account(_ context.Context, app string) (Account, error) {
	acct, ok := a[app]
	if !ok {
		return Account{}, fmt.Errorf("%w: %s", ErrUnknownAccount, app)
	}
	return acct, nil
}

func newFake(t *testing.T) *fakewecom.Server {
	t.Helper()
	fk := fakewecom.New()
	t.Cleanup(fk.Close)
	fk.AddCorp(corpID, secret)
	return fk
}

func newClient(fk *fakewecom.Server, c cache.Cache, log *slog.Logger, sec string) *Client {
	return New(Config{Accounts: accounts{app: {CorpID: corpID, AgentID: "1000002", Secret: sec}},
		Cache: c, APIBase: fk.URL, Logger: log})
}

func TestTokenCachedAndShared(t *testing.T) {
	fk := newFake(t)
	shared := wechat.NewMemoryCache()
	a, b := newClient(fk, shared, nil, secret), newClient(fk, shared, nil, secret)
	fk.AddContact(fakewecom.Contact{ExternalUserID: "wmX", Name: "小王", UnionID: "uX",
		FollowUsers: []fakewecom.FollowUser{{UserID: "rep1", State: "store_1"}}})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 { // concurrent calls of one client: one fetch
		wg.Go(func() {
			_, err := a.ExternalContact(ctx, app, "wmX")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := fk.Calls(fakewecom.TokenPath); n != 1 {
		t.Errorf("token fetched %d times by 20 concurrent calls, want 1", n)
	}
	got, err := b.ExternalContact(ctx, app, "wmX") // another client (process) on the same cache

	if err != nil {
		t.Fatal(err)
	}
	if n := fk.Calls(fakewecom.TokenPath); n != 1 {
		t.Errorf("token fetched %d times by two clients sharing a cache, want 1", n)
	}
	if got.UnionID != "uX" || got.Name != "小王" || got.Type != 1 || len(got.FollowUsers) != 1 || got.FollowUsers[0].State != "store_1" {
		t.Errorf("contact = %+v", got)
	}
}

func TestRefreshOnceOnExpiredToken(t *testing.T) {
	fk := newFake(t)
	c := newClient(fk, nil, slog.New(slog.DiscardHandler), secret)
	ctx := context.Background()
	if _, _, err := c.AddContactWay(ctx, app, ContactWay{Users: []string{"rep1"}, State: "s1"}); err != nil {
		t.Fatal(err)
	}
	fk.ExpireTokens() // 42001 for the cached token
	if _, _, err := c.AddContactWay(ctx, app, ContactWay{Users: []string{"rep1"}, State: "s2"}); err != nil {
		t.Fatalf("after the token expired: %v", err)
	}
	if n := fk.Calls(fakewecom.TokenPath); n != 2 {
		t.Errorf("token fetches = %d, want 2 (one refresh)", n)
	}
	if n := len(fk.ContactWays()); n != 2 {
		t.Errorf("contact ways created = %d, want 2", n)
	}
}

func TestAddContactWayBody(t *testing.T) {
	fk := newFake(t)
	c := newClient(fk, nil, nil, secret)
	id, qr, err := c.AddContactWay(context.Background(), app, ContactWay{Users: []string{"rep1", "rep2"}, State: "store_9", Remark: "门店9"})
	if err != nil {
		t.Fatal(err)
	}
	ways := fk.ContactWays()
	if len(ways) != 1 {
		t.Fatalf("calls = %d", len(ways))
	}
	w := ways[0]
	if w.ConfigID != id || !strings.HasPrefix(qr, fk.URL) || w.Type != 2 || w.Scene != 2 || w.State != "store_9" ||
		w.Remark != "门店9" || strings.Join(w.Users, ",") != "rep1,rep2" || w.SkipVerify == nil || *w.SkipVerify {
		t.Errorf("call %+v (skip_verify %v), answer %q %q", w, w.SkipVerify, id, qr)
	}
	if _, _, err := c.AddContactWay(context.Background(), app, ContactWay{Users: []string{"r"}, State: strings.Repeat("状", 31)}); !errors.Is(err, channels.ErrPermanent) {
		t.Errorf("31-character state: err = %v, want permanent before any call", err)
	}
	if len(fk.ContactWays()) != 1 {
		t.Error("a refused contact way reached WeCom")
	}
	img, ctype, err := c.Image(context.Background(), qr)
	if err != nil || ctype != "image/png" || !bytes.HasPrefix(img, []byte("\x89PNG")) {
		t.Errorf("image: %d bytes, %q, %v", len(img), ctype, err)
	}
}

func TestErrorsClassifiedAndRedacted(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		setup  func(fk *fakewecom.Server)
		secret string
		call   func(c *Client) error
		class  error
		code   int
	}{
		{"wrong secret", nil, "wrong-" + secret, func(c *Client) error { _, err := c.ExternalContact(ctx, app, "wm1"); return err }, channels.ErrPermanent, 40001},
		{"daily quota", func(fk *fakewecom.Server) { fk.SetError(fakewecom.AddContactWayPath, 45009) }, secret,
			func(c *Client) error {
				_, _, err := c.AddContactWay(ctx, app, ContactWay{Users: []string{"r"}})
				return err
			}, channels.ErrQuota, 45009},
		{"not an external contact", nil, secret, func(c *Client) error { _, err := c.ExternalContact(ctx, app, "wm-unknown"); return err }, channels.ErrUnreachable, 84061},
		{"invalid external userid", func(fk *fakewecom.Server) { fk.SetError(fakewecom.ExternalContactPath, 40096) }, secret,
			func(c *Client) error { _, err := c.ExternalContact(ctx, app, "bad"); return err }, channels.ErrUnreachable, 40096},
		{"busy", func(fk *fakewecom.Server) { fk.SetError(fakewecom.ExternalContactPath, -1) }, secret,
			func(c *Client) error { _, err := c.ExternalContact(ctx, app, "wm1"); return err }, nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fk := newFake(t)
			if tc.setup != nil {
				tc.setup(fk)
			}
			var logs bytes.Buffer
			c := newClient(fk, nil, slog.New(slog.NewTextHandler(&logs, nil)), tc.secret)
			err := tc.call(c)
			var ce *channels.Error
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("err = %v, want code %d", err, tc.code)
			}
			if tc.class != nil && !errors.Is(err, tc.class) {
				t.Errorf("err = %v, want class %v", err, tc.class)
			}
			if tc.class == nil && (errors.Is(err, channels.ErrPermanent) || errors.Is(err, channels.ErrQuota) || errors.Is(err, channels.ErrUnreachable)) {
				t.Errorf("err = %v, want temporary", err)
			}
			if strings.Contains(err.Error()+logs.String(), "ecret-value") {
				t.Errorf("the secret leaked: %v / %s", err, logs.String())
			}
		})
	}

	// A transport failure names the URL, which holds the secret or the token.
	fk := newFake(t)
	c := newClient(fk, nil, nil, secret)
	if _, err := c.ExternalContact(ctx, app, "wm1"); err == nil || !errors.As(err, new(*channels.Error)) {
		t.Fatalf("warm-up: %v", err) // 84061, with a token cached
	}
	tok, _ := c.cache.Get(TokenCacheKey(app)).(string)
	fk.Close()
	for _, call := range []func() error{
		func() error { _, err := c.ExternalContact(ctx, app, "wm1"); return err }, // with the cached token
		func() error { // a fresh client fetches a token: the URL has the secret
			_, err := newClient(fk, nil, nil, secret).ExternalContact(ctx, app, "wm1")
			return err
		},
	} {
		err := call()
		if err == nil {
			t.Fatal("no error from a closed server")
		}
		if strings.Contains(err.Error(), secret) || (tok != "" && strings.Contains(err.Error(), tok)) {
			t.Errorf("error holds a credential: %v", err)
		}
	}
}

func TestSandboxAndUnknownApp(t *testing.T) {
	fk := newFake(t)
	c := newClient(fk, nil, nil, "")
	if _, err := c.ExternalContact(context.Background(), app, "wm1"); !errors.Is(err, ErrSandbox) {
		t.Errorf("no secret: err = %v, want ErrSandbox", err)
	}
	if _, err := c.ExternalContact(context.Background(), "ww1/1", "wm1"); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("unknown app: err = %v", err)
	}
	if n := fk.Calls(fakewecom.TokenPath) + fk.Calls(fakewecom.ExternalContactPath); n != 0 {
		t.Errorf("%d calls reached WeCom", n)
	}
}
