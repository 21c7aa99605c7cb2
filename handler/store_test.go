package handler

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wejourney/wejourney/model"
)

// failingStore is an EventStore whose every Ingest fails, as a database
// that refuses writes does. It counts its calls.
type failingStore struct {
	calls atomic.Int64
	err   error
}

func (f *failingStore) Ingest(context.Context, ...*model.Event) (int, int, error) {
	f.calls.Add(1)
	return 0, 0, f.err
}

// TestStoreFailure: when the event store fails, neither the callback nor
// the events API acknowledges: both answer 503, so that WeChat or the
// brand retries, say nothing of success, and nothing is stored.
func TestStoreFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		req      func(t *testing.T) *http.Request
		wantBody string
		wantLog  string
		outcome  string // callback outcome counted; "" for the events API
	}{
		{"an OA callback", func(t *testing.T) *http.Request { return plainCB(followXML("o_fail")).post(t) },
			"try again", "storing callback failed", "store_failed"},
		{"a safe-mode OA callback", func(t *testing.T) *http.Request { return safeCB(followXML("o_fail")).post(t) },
			"try again", "storing callback failed", "store_failed"},
		{"the events API", func(t *testing.T) *http.Request {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/events",
				strings.NewReader(`{"id":"x1","type":"order.paid","member":{"phone":"13800000000"}}`))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/json")
			return req
		}, `{"error":"could not store events; retry with the same ids"}`, "storing events failed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := &failingStore{err: errors.New("database is locked")}
			e := newCallbackEnv(t, func(c *Config) { c.Ingestor = store })
			if err := e.db.Create(&model.APIKey{Name: "test", Hash: HashAPIKey(testKey), Scope: model.ScopeEvents}).Error; err != nil {
				t.Fatal(err)
			}
			rec := e.serve(tc.req(t))
			if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != tc.wantBody {
				t.Errorf("answer = %d %q, want 503 %q", rec.Code, rec.Body, tc.wantBody)
			}
			if strings.Contains(rec.Body.String(), "success") || strings.Contains(rec.Body.String(), "accepted") {
				t.Errorf("a failed store was acknowledged: %q", rec.Body)
			}
			if n := store.calls.Load(); n != 1 {
				t.Errorf("the store was asked %d times, want 1", n)
			}
			if n := len(e.events(t)); n != 0 {
				t.Errorf("%d events in the database, want none", n)
			}
			if !strings.Contains(e.logs.String(), tc.wantLog) || !strings.Contains(e.logs.String(), "database is locked") {
				t.Errorf("log does not say %q with the cause:\n%s", tc.wantLog, e.logs)
			}
			if tc.outcome != "" {
				if n := e.outcome(tc.outcome); n != 1 {
					t.Errorf("%s = %v, want 1", tc.outcome, n)
				}
				if n := e.outcome("stored"); n != 0 {
					t.Errorf("stored = %v, want 0", n)
				}
			}
		})
	}
}

// TestProbes: a process that serves only its probes answers them as the
// whole route table does, and serves nothing else.
func TestProbes(t *testing.T) {
	t.Parallel()
	down := &DependencyError{Dependency: "redis", Err: errors.New("dial tcp 10.0.0.6:6379: connect: connection refused")}
	for _, tc := range []struct {
		name       string
		ready      error
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{"healthz", nil, "GET", "/healthz", 200, "ok"},
		{"ready", nil, "GET", "/readyz", 200, `{"ready":true}`},
		{"not ready names only the dependency", down, "GET", "/readyz", 503, `{"error":"not ready: redis: see the server log","ready":false}`},
		{"metrics", nil, "GET", "/metrics", 200, ""},
		{"no callbacks", nil, "POST", "/wechat/oa/" + plainAppID, 404, ""},
		{"no events API", nil, "POST", "/api/v1/events", 404, ""},
		{"no admin page", nil, "GET", "/admin/", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ready := func(*http.Request) error { return tc.ready }
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_test_total", Help: "x"}))
			probes := Probes(ProbeConfig{Ready: ready, Registry: reg, Logger: slog.New(slog.DiscardHandler)})
			full := newCallbackEnv(t, func(c *Config) { c.Ready = ready; c.Registry = reg; c.Logger = slog.New(slog.DiscardHandler) })
			for what, h := range map[string]http.Handler{"Probes": probes, "New": full.router} {
				if what == "New" && tc.wantStatus == 404 {
					continue // the whole table serves these
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
				if rec.Code != tc.wantStatus {
					t.Errorf("%s: %s %s = %d, want %d", what, tc.method, tc.path, rec.Code, tc.wantStatus)
				}
				if tc.wantBody != "" && rec.Body.String() != tc.wantBody {
					t.Errorf("%s: body %q, want %q", what, rec.Body, tc.wantBody)
				}
				if tc.path == "/metrics" && !strings.Contains(rec.Body.String(), "probe_test_total 0") {
					t.Errorf("%s: /metrics does not serve the registry:\n%.500s", what, rec.Body)
				}
			}
		})
	}
}
