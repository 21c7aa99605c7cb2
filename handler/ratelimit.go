package handler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// RateLimiter limits how many events a key may post: the events API asks
// it with "api_key:<id>" before storing a request's events.
// *RedisRateLimiter and *LocalRateLimiter are ones.
type RateLimiter interface {
	// Allow spends n events of key's allowance and returns true, or returns
	// false and how long to wait before n would be allowed (spending
	// nothing). A non-nil error says the limit could not be checked as
	// configured; ok and retryAfter are then the limiter's fallback answer.
	Allow(ctx context.Context, key string, n int) (ok bool, retryAfter time.Duration, err error)
}

// LocalRateLimiter is a token bucket per key in this process
// (golang.org/x/time/rate): perSecond events a second, bursts of up to
// perSecond. A request of more events than the burst spends the whole
// burst. Keys are API key ids, so the map stays as small as the list of
// keys. It is safe for concurrent use.
type LocalRateLimiter struct {
	perSecond int
	now       func() time.Time

	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

// NewLocalRateLimiter returns a limiter of perSecond events a second per
// key (at least 1), timed by now (nil: time.Now).
func NewLocalRateLimiter(perSecond int, now func() time.Time) *LocalRateLimiter {
	if now == nil {
		now = time.Now
	}
	return &LocalRateLimiter{perSecond: max(perSecond, 1), now: now, keys: map[string]*rate.Limiter{}}
}

// Allow implements RateLimiter.
func (l *LocalRateLimiter) Allow(_ context.Context, key string, n int) (bool, time.Duration, error) {
	n = min(max(n, 1), l.perSecond)
	l.mu.Lock()
	lim, ok := l.keys[key]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(l.perSecond), l.perSecond)
		l.keys[key] = lim
	}
	l.mu.Unlock()
	now := l.now()
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return false, time.Second, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, nil
}

// RedisRateLimiter is a token bucket per key kept in Redis
// (github.com/go-redis/redis_rate, GCRA), so every web process spends from
// the same allowance: perSecond events a second, bursts of up to perSecond.
// A request of more events than the burst spends the whole burst. When
// Redis does not answer, each process limits on its own (a
// LocalRateLimiter of the same rate) and Allow reports the error.
type RedisRateLimiter struct {
	rl       *redis_rate.Limiter
	limit    redis_rate.Limit
	fallback *LocalRateLimiter
}

// NewRedisRateLimiter returns a limiter of perSecond events a second per
// key (at least 1) over rdb.
func NewRedisRateLimiter(rdb redis.UniversalClient, perSecond int) *RedisRateLimiter {
	perSecond = max(perSecond, 1)
	return &RedisRateLimiter{
		rl:       redis_rate.NewLimiter(rdb),
		limit:    redis_rate.Limit{Rate: perSecond, Burst: perSecond, Period: time.Second},
		fallback: NewLocalRateLimiter(perSecond, nil),
	}
}

// redisRatePrefix namespaces the limiter's keys (redis_rate adds "rate:").
const redisRatePrefix = "wejourney:events:"

// Allow implements RateLimiter.
func (l *RedisRateLimiter) Allow(ctx context.Context, key string, n int) (bool, time.Duration, error) {
	n = min(max(n, 1), l.limit.Burst)
	res, err := l.rl.AllowN(ctx, redisRatePrefix+key, l.limit, n)
	if err != nil {
		ok, wait, _ := l.fallback.Allow(ctx, key, n)
		return ok, wait, fmt.Errorf("redis rate limit: %w", err)
	}
	if res.Allowed >= n {
		return true, 0, nil
	}
	wait := res.RetryAfter
	if wait <= 0 {
		wait = time.Second
	}
	return false, wait, nil
}
