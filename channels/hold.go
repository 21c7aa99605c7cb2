package channels

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/model"
)

// ChinaTime is Beijing time (UTC+8, no daylight saving), the clock of
// WeChat's and WeCom's daily quotas.
var ChinaTime = model.ChinaTime

// NextQuotaReset returns when a daily quota spent at now resets: the next
// midnight, Beijing time.
func NextQuotaReset(now time.Time) time.Time {
	t := now.In(ChinaTime)
	return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, ChinaTime)
}

// Hold is a provider API whose quota is spent: sends through it wait until
// Until, without calling the provider.
type Hold struct {
	// Key names the account and API ("wechat:wx…:custom").
	Key string `json:"key"`
	// Until is when the quota resets.
	Until time.Time `json:"until"`
	// Why is the provider's answer that started the hold.
	Why string `json:"why"`
}

// Holds keeps the holds of every process in Redis, so that one worker's
// 45009 holds every worker's sends through that API. Each process
// remembers what Redis said of a key for holdsCacheTTL, so a send costs a
// round trip to Redis at most once a second per API; another process's
// hold is seen within that second.
type Holds struct {
	rdb redis.UniversalClient

	mu    sync.Mutex
	cache map[string]cachedHold
}

// holdsCacheTTL is how long a process trusts what Redis said of a key.
const holdsCacheTTL = time.Second

type cachedHold struct {
	read time.Time // wall clock
	hold Hold
	ok   bool
}

// NewHolds returns holds kept in rdb.
func NewHolds(rdb redis.UniversalClient) *Holds {
	return &Holds{rdb: rdb, cache: map[string]cachedHold{}}
}

func (h *Holds) remember(key string, c cachedHold) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.cache) > 10000 {
		clear(h.cache) // keys are account × API: this is never reached in practice
	}
	h.cache[key] = c
}

const holdPrefix = "wejourney:hold:"

// Hold holds key until until (now is the caller's clock), for why.
func (h *Holds) Hold(ctx context.Context, key string, until, now time.Time, why string) error {
	ttl := until.Sub(now)
	if ttl <= 0 {
		return nil
	}
	val := strconv.FormatInt(until.UnixMilli(), 10) + "|" + why
	h.remember(key, cachedHold{read: time.Now(), hold: Hold{Key: key, Until: until.UTC(), Why: why}, ok: true})
	if err := h.rdb.Set(ctx, holdPrefix+key, val, ttl+time.Minute).Err(); err != nil {
		return fmt.Errorf("channels: record hold of %s: %w", key, err)
	}
	return nil
}

// Held returns key's hold when it is held at now.
func (h *Holds) Held(ctx context.Context, key string, now time.Time) (Hold, bool) {
	h.mu.Lock()
	c, cached := h.cache[key]
	h.mu.Unlock()
	if !cached || time.Since(c.read) >= holdsCacheTTL {
		c = cachedHold{read: time.Now()}
		val, err := h.rdb.Get(ctx, holdPrefix+key).Result()
		if err == nil {
			c.hold, c.ok = parseHold(key, val)
		} else if !errors.Is(err, redis.Nil) {
			return Hold{}, false // Redis is away: the provider answers
		}
		h.remember(key, c)
	}
	return c.hold, c.ok && c.hold.Until.After(now)
}

// Release ends key's hold (an operator knows the quota was raised).
func (h *Holds) Release(ctx context.Context, key string) error {
	h.mu.Lock()
	delete(h.cache, key)
	h.mu.Unlock()
	return h.rdb.Del(ctx, holdPrefix+key).Err()
}

// List returns every hold in force at now.
func (h *Holds) List(ctx context.Context, now time.Time) ([]Hold, error) {
	var out []Hold
	iter := h.rdb.Scan(ctx, 0, holdPrefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		val, err := h.rdb.Get(ctx, k).Result()
		if err != nil {
			continue
		}
		if hold, ok := parseHold(strings.TrimPrefix(k, holdPrefix), val); ok && hold.Until.After(now) {
			out = append(out, hold)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("channels: list holds: %w", err)
	}
	return out, nil
}

func parseHold(key, val string) (Hold, bool) {
	ms, why, _ := strings.Cut(val, "|")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return Hold{}, false
	}
	return Hold{Key: key, Until: time.UnixMilli(n).UTC(), Why: why}, true
}
