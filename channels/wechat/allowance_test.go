package wechat

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/internal/fakewx"
)

// throttled is a Sender with an allowance and holds in a miniredis, timed by
// a simulated clock, sending to a fake WeChat.
type throttled struct {
	s     *Sender
	fake  *fakewx.Server
	clock *clock.Simulated
	allow *Allowance
	holds *channels.Holds
}

func setupThrottled(t *testing.T) throttled {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	fake := startFake(t, fakewx.Config{})
	clk := clock.NewSimulated(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
	tt := throttled{fake: fake, clock: clk, allow: NewAllowance(rdb, AllowanceConfig{}), holds: channels.NewHolds(rdb)}
	tt.s = NewSender(Config{Accounts: testAccounts, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		APIBase: fake.URL, Allowance: tt.allow, Holds: tt.holds, Clock: clk})
	return tt
}

func (tt throttled) text(openid string) error {
	_, err := tt.s.Send(context.Background(), channels.Message{Channel: channels.WeChatText, To: to(openid), Text: "hi"})
	return err
}

func TestAllowanceAfterFollowSendsThree(t *testing.T) {
	t.Parallel()
	tt := setupThrottled(t)
	ctx := context.Background()
	if err := tt.allow.Open(ctx, appID, "o1", WindowEvent, tt.clock.Now()); err != nil {
		t.Fatal(err)
	}
	// Routing the follow twice opens its window once.
	if err := tt.allow.Open(ctx, appID, "o1", WindowEvent, tt.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := tt.text("o1"); err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
	}
	err := tt.text("o1")
	if !errors.Is(err, channels.ErrUnreachable) {
		t.Fatalf("fourth send: %v, want unreachable", err)
	}
	if n := len(tt.fake.MessagesTo("o1")); n != 3 {
		t.Fatalf("WeChat got %d messages, want 3 (the fourth is never sent)", n)
	}
	// A message from the member opens 5 within 48 hours.
	tt.clock.Advance(2 * time.Minute)
	if err := tt.allow.Open(ctx, appID, "o1", WindowMessage, tt.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := tt.text("o1"); err != nil {
			t.Fatalf("send %d after a message: %v", i+1, err)
		}
	}
	if err := tt.text("o1"); !errors.Is(err, channels.ErrUnreachable) {
		t.Fatalf("sixth send after a message: %v, want unreachable", err)
	}
	// Template messages are not customer-service messages.
	if _, err := tt.s.Send(ctx, channels.Message{Channel: channels.WeChatTemplate, To: to("o1"), TemplateID: "T"}); err != nil {
		t.Fatalf("template: %v", err)
	}
}

func TestAllowanceWindowCloses(t *testing.T) {
	t.Parallel()
	tt := setupThrottled(t)
	ctx := context.Background()
	tt.allow.Open(ctx, appID, "o2", WindowEvent, tt.clock.Now())
	tt.clock.Advance(61 * time.Second)
	if err := tt.text("o2"); !errors.Is(err, channels.ErrUnreachable) {
		t.Fatalf("a minute after the follow: %v, want unreachable", err)
	}
	if n := len(tt.fake.MessagesTo("o2")); n != 0 {
		t.Fatalf("WeChat got %d messages, want none", n)
	}
}

func TestAllowanceRefundsRefusalsAndLearnsFromWeChat(t *testing.T) {
	t.Parallel()
	tt := setupThrottled(t)
	ctx := context.Background()
	tt.allow.Open(ctx, appID, "o3", WindowEvent, tt.clock.Now())
	// -1 (system busy) did not count: the message is given back.
	tt.fake.SetError("o3", -1)
	for range 3 {
		if err := tt.text("o3"); err == nil || errors.Is(err, channels.ErrUnreachable) {
			t.Fatalf("send during -1: %v, want a temporary error", err)
		}
	}
	tt.fake.SetError("o3", 0)
	for i := range 3 {
		if err := tt.text("o3"); err != nil {
			t.Fatalf("send %d after -1: %v", i+1, err)
		}
	}
	// An unknown member is attempted; WeChat's 45015 closes the allowance.
	tt.fake.SetError("o4", 45015)
	if err := tt.text("o4"); !errors.Is(err, channels.ErrUnreachable) {
		t.Fatalf("unknown member: %v, want unreachable (45015)", err)
	}
	tt.fake.SetError("o4", 0)
	if err := tt.text("o4"); !errors.Is(err, channels.ErrUnreachable) {
		t.Fatalf("after 45015: %v, want unreachable without a call", err)
	}
	if n := len(tt.fake.MessagesTo("o4")); n != 0 {
		t.Fatalf("WeChat got %d messages for o4, want none", n)
	}
	// Until the member interacts again.
	tt.clock.Advance(time.Second)
	tt.allow.Open(ctx, appID, "o4", WindowMessage, tt.clock.Now())
	if err := tt.text("o4"); err != nil {
		t.Fatalf("after a message: %v", err)
	}
}

func TestDailyQuotaHoldsWithoutCalling(t *testing.T) {
	t.Parallel()
	tt := setupThrottled(t)
	ctx := context.Background()
	tt.fake.SetError("o5", 45009)
	err := tt.text("o5")
	var cerr *channels.Error
	if !errors.As(err, &cerr) || !errors.Is(err, channels.ErrQuota) || cerr.Code != 45009 {
		t.Fatalf("45009: %v, want a quota error", err)
	}
	// 10:00 UTC is 18:00 in Beijing: the quota resets in 6 hours.
	if cerr.RetryAfter != 6*time.Hour {
		t.Fatalf("RetryAfter %v, want 6h (midnight Beijing time)", cerr.RetryAfter)
	}
	tt.fake.SetError("o5", 0)
	before := len(tt.fake.Messages())
	err = tt.text("o6")
	if !errors.As(err, &cerr) || cerr.Code != 45009 || cerr.RetryAfter != 6*time.Hour {
		t.Fatalf("another member's send while held: %v, want held", err)
	}
	if len(tt.fake.Messages()) != before {
		t.Fatal("WeChat was called while the quota was held")
	}
	holds, err := tt.holds.List(ctx, tt.clock.Now())
	if err != nil || len(holds) != 1 || holds[0].Key != "wechat:"+appID+":custom" {
		t.Fatalf("holds %+v, %v: want the custom API of %s", holds, err, appID)
	}
	// Template messages have their own quota.
	if _, err := tt.s.Send(ctx, channels.Message{Channel: channels.WeChatTemplate, To: to("o6"), TemplateID: "T"}); err != nil {
		t.Fatalf("template while custom is held: %v", err)
	}
	tt.clock.Advance(6 * time.Hour)
	if err := tt.text("o6"); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
}
