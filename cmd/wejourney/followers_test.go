package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// adminCall calls the admin JSON API with an admin-scope API key.
func (h *harness) adminCall(method, path, body string) (int, map[string]any) {
	h.t.Helper()
	var key model.APIKey
	if err := h.db.Where("name = ?", "followers-test").Take(&key).Error; err != nil {
		key = model.APIKey{Name: "followers-test", Hash: handler.HashAPIKey("adm-followers"), Scope: model.ScopeAdmin, CreatedAt: time.Now()}
		if err := h.db.Create(&key).Error; err != nil {
			h.t.Fatal(err)
		}
	}
	return h.requestJSON(method, path, body, "adm-followers")
}

// TestFollowersImportThroughEngine: a sync started from the admin API
// imports 25,000 followers, and the server's worker turns them into
// 25,000 subscribed members with their unionids and tags.
func TestFollowersImportThroughEngine(t *testing.T) {
	parallel(t)
	h := newHarness(t, nil)
	const n = 25000
	h.fake.SetFollowerCount(testAppID, n)

	if code, body := h.adminCall("GET", "/api/v1/followers/sync?appid="+testAppID, ""); code != 404 {
		t.Fatalf("status before any sync: %d %v, want 404", code, body)
	}
	if code, body := h.adminCall("POST", "/api/v1/followers/sync", `{"appid":"`+testAppID+`"}`); code != 202 {
		t.Fatalf("start: %d %v", code, body)
	}
	var last map[string]any
	h.eventually("the sync to finish", 60*time.Second, func() bool {
		code, body := h.adminCall("GET", "/api/v1/followers/sync?appid="+testAppID, "")
		if code != 200 {
			t.Fatalf("status: %d %v", code, body)
		}
		last = body
		if body["status"] == "failed" {
			t.Fatalf("sync failed: %v", body)
		}
		return body["status"] == "done"
	})
	if last["imported"] != float64(n) || last["total"] != float64(n) {
		t.Errorf("final status %v", last)
	}
	h.eventually("every follower to be a member", 120*time.Second, func() bool {
		return h.count(&model.Event{}, "type = ? AND routed_at IS NOT NULL", events.WeChatFollowerImported) == n
	})
	if got := h.count(&model.Member{}, "app_id = ? AND subscribed = ?", testAppID, true); got != n {
		t.Fatalf("%d subscribed members, want %d", got, n)
	}
	if got := h.count(&model.MemberIdentity{}, "kind = ?", model.IdentityUnionID); got != n {
		t.Errorf("%d unionids, want %d", got, n)
	}
	for _, i := range []int{0, 4, 7, n - 1} {
		want := fakewx.GeneratedFollower(testAppID, i)
		var m model.Member
		if err := h.db.Take(&m, "open_id = ?", want.OpenID).Error; err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		var tags []string
		for _, id := range want.TagIDs {
			tags = append(tags, fakewx.GeneratedTags[id])
		}
		if m.UnionID != want.UnionID || m.Subscription(testAppID) != model.SubscriptionSubscribed ||
			m.SubscribedAt == nil || m.SubscribedAt.Unix() != want.SubscribeTime || m.FirstScene != want.QRSceneStr ||
			!slices.Equal(m.Tags, tags) && len(tags)+len(m.Tags) > 0 {
			t.Errorf("member %d: %+v, want %+v", i, m, want)
		}
	}
	if calls := h.fake.Calls(fakewx.PathUserBatchGet); calls != n/100 {
		t.Errorf("%d batchget calls, want %d", calls, n/100)
	}
}

// writeCLIConfig writes a wejourney.yaml for the CLI: a fresh database
// (migrated) and Redis, and the default account's API at fake.
func writeCLIConfig(t *testing.T, fake *fakewx.Server) (path, dbURL string) {
	t.Helper()
	dbURL = testDatabaseURL(t)
	path = filepath.Join(t.TempDir(), "wejourney.yaml")
	src := fmt.Sprintf("database_url: %q\nredis_url: %q\nwechat_appid: %q\nwechat_appsecret: s3cret\nwechat_token: tok\nwechat_api_base: %q\nsecret_key: %q\n",
		dbURL, testRedisURL(t), testAppID, fake.URL, testSecretKey)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runCLI(t, "migrate", "--config", path); err != nil {
		t.Fatalf("migrate: %v %s", err, stderr)
	}
	return path, dbURL
}

// TestFollowersCLI: `wejourney followers sync` imports the default
// account's followers with a progress bar; stopped by the daily quota it
// says to resume tomorrow, and the next run resumes.
func TestFollowersCLI(t *testing.T) {
	parallel(t)
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	fake.SetFollowerCount(testAppID, 12000)
	conf, _ := writeCLIConfig(t, fake)

	fake.SetDailyQuota(fakewx.PathUserBatchGet, 105)
	_, stderr, err := runCLI(t, "followers", "sync", "--rate", "5000", "--config", conf)
	if err == nil || !strings.Contains(err.Error(), "tomorrow") || !strings.Contains(stderr, "stopped after 10000 of 12000") {
		t.Fatalf("over the quota: err %v, stderr %q", err, stderr)
	}
	fake.SetDailyQuota(fakewx.PathUserBatchGet, -1)
	stdout, stderr, err := runCLI(t, "followers", "sync", "--config", conf, "--appid", testAppID, "--rate=5000")
	if err != nil {
		t.Fatalf("resume: %v (stderr %q)", err, stderr)
	}
	if !strings.Contains(stdout, "imported 12000 of 12000 followers of "+testAppID) || !strings.Contains(stdout, "from follower 10000") ||
		!strings.Contains(stdout, "1500 events stored, 500 stored before") {
		t.Errorf("summary: %q", stdout)
	}
	if !strings.Contains(stderr, "importing followers of "+testAppID) || !strings.Contains(stderr, "12000/12000") {
		t.Errorf("no progress bar on stderr: %q", stderr)
	}
	stdout, _, err = runCLI(t, "followers", "sync", "--restart", "--rate", "5000", "--config", conf)
	if err != nil || !strings.Contains(stdout, "(a new run)") || !strings.Contains(stdout, "12000 events stored") {
		t.Errorf("restart: %v %q", err, stdout)
	}

	help, _, err := runCLI(t, "followers", "--help")
	if err != nil || !strings.Contains(help, "usage: wejourney followers sync") || !strings.Contains(help, "-restart") {
		t.Errorf("help: %v %q", err, help)
	}
	if _, _, err := runCLI(t, "followers", "list"); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("unknown subcommand: %v", err)
	}
}
