package wechat

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Left reads what Open allowed and Spend took, without spending.
func TestAllowanceLeft(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	a := NewAllowance(rdb, AllowanceConfig{})
	ctx, at := t.Context(), time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	if l, err := a.Left(ctx, "wx1", "o1", at); err != nil || l.Known {
		t.Fatalf("a member never seen: %+v, %v; want unknown", l, err)
	}
	if err := a.Open(ctx, "wx1", "o1", WindowMessage, at); err != nil {
		t.Fatal(err)
	}
	if err := a.Open(ctx, "wx1", "o1", WindowEvent, at); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Spend(ctx, "wx1", "o1", at.Add(time.Second)); !ok || err != nil {
		t.Fatalf("Spend: %v %v", ok, err)
	}
	for _, tc := range []struct {
		at    time.Time
		n     int
		until time.Time
	}{
		{at.Add(2 * time.Second), 7, at.Add(48 * time.Hour)}, // 2 of 3 after the follow, 5 after the message
		{at.Add(2 * time.Minute), 5, at.Add(48 * time.Hour)}, // the follow's minute is over
		{at.Add(49 * time.Hour), 0, time.Time{}},
	} {
		l, err := a.Left(ctx, "wx1", "o1", tc.at)
		if err != nil || !l.Known || l.Messages != tc.n || !l.Until.Equal(tc.until) {
			t.Errorf("at %s: %+v, %v; want %d until %s", tc.at, l, err, tc.n, tc.until)
		}
	}
}
