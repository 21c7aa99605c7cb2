package channels

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Rate is a number of calls per period.
type Rate struct {
	N   int
	Per time.Duration
}

// Limiter bounds calls to a provider API per key (an account and API, a
// phone number), shared by every process that uses the same Redis.
type Limiter interface {
	// Take spends one call of key's allowance r. When none is left it
	// waits if the next one comes within the limiter's wait bound, and
	// otherwise returns an *Error of class ErrQuota whose RetryAfter says
	// when to try again (nothing spent). Zero or negative r.N: no limit.
	Take(ctx context.Context, key string, r Rate) error
}

// RedisLimiter is a Limiter kept in Redis (github.com/go-redis/redis_rate,
// GCRA), so every worker process spends from one allowance. When Redis
// does not answer it lets the call through: the provider's own limit
// answers then (45011, a 429), and that is retried.
type RedisLimiter struct {
	rl *redis_rate.Limiter
	// MaxWait is how long Take waits for a call slot before giving up
	// with ErrQuota. Zero: 2 s.
	MaxWait time.Duration
}

// NewRedisLimiter returns a limiter over rdb.
func NewRedisLimiter(rdb redis.UniversalClient) *RedisLimiter {
	return &RedisLimiter{rl: redis_rate.NewLimiter(rdb)}
}

// limiterPrefix namespaces the limiter's keys (redis_rate adds "rate:").
const limiterPrefix = "wejourney:send:"

// Take implements Limiter.
func (l *RedisLimiter) Take(ctx context.Context, key string, r Rate) error {
	if r.N <= 0 || r.Per <= 0 {
		return nil
	}
	maxWait := l.MaxWait
	if maxWait <= 0 {
		maxWait = 2 * time.Second
	}
	lim := redis_rate.Limit{Rate: r.N, Burst: r.N, Period: r.Per}
	deadline := time.Now().Add(maxWait)
	for {
		res, err := l.rl.Allow(ctx, limiterPrefix+key, lim)
		if err != nil {
			return nil // see the type's doc
		}
		if res.Allowed > 0 {
			return nil
		}
		wait := max(res.RetryAfter, time.Millisecond)
		if time.Now().Add(wait).After(deadline) {
			return &Error{Class: ErrQuota, Msg: fmt.Sprintf("rate limit of %s: %d per %s", key, r.N, r.Per), RetryAfter: wait}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ParseRate reads "N/PERIOD": a count and a Go duration ("3/1m", "5/48h",
// "100/1s"), or a bare unit for one of it ("100/s", "10/d": s, m, h, d).
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q: want N/PERIOD, e.g. 3/1m or 100/s", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count < 0 {
		return Rate{}, fmt.Errorf("%q: %q is not a count", s, n)
	}
	per = strings.TrimSpace(per)
	units := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	d, ok := units[per]
	if !ok {
		if strings.HasSuffix(per, "d") {
			days, err := strconv.Atoi(strings.TrimSuffix(per, "d"))
			if err != nil {
				return Rate{}, fmt.Errorf("%q: the period %q is not s, m, h, d or a duration like 30m", s, per)
			}
			d = time.Duration(days) * 24 * time.Hour
		} else if d, err = time.ParseDuration(per); err != nil {
			return Rate{}, fmt.Errorf("%q: the period %q is not s, m, h, d or a duration like 30m", s, per)
		}
	}
	if d <= 0 {
		return Rate{}, fmt.Errorf("%q: the period must be positive", s)
	}
	return Rate{N: count, Per: d}, nil
}

// ParseRates reads a comma-separated list of API=RATE ("wechat.custom=500/s,
// sms.phone=5/h"); see ParseRate.
func ParseRates(s string) (map[string]Rate, error) {
	out := map[string]Rate{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q: want API=N/PERIOD", part)
		}
		r, err := ParseRate(v)
		if err != nil {
			return nil, err
		}
		out[strings.TrimSpace(k)] = r
	}
	return out, nil
}

// String writes r as ParseRate reads it.
func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Per) }
