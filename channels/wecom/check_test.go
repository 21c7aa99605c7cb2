package wecom

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/internal/fakewecom"
)

// CheckCredentials asks gettoken every time, past the cache: a cached
// token does not hide a secret changed since.
func TestCheckCredentials(t *testing.T) {
	fk := newFake(t)
	quiet := slog.New(slog.DiscardHandler)
	good := newClient(fk, wechat.NewMemoryCache(), quiet, secret)
	for i := 0; i < 2; i++ {
		if err := good.CheckCredentials(context.Background(), app); err != nil {
			t.Fatalf("right secret: %v", err)
		}
	}
	if n := fk.Calls(fakewecom.TokenPath); n != 2 {
		t.Errorf("two checks asked gettoken %d times, want 2", n)
	}
	bad := newClient(fk, wechat.NewMemoryCache(), quiet, "wrong-secret")
	err := bad.CheckCredentials(context.Background(), app)
	var ce *channels.Error
	if !errors.As(err, &ce) || ce.Code != 40001 {
		t.Fatalf("wrong secret: %v, want errcode 40001", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("the error shows the secret: %v", err)
	}
	if err := newClient(fk, nil, quiet, "").CheckCredentials(context.Background(), app); !errors.Is(err, ErrSandbox) {
		t.Errorf("no secret: %v, want ErrSandbox", err)
	}
}
