package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/internal/testutil"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// startApp starts wejourney with cfg, logging through the redacting
// handler into logs as serveCmd does; the app is closed at the test's end.
func startApp(t *testing.T, cfg config.Config, logs io.Writer) (*App, error) {
	t.Helper()
	return launchApp(t, cfg, slog.New(redact.NewHandler(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
}

// leaks lists the secrets found in text.
func leaks(text string) []string {
	var found []string
	if m := regexp.MustCompile(`fakewx\.\d+\.[A-Za-z0-9]+`).FindString(text); m != "" {
		found = append(found, "access token "+m)
	}
	for _, s := range []string{"test-secret", "admin-pass", "test-api-key", testAESKey, testToken} {
		if strings.Contains(text, s) {
			found = append(found, s)
		}
	}
	return found
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// When WeChat answers 5xx, or the connection to it fails, a welcome fails:
// the access token (in the URL of the error), the AppSecret and the admin
// password appear nowhere a user can see: not in the log, the stored errors,
// the deliveries API, the admin page or /readyz.
func TestSecretsNeverLeak(t *testing.T) {
	parallel(t)
	for _, fault := range []string{"HTTP 502", "network error"} {
		t.Run(fault, func(t *testing.T) {
			fake := fakewx.New(fakewx.Config{})
			t.Cleanup(fake.Close)
			cfg := testConfig(t, fake, map[string]string{"welcome.yaml": `
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - id: hi
    send: { channel: wechat.text, text: "欢迎" }
`})
			var logs testutil.Buffer
			app, err := startApp(t, cfg, &logs)
			if err != nil {
				t.Fatalf("NewApp: %v", err)
			}
			h := &harness{t: t, app: app, fake: fake, base: "http://" + app.Addr, db: app.DB}
			if fault == "HTTP 502" {
				fake.SetHTTPStatus(http.StatusBadGateway)
			} else {
				fake.SetDropConnections(true)
			}
			if status, body := h.send(h.client(testAppID, testAESKey), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_leak"}); status != http.StatusOK {
				t.Fatalf("follow: HTTP %d %q", status, body)
			}

			var visitErrs, deliveryErrs []string
			h.eventually("a failed delivery and a rescheduled step", 15*time.Second, func() bool {
				visitErrs, deliveryErrs = nil, nil
				h.db.Model(&model.StepVisit{}).Where("error <> ''").Pluck("error", &visitErrs)
				h.db.Model(&model.Delivery{}).Where("error <> ''").Pluck("error", &deliveryErrs)
				return len(visitErrs) > 0 && len(deliveryErrs) > 0
			})
			// The errors are there, with the URL masked (so this test sees
			// what it must).
			stored := strings.Join(append(visitErrs, deliveryErrs...), "\n")
			if !strings.Contains(stored, "access_token=xxxxx") {
				t.Errorf("stored errors do not show the masked send URL:\n%s", stored)
			}
			if !strings.Contains(logs.String(), "delivery failed") {
				t.Errorf("the failed delivery was not logged:\n%s", logs.String())
			}

			admin, code := signIn(t, h.base, "admin", "admin-pass")
			if code != http.StatusSeeOther {
				t.Fatalf("sign-in: HTTP %d", code)
			}
			status, api := get(t, admin, h.base+"/api/v1/deliveries")
			if status != http.StatusOK || !strings.Contains(api, "xxxxx") {
				t.Errorf("GET /api/v1/deliveries: HTTP %d, want 200 with the masked error:\n%s", status, api)
			}
			_, page := get(t, admin, h.base+"/admin/")
			_, ready := get(t, http.DefaultClient, h.base+"/readyz")

			for what, text := range map[string]string{
				"the log": logs.String(), "step_visits.error": strings.Join(visitErrs, "\n"),
				"deliveries.error": strings.Join(deliveryErrs, "\n"), "GET /api/v1/deliveries": api,
				"GET /admin/": page, "GET /readyz": ready,
			} {
				if l := leaks(text); len(l) > 0 {
					t.Errorf("%s holds %v:\n%s", what, l, text)
				}
			}

			// The account row holds ciphertext only.
			var raw []model.Account
			h.db.Find(&raw)
			if len(raw) == 0 {
				t.Fatal("no account rows")
			}
			for _, a := range raw {
				for _, v := range []string{a.AppSecret, a.Token, a.AESKey} {
					if v != "" && !strings.HasPrefix(v, model.SecretPrefix) {
						t.Errorf("account %s stores %q in plain text", a.AppID, v)
					}
				}
				if l := leaks(a.AppSecret + a.Token + a.AESKey); len(l) > 0 {
					t.Errorf("account %s stores %v", a.AppID, l)
				}
			}
		})
	}
}

// openRaw returns the account's stored secrets opened with keys alone.
func openRaw(t *testing.T, app *App, appid string, keys string) (model.Account, error) {
	t.Helper()
	var raw model.Account
	if err := app.DB.Where("app_id = ?", appid).First(&raw).Error; err != nil {
		t.Fatal(err)
	}
	k, err := config.Config{SecretKey: keys}.SecretKeys()
	if err != nil {
		t.Fatal(err)
	}
	box, err := model.NewSecretBox(k)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*string{&raw.AppSecret, &raw.Token, &raw.AESKey} {
		if !strings.HasPrefix(*f, model.SecretPrefix) && *f != "" {
			return raw, fmt.Errorf("stored in plain text: %q", *f)
		}
		if *f, err = box.Open(*f); err != nil {
			return raw, err
		}
	}
	return raw, nil
}

// Rotation: start with "new,old", and every account is re-encrypted under
// new; then old can be dropped. A wrong key stops the start with a clear error.
func TestSecretKeyRotation(t *testing.T) {
	parallel(t)
	const (
		oldKey   = testSecretKey
		newKey   = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
		wrongKey = "d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nISE="
	)
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	cfg := testConfig(t, fake, nil)
	var logs testutil.Buffer

	app, err := startApp(t, cfg, &logs)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	// A second account, not seeded from the environment, sealed with the old key.
	k, _ := config.Config{SecretKey: oldKey}.SecretKeys()
	oldBox, _ := model.NewSecretBox(k)
	if err := model.UpsertAccount(app.DB, oldBox, model.Account{Kind: model.AccountWeChatOA, AppID: "wxsecond0000000002",
		AppSecret: "second-secret", Token: "second-token"}); err != nil {
		t.Fatal(err)
	}
	app.Close()

	cfg.SecretKey = newKey + "," + oldKey
	if app, err = startApp(t, cfg, &logs); err != nil {
		t.Fatalf("start with new,old: %v", err)
	}
	for appid, want := range map[string]string{testAppID: "test-secret", "wxsecond0000000002": "second-secret"} {
		got, err := openRaw(t, app, appid, newKey)
		if err != nil || got.AppSecret != want {
			t.Errorf("after the rotation start, %s opens under the new key alone as %q, %v; want %q", appid, got.AppSecret, err, want)
		}
	}
	if !strings.Contains(logs.String(), "re-encrypted account secrets") {
		t.Errorf("the rotation was not logged:\n%s", logs.String())
	}
	app.Close()

	cfg.SecretKey = newKey
	if app, err = startApp(t, cfg, &logs); err != nil {
		t.Fatalf("start with the old key dropped: %v", err)
	}
	acct, err := model.NewAccounts(app.DB, app.secrets).Get(context.Background(), "wxsecond0000000002")
	if err != nil || acct.AppSecret != "second-secret" || acct.Token != "second-token" {
		t.Errorf("second account read with the new key = %+v, %v", acct, err)
	}
	app.Close()

	for _, key := range []string{wrongKey, oldKey} {
		cfg.SecretKey = key
		_, err := startApp(t, cfg, &logs)
		if err == nil || !errors.Is(err, model.ErrWrongSecretKey) ||
			!strings.Contains(err.Error(), "cannot decrypt account secrets: WEJOURNEY_SECRET_KEY is not the key they were stored with") {
			t.Errorf("start with a key the secrets were not stored with = %v, want a clear error", err)
		}
	}
}

// On the embedded default without WEJOURNEY_SECRET_KEY, a key is generated
// beside the database, kept, and reused; losing it stops the start clearly.
func TestGeneratedSecretKey(t *testing.T) {
	parallel(t)
	if os.Getenv(envTestDB) != "" {
		t.Skip("the key is generated only on the embedded SQLite default")
	}
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	cfg := testConfig(t, fake, nil)
	cfg.SecretKey = ""
	keyFile := filepath.Join(filepath.Dir(strings.TrimPrefix(cfg.DatabaseURL, "sqlite:")), "secret.key")
	var logs testutil.Buffer

	app, err := startApp(t, cfg, &logs)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("no key generated: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", keyFile, fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), keyFile) {
		t.Errorf("the log does not say where the key is:\n%s", logs.String())
	}
	key, _ := os.ReadFile(keyFile)
	if got, err := openRaw(t, app, testAppID, strings.TrimSpace(string(key))); err != nil || got.AppSecret != "test-secret" {
		t.Errorf("the account does not open with the generated key: %q, %v", got.AppSecret, err)
	}
	app.Close()

	if app, err = startApp(t, cfg, &logs); err != nil {
		t.Fatalf("second start with the generated key: %v", err)
	}
	app.Close()
	if again, _ := os.ReadFile(keyFile); !bytes.Equal(again, key) {
		t.Error("the second start replaced the key")
	}

	os.Remove(keyFile) // lost: a new key is generated, and the stored secrets cannot be read
	_, err = startApp(t, cfg, &logs)
	if err == nil || !strings.Contains(err.Error(), "WEJOURNEY_SECRET_KEY is not the key they were stored with") || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("start after the key file was lost = %v, want a clear error naming %s", err, keyFile)
	}
}

// The banner names the database and Redis without their passwords.
func TestBannerHidesPasswords(t *testing.T) {
	parallel(t)
	var banner bytes.Buffer
	printBanner(&banner, &App{Cfg: config.Config{
		DatabaseURL: "postgres://app:db-password@db.internal:5432/wejourney",
		RedisURL:    "redis://:redis-password@cache.internal:6379/0",
	}, Opts: Options{Role: RoleWorker}})
	out := banner.String()
	if strings.Contains(out, "db-password") || strings.Contains(out, "redis-password") {
		t.Errorf("banner shows a password:\n%s", out)
	}
	if !strings.Contains(out, "db.internal") || !strings.Contains(out, "cache.internal") {
		t.Errorf("banner no longer names the servers:\n%s", out)
	}
}

// `wejourney migrate` names the database without its password.
func TestMigrateHidesPassword(t *testing.T) {
	base := os.Getenv(envTestDB)
	if !strings.HasPrefix(base, "postgres") {
		t.Skip("migrate with a password in the URL needs " + envTestDB + "=postgres://… (trust authentication ignores the password)")
	}
	u, err := url.Parse(testDatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "migrate-password")
	t.Setenv("WEJOURNEY_DATABASE_URL", u.String())
	var stdout bytes.Buffer
	if err := migrateCmd(nil, &stdout); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if strings.Contains(stdout.String(), "migrate-password") || !strings.Contains(stdout.String(), "is at schema") {
		t.Errorf("migrate printed %q", stdout.String())
	}
}
