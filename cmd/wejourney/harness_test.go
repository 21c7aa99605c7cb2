package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// The integration tests run against the embedded defaults (a fresh SQLite
// file and an in-process Redis per test) unless these name real servers:
//
//	WEJOURNEY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test  (a fresh database is created per test)
//	WEJOURNEY_TEST_REDIS_URL=redis://127.0.0.1:6379/9                     (flushed before each test)
const (
	envTestDB    = "WEJOURNEY_TEST_DATABASE_URL"
	envTestRedis = "WEJOURNEY_TEST_REDIS_URL"
)

const (
	testAppID  = "wxtest0000000001"
	testToken  = "test-token"
	testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	// testPlainAppID is a second Official Account, without an AES key, for
	// plaintext callbacks: the default account (testAppID) has an AES key
	// and so refuses them.
	testPlainAppID = "wxtest0000000002"
	// testSecretKey encrypts account secrets in tests (WEJOURNEY_SECRET_KEY).
	testSecretKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

// testDatabaseURL returns a fresh database for one test.
func testDatabaseURL(t testing.TB) string {
	base := os.Getenv(envTestDB)
	if base == "" {
		return "sqlite:" + filepath.Join(t.TempDir(), "wejourney.db")
	}
	driver, dsn, drop := "pgx", base, " WITH (FORCE)"
	switch {
	case strings.HasPrefix(base, "postgres"):
	case strings.HasPrefix(base, "mysql://"):
		_, mdsn, err := config.ParseDatabaseURL(base)
		if err != nil {
			t.Fatal(err)
		}
		driver, dsn, drop = "mysql", mdsn, ""
	default:
		t.Fatalf("%s: want postgres:// or mysql:// for fresh per-test databases, got %q", envTestDB, base)
	}
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("wj_test_%d", time.Now().UnixNano())
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open(driver, dsn)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + name + drop)
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// testRedisURL returns the real Redis to use, flushed, or "" for the in-process one.
func testRedisURL(t testing.TB) string {
	raw := os.Getenv(envTestRedis)
	if raw == "" {
		return ""
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("%s: %v", envTestRedis, err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flush test redis: %v", err)
	}
	return raw
}

// parallel runs t in parallel with the other tests unless they share one
// real Redis (WEJOURNEY_TEST_REDIS_URL), which each test flushes.
func parallel(t *testing.T) {
	if os.Getenv(envTestRedis) == "" {
		t.Parallel()
	}
}

// harness is one running wejourney (all roles) wired to a fake WeChat API.
type harness struct {
	t     *testing.T
	app   *App
	fake  *fakewx.Server
	plain *wxsim.Client // plaintext callbacks
	safe  *wxsim.Client // safe-mode (AES) callbacks
	base  string
	db    *gorm.DB
}

// testConfig is the integration tests' configuration: a fresh database and
// Redis, the journeys (file name → YAML) in a temporary directory, the
// default account in safe mode with real-looking credentials, its API
// calls aimed at fake.
func testConfig(t *testing.T, fake *fakewx.Server, journeys map[string]string) config.Config {
	t.Helper()
	dir := t.TempDir()
	for name, src := range journeys {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Defaults()
	cfg.DatabaseURL = testDatabaseURL(t)
	cfg.RedisURL = testRedisURL(t)
	cfg.JourneysDir = dir
	cfg.WeChatAppID, cfg.WeChatAppSecret, cfg.WeChatToken, cfg.WeChatAESKey = testAppID, "test-secret", testToken, testAESKey
	cfg.WeChatAPIBase = fake.URL
	cfg.AdminPassword = "admin-pass"
	cfg.SecretKey = testSecretKey
	cfg.APIKey = "test-api-key"
	return cfg
}

// newHarness starts wejourney with the given journeys (file name → YAML).
func newHarness(t *testing.T, journeys map[string]string) *harness {
	t.Helper()
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	h := startHarness(t, testConfig(t, fake, journeys), fake)
	plain := model.Account{Kind: model.AccountWeChatOA, AppID: testPlainAppID, Name: "plain", AppSecret: "test-secret", Token: testToken}
	if err := model.UpsertAccount(h.app.DB, h.app.secrets, plain); err != nil {
		t.Fatal(err)
	}
	h.plain = h.client(testPlainAppID, "")
	return h
}

// startHarness starts wejourney with cfg (testConfig's, adjusted), whose
// WeChat API is fake, and returns its harness: safe sends safe-mode
// callbacks to the default account; plain is not set.
func startHarness(t *testing.T, cfg config.Config, fake *fakewx.Server) *harness {
	t.Helper()
	app, err := launchApp(t, cfg, testLogger())
	if err != nil {
		t.Fatalf("NewApp: %v", err)
	}
	h := &harness{t: t, app: app, fake: fake, base: "http://" + app.Addr, db: app.DB}
	h.safe = h.client(testAppID, testAESKey)
	return h
}

// testLogger discards the app's logs, or writes them to stderr under -v.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// launchApp starts wejourney (all roles) with cfg on a free local port,
// migrating the database and sweeping every 500 ms; the app is closed at
// the test's end. It returns NewApp's error; a failed Start fails the test.
func launchApp(t *testing.T, cfg config.Config, logger *slog.Logger) (*App, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app, err := NewApp(ctx, cfg, Options{Listener: ln, Logger: logger, AutoMigrate: true, SweepInterval: 500 * time.Millisecond})
	if err != nil {
		ln.Close()
		return nil, err
	}
	t.Cleanup(app.Close)
	if err := app.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return app, nil
}

// request sends body as JSON to path with method, with bearer as its
// bearer token unless it is "", and returns the status and the answer.
func (h *harness) request(method, path, body, bearer string) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, answer
}

// requestJSON is request with the answer decoded as a JSON object (nil
// when it is not one).
func (h *harness) requestJSON(method, path, body, bearer string) (int, map[string]any) {
	h.t.Helper()
	status, answer := h.request(method, path, body, bearer)
	var out map[string]any
	json.Unmarshal(answer, &out)
	return status, out
}

// postJSON posts body to path with token as its bearer token (none when
// it is "") and returns the status and the decoded answer.
func (h *harness) postJSON(path, body, token string) (int, map[string]any) {
	h.t.Helper()
	return h.requestJSON(http.MethodPost, path, body, token)
}

func (h *harness) client(appid, aes string) *wxsim.Client {
	c, err := wxsim.New(wxsim.Config{Target: h.base, AppID: appid, Token: testToken, AESKey: aes})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// send delivers a callback and returns the HTTP status and body.
func (h *harness) send(c *wxsim.Client, ev wxsim.Event) (int, string) {
	h.t.Helper()
	status, body, err := c.Send(context.Background(), ev)
	if err != nil {
		h.t.Fatalf("send %s: %v", ev.Kind, err)
	}
	return status, body
}

// waitMessages waits until the fake WeChat API holds n messages for openid.
func (h *harness) waitMessages(openid string, n int, within time.Duration) []fakewx.Message {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	err := h.fake.Wait(ctx, func(all []fakewx.Message) bool {
		k := 0
		for _, m := range all {
			if m.ToUser == openid {
				k++
			}
		}
		return k >= n
	})
	got := h.fake.MessagesTo(openid)
	if err != nil {
		h.t.Fatalf("waiting for %d messages to %s: got %d: %v", n, openid, len(got), err)
	}
	return got
}

// eventually polls cond (reading the database) until it holds.
func (h *harness) eventually(what string, within time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) count(m any, where string, args ...any) int64 {
	h.t.Helper()
	var n int64
	if err := h.db.Model(m).Where(where, args...).Count(&n).Error; err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) enrollments(openid string) []model.Enrollment {
	h.t.Helper()
	var out []model.Enrollment
	if err := h.db.Joins("JOIN members ON members.id = enrollments.member_id").
		Where("members.open_id = ?", openid).Order("enrollments.id").Find(&out).Error; err != nil {
		h.t.Fatal(err)
	}
	return out
}

// visit returns the newest visit of step by the member with openid.
func (h *harness) visit(openid, step string) model.StepVisit {
	h.t.Helper()
	var v model.StepVisit
	if err := h.db.Joins("JOIN members ON members.id = step_visits.member_id").
		Where("members.open_id = ? AND step_visits.step_id = ?", openid, step).Order("step_visits.id DESC").First(&v).Error; err != nil {
		h.t.Fatalf("visit of %s to step %q: %v", openid, step, err)
	}
	return v
}
