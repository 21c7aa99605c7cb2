package handler

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/model"
)

// namespaced keeps one test's keys apart from any other's on a shared Redis.
type namespaced struct {
	RateLimiter
	ns string
}

func (n namespaced) Allow(ctx context.Context, key string, count int) (bool, time.Duration, error) {
	return n.RateLimiter.Allow(ctx, n.ns+key, count)
}

// TestEventsRateLimit: a key over its limit gets 429 with Retry-After and
// nothing of its request is stored; another key is unaffected; a batch
// spends one per event. For the limiter of one process and the one shared
// through Redis (miniredis, and the real Redis of WEJOURNEY_TEST_REDIS_URL
// when set).
func TestEventsRateLimit(t *testing.T) {
	t.Parallel()
	const perSecond = 5
	frozen := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	limiters := map[string]func(t *testing.T) RateLimiter{
		"local": func(t *testing.T) RateLimiter {
			return NewLocalRateLimiter(perSecond, func() time.Time { return frozen })
		},
		"miniredis": func(t *testing.T) RateLimiter {
			mr := miniredis.RunT(t)
			rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { rdb.Close() })
			return NewRedisRateLimiter(rdb, perSecond)
		},
	}
	if raw := os.Getenv("WEJOURNEY_TEST_REDIS_URL"); raw != "" {
		limiters["redis"] = func(t *testing.T) RateLimiter {
			opt, err := redis.ParseURL(raw)
			if err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClient(opt)
			t.Cleanup(func() { rdb.Close() })
			return namespaced{NewRedisRateLimiter(rdb, perSecond), "test:" + rand.Text() + ":"}
		}
	}
	batch := func(prefix string, n int) string {
		var evs []string
		for i := range n {
			evs = append(evs, `{"id":"`+prefix+strconv.Itoa(i)+`","type":"order.paid","member":{"phone":"13800000000"}}`)
		}
		return `{"events":[` + strings.Join(evs, ",") + `]}`
	}
	for name, newLimiter := range limiters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newCallbackEnv(t, func(c *Config) { c.EventsLimiter = newLimiter(t) })
			for _, k := range []string{"key-a", "key-b"} {
				if err := e.db.Create(&model.APIKey{Name: k, Hash: HashAPIKey(k), Scope: model.ScopeEvents}).Error; err != nil {
					t.Fatal(err)
				}
			}
			post := func(key, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/events", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				return e.serve(req)
			}
			// A full burst, then one more within the second it takes to refill.
			if rec := post("key-a", batch("a", perSecond)); rec.Code != http.StatusAccepted {
				t.Fatalf("key-a's first %d events: %d %s", perSecond, rec.Code, rec.Body)
			}
			rec := post("key-a", batch("a-more", perSecond))
			if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "rate limit") {
				t.Errorf("key-a over its limit: %d %s; want 429", rec.Code, rec.Body)
			}
			if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
				t.Errorf("Retry-After %q; want 1 or 2 seconds", rec.Header().Get("Retry-After"))
			}
			if n := len(e.events(t)); n != perSecond {
				t.Errorf("%d events stored, want %d (nothing of the refused request)", n, perSecond)
			}
			if rec := post("key-b", batch("b", perSecond)); rec.Code != http.StatusAccepted {
				t.Errorf("key-b, under its own limit: %d %s; want 202", rec.Code, rec.Body)
			}
			if n := len(e.events(t)); n != 2*perSecond {
				t.Errorf("%d events stored, want %d", n, 2*perSecond)
			}
		})
	}
}

// TestLocalRateLimiterRefills: the allowance comes back at the rate, and a
// request larger than the burst spends the whole burst rather than never
// passing.
func TestLocalRateLimiterRefills(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	l := NewLocalRateLimiter(10, func() time.Time { return now })
	ctx := context.Background()
	if ok, _, _ := l.Allow(ctx, "k", 1000); !ok {
		t.Fatal("a batch over the burst on a full bucket was refused")
	}
	ok, wait, _ := l.Allow(ctx, "k", 5)
	if ok || wait != 500*time.Millisecond {
		t.Errorf("5 more at once: ok %v, wait %v; want refused, 500ms", ok, wait)
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _, _ := l.Allow(ctx, "k", 5); !ok {
		t.Error("5 more half a second later were refused")
	}
}

// TestRedisRateLimiterWithoutRedis: with Redis gone, the limit still holds
// in each process, and the error says the shared one could not be checked.
func TestRedisRateLimiterWithoutRedis(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	l := NewRedisRateLimiter(rdb, 3)
	mr.Close()
	ctx := context.Background()
	ok, _, err := l.Allow(ctx, "k", 3)
	if !ok || err == nil {
		t.Errorf("first 3 without Redis: ok %v, err %v; want allowed with an error", ok, err)
	}
	if ok, wait, err := l.Allow(ctx, "k", 3); ok || wait <= 0 || err == nil {
		t.Errorf("3 more without Redis: ok %v, wait %v, err %v; want refused by the local fallback", ok, wait, err)
	}
}
