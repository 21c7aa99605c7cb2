package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/model"
)

// newRoleApp builds and starts one wejourney process of role on cfg and
// returns it with its base URL.
func newRoleApp(t *testing.T, cfg config.Config, role string) (*App, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	app, err := NewApp(context.Background(), cfg, Options{Role: role, Listener: ln, Logger: logger, AutoMigrate: true,
		SweepInterval: 500 * time.Millisecond, Concurrency: 2})
	if err != nil {
		ln.Close()
		t.Fatalf("NewApp(%s): %v", role, err)
	}
	t.Cleanup(app.Close)
	if err := app.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s): %v", role, err)
	}
	return app, "http://" + app.Addr
}

// readyz answers GET /readyz: its status and body.
func readyz(t *testing.T, base string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadinessPerRole: with Redis gone, a web process (and --role=all)
// still stores and acknowledges callbacks, so it stays ready; a worker,
// which cannot run a journey without its queue, is not ready, and says
// only which dependency failed. Without the database no role is ready.
func TestReadinessPerRole(t *testing.T) {
	parallel(t)
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mr.Close)
	roles := []string{RoleWeb, RoleWorker, RoleAll}
	apps := map[string]*App{}
	bases := map[string]string{}
	for _, role := range roles {
		cfg := config.Defaults()
		cfg.DatabaseURL = testDatabaseURL(t)
		cfg.RedisURL = "redis://" + mr.Addr()
		cfg.JourneysDir = t.TempDir()
		cfg.SecretKey = testSecretKey
		apps[role], bases[role] = newRoleApp(t, cfg, role)
	}
	// Bring Redis back before the apps close (cleanups run last first): a
	// worker shutting down without its Redis waits out asynq's timeouts.
	t.Cleanup(func() {
		if err := mr.Restart(); err != nil {
			t.Logf("restarting miniredis: %v", err)
		}
	})
	type probe struct {
		Status int
		Body   string // what the worker's own probe says
	}
	probeAll := func() map[string]probe {
		out := map[string]probe{}
		for _, role := range roles {
			st, body := readyz(t, bases[role])
			out[role] = probe{Status: st}
			if role == RoleWorker {
				out[role] = probe{st, strings.TrimSpace(body)}
			}
		}
		return out
	}
	check := func(when string, want map[string]probe) {
		t.Helper()
		got := probeAll()
		for _, role := range roles {
			if got[role] != want[role] {
				t.Errorf("%s: /readyz of --role=%s = %+v; want %+v", when, role, got[role], want[role])
			}
		}
	}
	check("everything up", map[string]probe{RoleWeb: {200, ""}, RoleWorker: {200, `{"ready":true}`}, RoleAll: {200, ""}})

	mr.Close() // Redis goes away
	check("Redis down", map[string]probe{RoleWeb: {200, ""}, RoleWorker: {503, `{"error":"not ready: redis: see the server log","ready":false}`}, RoleAll: {200, ""}})

	for _, role := range roles { // the database goes away
		sqlDB, err := apps[role].DB.DB()
		if err != nil {
			t.Fatal(err)
		}
		sqlDB.Close()
	}
	check("database down", map[string]probe{RoleWeb: {503, ""}, RoleWorker: {503, `{"error":"not ready: database: see the server log","ready":false}`}, RoleAll: {503, ""}})
}

// TestDemoJourneysOnlyInSandbox runs the shipped journeys/ directory
// through successive starts on one database: demos run in the sandbox,
// are paused when real credentials arrive, and run again only when the
// operator chooses them.
func TestDemoJourneysOnlyInSandbox(t *testing.T) {
	parallel(t)
	dbURL := testDatabaseURL(t)
	shipped, err := filepath.Glob(filepath.Join("..", "..", "journeys", "*.yaml"))
	if err != nil || len(shipped) == 0 {
		t.Fatalf("shipped journeys: %v, %v", shipped, err)
	}
	steps := []struct {
		name       string
		secret     string // WEJOURNEY_WECHAT_APPSECRET; "" is the sandbox
		demos      string // WEJOURNEY_DEMO_JOURNEYS
		wantActive int
	}{
		{"sandbox, auto: demos run", "", "auto", len(shipped)},
		{"real credentials, auto: demos paused", "real-secret", "auto", 0},
		{"real credentials, on: the operator chose demos", "real-secret", "on", len(shipped)},
		{"real credentials, auto again: paused again", "real-secret", "auto", 0},
		{"sandbox, off: no demos", "", "off", 0},
	}
	for _, st := range steps {
		cfg := config.Defaults()
		cfg.DatabaseURL = dbURL
		cfg.RedisURL = testRedisURL(t)
		cfg.JourneysDir = filepath.Join("..", "..", "journeys")
		cfg.SecretKey = testSecretKey
		cfg.DemoJourneys = st.demos
		if st.secret != "" {
			cfg.WeChatAppID, cfg.WeChatAppSecret, cfg.WeChatToken = testAppID, st.secret, testToken
		}
		app, err := NewApp(context.Background(), cfg, Options{Role: RoleWorker, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AutoMigrate: true})
		if err != nil {
			t.Fatalf("%s: NewApp: %v", st.name, err)
		}
		var n int64
		err = app.DB.Model(&model.Journey{}).Where("status = ?", model.JourneyActive).Count(&n).Error
		app.Close()
		if err != nil {
			t.Fatal(err)
		}
		if int(n) != st.wantActive {
			t.Errorf("%s: %d active journeys; want %d", st.name, n, st.wantActive)
		}
	}
}

// TestJourneysValidateAcceptsDemo: `wejourney journeys validate` accepts
// the shipped journeys, which are marked demo: true.
func TestJourneysValidateAcceptsDemo(t *testing.T) {
	parallel(t)
	shipped, err := filepath.Glob(filepath.Join("..", "..", "journeys", "*.yaml"))
	if err != nil || len(shipped) == 0 {
		t.Fatalf("shipped journeys: %v, %v", shipped, err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"journeys", "validate"}, shipped...), &out, io.Discard); err != nil {
		t.Fatalf("journeys validate: %v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), ": ok"); got != len(shipped) {
		t.Errorf("journeys validate said ok %d times for %d files:\n%s", got, len(shipped), out.String())
	}
}
