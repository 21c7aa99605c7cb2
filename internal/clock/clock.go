// Package clock is the time source of the engine, the sweeper and the
// ingestor. Production uses Real; tests use a Simulated clock and move it
// forward instead of sleeping (the shape of asynq's internal/timeutil).
package clock

import (
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
}

// Real returns the wall clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Simulated is a clock that moves only when told to. It is safe for
// concurrent use.
type Simulated struct {
	mu sync.Mutex
	t  time.Time
}

// NewSimulated returns a clock stopped at t.
func NewSimulated(t time.Time) *Simulated { return &Simulated{t: t} }

// Now returns the clock's time.
func (s *Simulated) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t
}

// Advance moves the clock forward by d.
func (s *Simulated) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t = s.t.Add(d)
}

// Set moves the clock to t.
func (s *Simulated) Set(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t = t
}
