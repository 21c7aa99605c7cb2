package channels

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLocalLimiterSpendsThenRefuses(t *testing.T) {
	t.Parallel()
	l := NewLocalLimiter()
	ctx := context.Background()
	perHour := Rate{N: 5, Per: time.Hour} // the per-phone SMS default
	for i := range 5 {
		if err := l.Take(ctx, "sms:phone:13800000000", perHour); err != nil {
			t.Fatalf("send %d of 5 refused: %v", i+1, err)
		}
	}
	err := l.Take(ctx, "sms:phone:13800000000", perHour)
	var ce *Error
	if !errors.As(err, &ce) || ce.Class != ErrQuota {
		t.Fatalf("sixth SMS within the hour: got %v, want ErrQuota", err)
	}
	if ce.RetryAfter < 11*time.Minute || ce.RetryAfter > 12*time.Minute {
		t.Errorf("RetryAfter %s, want the next slot in about 12 min", ce.RetryAfter)
	}
	if err := l.Take(ctx, "sms:phone:13900000000", perHour); err != nil {
		t.Errorf("another phone shares the first one's limit: %v", err)
	}
}

func TestLocalLimiterWaitsForANearSlot(t *testing.T) {
	t.Parallel()
	l := NewLocalLimiter()
	ctx := context.Background()
	fast := Rate{N: 20, Per: time.Second}
	start := time.Now()
	for i := range 21 {
		if err := l.Take(ctx, "wechat:wx1:custom", fast); err != nil {
			t.Fatalf("call %d refused though a slot was 50 ms away: %v", i+1, err)
		}
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("21 calls at 20/s took %s: the 21st did not wait for its slot", d)
	}
}
