package channels

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// LocalLimiter is a Limiter kept in this process's memory
// (golang.org/x/time/rate): for the embedded default, whose in-process Redis
// no other process shares, it spares a Lua script per send. Several
// processes on one Redis use RedisLimiter.
type LocalLimiter struct {
	// MaxWait is how long Take waits for a call slot before giving up
	// with ErrQuota. Zero: 2 s.
	MaxWait time.Duration

	mu   sync.Mutex
	lims map[localKey]*rate.Limiter
}

type localKey struct {
	key string
	r   Rate
}

// maxLocalKeys is how many keys (per-phone limits are one a phone) the
// limiter holds before it forgets the idle ones.
const maxLocalKeys = 100000

// forgetIdle drops the limiters whose allowance is whole again: forgetting
// them changes nothing. Called with l.mu held.
func (l *LocalLimiter) forgetIdle() {
	now := time.Now()
	for k, lim := range l.lims {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.lims, k)
		}
	}
}

// NewLocalLimiter returns an empty in-process limiter.
func NewLocalLimiter() *LocalLimiter { return &LocalLimiter{lims: map[localKey]*rate.Limiter{}} }

// Take implements Limiter.
func (l *LocalLimiter) Take(ctx context.Context, key string, r Rate) error {
	if r.N <= 0 || r.Per <= 0 {
		return nil
	}
	maxWait := l.MaxWait
	if maxWait <= 0 {
		maxWait = 2 * time.Second
	}
	l.mu.Lock()
	lim, ok := l.lims[localKey{key, r}]
	if !ok {
		if len(l.lims) >= maxLocalKeys {
			l.forgetIdle()
		}
		lim = rate.NewLimiter(rate.Every(r.Per/time.Duration(r.N)), r.N)
		l.lims[localKey{key, r}] = lim
	}
	l.mu.Unlock()
	res := lim.Reserve()
	wait := res.Delay()
	if wait == 0 {
		return nil
	}
	if wait > maxWait {
		res.Cancel()
		return &Error{Class: ErrQuota, Msg: fmt.Sprintf("rate limit of %s: %d per %s", key, r.N, r.Per), RetryAfter: wait}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		res.Cancel()
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
