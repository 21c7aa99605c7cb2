package clock

import (
	"testing"
	"time"
)

func TestSimulatedMovesOnlyWhenTold(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	c := NewSimulated(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	c.Advance(time.Hour)
	if got := c.Now(); !got.Equal(start.Add(time.Hour)) {
		t.Fatalf("after Advance(1h) Now = %v", got)
	}
	c.Set(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("after Set Now = %v", got)
	}
	if d := time.Since(Real().Now()); d < 0 || d > time.Second {
		t.Fatalf("Real is %v off the wall clock", d)
	}
}
