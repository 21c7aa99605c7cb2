package followers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

const appID = "wxfollowers01"

// testDB opens a fresh, migrated database: SQLite in a temporary file, or
// a new database on the PostgreSQL server WEJOURNEY_TEST_DATABASE_URL
// names.
func testDB(t *testing.T) *gorm.DB {
	t.Helper()
	base := os.Getenv("WEJOURNEY_TEST_DATABASE_URL")
	var db *gorm.DB
	var err error
	if !strings.HasPrefix(base, "postgres") {
		db, err = model.Open("sqlite", filepath.Join(t.TempDir(), "f.db"))
	} else {
		name := fmt.Sprintf("wj_followers_%d", time.Now().UnixNano())
		admin, aerr := sql.Open("pgx", base)
		if aerr != nil {
			t.Fatal(aerr)
		}
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatalf("create database: %v", err)
		}
		admin.Close()
		t.Cleanup(func() {
			if admin, err := sql.Open("pgx", base); err == nil {
				admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
				admin.Close()
			}
		})
		u, _ := url.Parse(base)
		u.Path = "/" + name
		db, err = model.Open("postgres", u.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	return db
}

// accounts is one account with a secret: real API calls.
type accounts struct{}

func (accounts) Account(_ context.Context, appid string) (wechat.Account, error) {
	if appid != appID {
		return wechat.Account{}, fmt.Errorf("%w: %s", wechat.ErrUnknownAccount, appid)
	}
	return wechat.Account{AppID: appid, AppSecret: "secret"}, nil
}

// env is one import setup: a fake WeChat with followers, a database with
// an ingestor, and the Official Account client.
type env struct {
	t      *testing.T
	fake   *fakewx.Server
	db     *gorm.DB
	ing    *journey.Ingestor
	client *wechat.Sender
	sleeps []time.Duration // what the syncers waited
	mu     sync.Mutex
}

func newEnv(t *testing.T, followers int) *env {
	t.Helper()
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	fake.SetFollowerCount(appID, followers)
	db := testDB(t)
	quiet := slog.New(slog.DiscardHandler)
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db, Logger: quiet})
	t.Cleanup(ing.Close)
	client := wechat.NewSender(wechat.Config{Accounts: accounts{}, APIBase: fake.URL, Logger: quiet})
	return &env{t: t, fake: fake, db: db, ing: ing, client: client}
}

// syncer returns a Syncer over the env (a new one stands for a new
// process) whose waits are recorded, not slept.
func (e *env) syncer(c Client, configure func(*Config)) *Syncer {
	if c == nil {
		c = e.client
	}
	cfg := Config{DB: e.db, Client: c, Events: e.ing, Rate: 1e6, Logger: slog.New(slog.DiscardHandler),
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.mu.Lock()
			e.sleeps = append(e.sleeps, d)
			e.mu.Unlock()
			return ctx.Err()
		}}
	if configure != nil {
		configure(&cfg)
	}
	s := New(cfg)
	e.t.Cleanup(s.Close)
	return s
}

func (e *env) count(where string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.db.Model(&model.Event{}).Where(where, args...).Count(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) row() model.FollowerSync {
	e.t.Helper()
	var r model.FollowerSync
	if err := e.db.Take(&r, "app_id = ?", appID).Error; err != nil {
		e.t.Fatal(err)
	}
	return r
}

// checkImported asserts that exactly the n generated followers have one
// imported event each, with their unionid, tag names and scene.
func (e *env) checkImported(n int) {
	e.t.Helper()
	if got := e.count("type = ?", events.WeChatFollowerImported); got != int64(n) {
		e.t.Fatalf("%d imported events, want %d", got, n)
	}
	var keys []string
	if err := e.db.Model(&model.Event{}).Distinct("member_key").Pluck("member_key", &keys).Error; err != nil {
		e.t.Fatal(err)
	}
	if len(keys) != n {
		e.t.Fatalf("%d followers have events, want %d", len(keys), n)
	}
	for _, i := range []int{0, 1, 2, 3, 30, n - 1} {
		want := fakewx.GeneratedFollower(appID, i)
		var ev model.Event
		if err := e.db.Take(&ev, "member_key = ?", model.MemberRef{AppID: appID, OpenID: want.OpenID}.Key()).Error; err != nil {
			e.t.Fatalf("follower %d: %v", i, err)
		}
		if ev.Source != "import" || ev.Member.UnionID != want.UnionID || ev.Member.AppID != appID {
			e.t.Errorf("follower %d: source %q member %+v", i, ev.Source, ev.Member)
		}
		var tags []string
		for _, id := range want.TagIDs {
			tags = append(tags, fakewx.GeneratedTags[id])
		}
		got := propStrings(ev.Props["tags"])
		if !slices.Equal(got, tags) && !(len(got) == 0 && len(tags) == 0) {
			e.t.Errorf("follower %d: tags %v, want %v", i, got, tags)
		}
		if ev.Props["scene"] != want.QRSceneStr || ev.Props["subscribe_scene"] != want.SubscribeScene ||
			ev.Props["remark"] != want.Remark || int64(ev.Props["subscribe_time"].(float64)) != want.SubscribeTime {
			e.t.Errorf("follower %d: props %v, want %+v", i, ev.Props, want)
		}
	}
}

func propStrings(v any) []string {
	l, _ := v.([]any)
	out := []string{}
	for _, x := range l {
		out = append(out, x.(string))
	}
	return out
}

// TestSyncImportsEveryFollower: 25,000 followers are 3 pages of user/get
// (and the empty call that ends the list), 250 batchget calls and one
// tags/get, and become 25,000 events.
func TestSyncImportsEveryFollower(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 25000)
	var calls atomic.Int64
	s := e.syncer(nil, func(c *Config) { c.Limiter = countingLimiter{&calls} })
	var last [2]int
	prev := -1
	res, err := s.Sync(t.Context(), appID, Options{Progress: func(done, total int) {
		if done <= prev {
			t.Errorf("progress went from %d to %d", prev, done)
		}
		prev, last = done, [2]int{done, total}
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.checkImported(25000)
	if last != [2]int{25000, 25000} {
		t.Errorf("last progress %v, want [25000 25000]", last)
	}
	if res.Resumed || res.Stored != 25000 || res.Duplicates != 0 || res.Skipped != 0 {
		t.Errorf("result %+v", res)
	}
	row := e.row()
	if row.Status != StatusDone || row.Imported != 25000 || row.Total != 25000 || row.NextOpenID != "" || row.FinishedAt == nil || row.Error != "" {
		t.Errorf("progress row %+v", row)
	}
	get, batch, tags := e.fake.Calls(fakewx.PathUserGet), e.fake.Calls(fakewx.PathUserBatchGet), e.fake.Calls(fakewx.PathTagsGet)
	if get != 4 || batch != 250 || tags != 1 {
		t.Errorf("calls: user/get %d, batchget %d, tags/get %d; want 4, 250, 1", get, batch, tags)
	}
	// Every API call waited for the rate limiter.
	if got := calls.Load(); got != int64(get+batch+tags) {
		t.Errorf("%d limiter waits for %d API calls", got, get+batch+tags)
	}
}

// countingLimiter counts waits and never waits.
type countingLimiter struct{ n *atomic.Int64 }

func (l countingLimiter) Wait(ctx context.Context) error {
	l.n.Add(1)
	return ctx.Err()
}

// TestSyncRateLimited: the default limiter spaces calls at Rate per second.
func TestSyncRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1000) // tags/get + 2 user/get + 10 batchget = 13 calls
	s := e.syncer(nil, func(c *Config) { c.Rate = 200 })
	start := time.Now()
	if _, err := s.Sync(t.Context(), appID, Options{}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 12*time.Second/200 {
		t.Fatalf("13 calls at 200/s took %v, want at least %v", el, 12*time.Second/200)
	}
	e.checkImported(1000)
}

// killAfter is the Official Account client of a process killed during its
// n-th batchget call: the call's answer never arrives.
type killAfter struct {
	Client
	n      int
	cancel context.CancelFunc
	calls  atomic.Int64
}

func (k *killAfter) UsersInfo(ctx context.Context, appid string, openids []string) ([]wechat.UserInfo, error) {
	if int(k.calls.Add(1)) == k.n {
		k.cancel()
		return nil, context.Canceled
	}
	return k.Client.UsersInfo(ctx, appid, openids)
}

// TestSyncResumesAfterKill: a run stopped in the middle of the second page
// resumes there with the same run (no page fetched again but the one it
// was working on) and ends with every follower stored exactly once.
func TestSyncResumesAfterKill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		killed bool // the process died (the row still says running), or was interrupted
	}{{"interrupted", false}, {"killed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 25000)
			ctx, cancel := context.WithCancel(t.Context())
			k := &killAfter{Client: e.client, n: 130, cancel: cancel} // page 2, batch 30
			_, err := e.syncer(k, nil).Sync(ctx, appID, Options{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("first run: %v, want context.Canceled", err)
			}
			row := e.row()
			if row.Imported != 10000 || row.NextOpenID != fakewx.GeneratedFollower(appID, 9999).OpenID {
				t.Fatalf("after the kill: imported %d, cursor %q; want page 1 done, the cursor at its last openid", row.Imported, row.NextOpenID)
			}
			if row.Status != StatusFailed || !strings.Contains(row.Error, "interrupted") {
				t.Errorf("after an interruption: %+v", row)
			}
			runID := row.RunID
			if tc.killed {
				if err := e.db.Model(&model.FollowerSync{}).Where("app_id = ?", appID).Updates(map[string]any{"status": StatusRunning, "error": ""}).Error; err != nil {
					t.Fatal(err)
				}
			}
			if got := e.count("type = ?", events.WeChatFollowerImported); got != 12900 {
				t.Fatalf("%d events stored before the kill, want 12,900 (page 1 and 29 batches)", got)
			}

			res, err := e.syncer(nil, nil).Sync(t.Context(), appID, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Resumed || res.ResumedFrom != 10000 || res.Sync.RunID != runID {
				t.Errorf("second run: resumed %v from %d, run %s; want resumed from 10000 in run %s", res.Resumed, res.ResumedFrom, res.Sync.RunID, runID)
			}
			if res.Duplicates != 2900 || res.Stored != 12100 {
				t.Errorf("second run stored %d and found %d stored; want 12,100 and 2,900", res.Stored, res.Duplicates)
			}
			e.checkImported(25000)
			// user/get: pages 1 and 2, then 2 again, 3 and the end;
			// batchget: 250 plus the interrupted page's 30 batches.
			if get, batch := e.fake.Calls(fakewx.PathUserGet), e.fake.Calls(fakewx.PathUserBatchGet); get != 5 || batch > 250+30 {
				t.Errorf("calls: user/get %d, batchget %d; want 5 and at most 280", get, batch)
			}
			if row := e.row(); row.Status != StatusDone || row.Imported != 25000 {
				t.Errorf("done: %+v", row)
			}
		})
	}
}

// TestSyncDailyQuota: 45009 stops the run with an error that says to
// resume tomorrow; the next run, once the quota is back, resumes.
func TestSyncDailyQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 25000)
	e.fake.SetDailyQuota(fakewx.PathUserBatchGet, 120)
	res, err := e.syncer(nil, nil).Sync(t.Context(), appID, Options{})
	if !errors.Is(err, ErrDailyQuota) || !errors.Is(err, channels.ErrQuota) || !strings.Contains(err.Error(), "tomorrow") {
		t.Fatalf("over the quota: %v; want ErrDailyQuota saying to resume tomorrow", err)
	}
	row := e.row()
	if row.Status != StatusFailed || !strings.Contains(row.Error, "45009") || !strings.Contains(row.Error, "tomorrow") || row.Imported != 10000 {
		t.Fatalf("row after 45009: %+v", row)
	}
	if res.Sync.Imported != 10000 || len(e.sleeps) != 0 {
		t.Errorf("result %+v, waits %v: 45009 is not retried", res.Sync, e.sleeps)
	}
	if n := e.fake.Calls(fakewx.PathUserBatchGet); n != 121 {
		t.Errorf("batchget calls %d, want 121 (the 121st answered 45009, and no more)", n)
	}

	e.fake.SetDailyQuota(fakewx.PathUserBatchGet, -1) // the next day
	res, err = e.syncer(nil, nil).Sync(t.Context(), appID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Sync.Status != StatusDone {
		t.Errorf("next day: %+v", res)
	}
	e.checkImported(25000)
}

// TestSyncRetries: 45011 waits a minute and retries; a temporary error
// (-1, system busy) backs off and retries; neither loses a follower.
func TestSyncRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 500)
	e.fake.FailNext(fakewx.PathUserBatchGet, 45011, 1)
	e.fake.FailNext(fakewx.PathUserGet, -1, 2)
	if _, err := e.syncer(nil, nil).Sync(t.Context(), appID, Options{}); err != nil {
		t.Fatal(err)
	}
	e.checkImported(500)
	want := []time.Duration{time.Second, 2 * time.Second, time.Minute}
	if !slices.Equal(e.sleeps, want) {
		t.Errorf("waits %v, want %v", e.sleeps, want)
	}

	// A temporary error that persists ends the run after the retries.
	e2 := newEnv(t, 500)
	e2.fake.FailNext(fakewx.PathUserGet, -1, 100)
	_, err := e2.syncer(nil, nil).Sync(t.Context(), appID, Options{})
	if err == nil || !strings.Contains(err.Error(), "failed 5 times") {
		t.Fatalf("persistent -1: %v", err)
	}
	if row := e2.row(); row.Status != StatusFailed || row.Error == "" {
		t.Errorf("row %+v", row)
	}
}

// TestSyncRuns: a finished run is not resumed (a new run imports again),
// Restart abandons a stopped run, and one account syncs once at a time.
func TestSyncRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 150)
	s := e.syncer(nil, nil)
	first, err := s.Sync(t.Context(), appID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Sync(t.Context(), appID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if second.Resumed || second.Sync.RunID == first.Sync.RunID || second.Stored != 150 {
		t.Errorf("after a finished run: %+v", second)
	}

	e.fake.SetDailyQuota(fakewx.PathUserBatchGet, 0)
	if _, err := s.Sync(t.Context(), appID, Options{}); !errors.Is(err, ErrDailyQuota) {
		t.Fatalf("want 45009, got %v", err)
	}
	stopped := e.row().RunID
	e.fake.SetDailyQuota(fakewx.PathUserBatchGet, -1)
	third, err := s.Sync(t.Context(), appID, Options{Restart: true})
	if err != nil {
		t.Fatal(err)
	}
	if third.Resumed || third.Sync.RunID == stopped {
		t.Errorf("restart resumed run %s", stopped)
	}

	// One at a time: a sync blocked in its first call holds the account.
	block := make(chan struct{})
	b := &blockTags{Client: e.client, block: block, entered: make(chan struct{})}
	s2 := e.syncer(b, nil)
	started, err := s2.Start(appID, false)
	if !started || err != nil {
		t.Fatalf("Start: %v %v", started, err)
	}
	// The progress row says running as soon as Start returns.
	if st, found, err := s2.Status(t.Context(), appID); !found || err != nil || st.Status != StatusRunning {
		t.Errorf("status right after Start: %+v %v %v", st, found, err)
	}
	<-b.entered
	if again, _ := s2.Start(appID, false); again {
		t.Error("a second Start of the same account started")
	}
	if _, err := s2.Sync(t.Context(), appID, Options{}); !errors.Is(err, ErrRunning) {
		t.Errorf("Sync while running: %v, want ErrRunning", err)
	}
	if st, _, err := s2.Status(t.Context(), appID); err != nil || st.Status != StatusRunning {
		t.Errorf("status while running: %+v %v", st, err)
	}
	close(block)
	for deadline := time.Now().Add(10 * time.Second); s2.Running(appID); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background sync did not end")
		}
	}
	if st, _, err := s2.Status(t.Context(), appID); err != nil || st.Status != StatusDone || st.Imported != 150 {
		t.Errorf("status after: %+v %v", st, err)
	}
	if _, found, err := s2.Status(t.Context(), "wxnever"); found || err != nil {
		t.Errorf("status of an account never synced: %v", err)
	}
}

// blockTags blocks its first tags/get until block is closed.
type blockTags struct {
	Client
	block, entered chan struct{}
	once           sync.Once
}

func (b *blockTags) Tags(ctx context.Context, appid string) (map[int]string, error) {
	b.once.Do(func() {
		close(b.entered)
		<-b.block
	})
	return b.Client.Tags(ctx, appid)
}

// TestSyncSkipsUnfollowed: a follower who unfollows between the list and
// their details is not imported.
func TestSyncSkipsUnfollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 300)
	gone := fakewx.GeneratedFollower(appID, 7).OpenID
	c := &unfollowAfterList{Client: e.client, fake: e.fake, openid: gone}
	res, err := e.syncer(c, nil).Sync(t.Context(), appID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 1 || res.Stored != 299 {
		t.Errorf("result %+v, want 299 stored and 1 skipped", res)
	}
	if n := e.count("member_key = ?", model.MemberRef{AppID: appID, OpenID: gone}.Key()); n != 0 {
		t.Errorf("the unfollowed follower has %d events", n)
	}
}

type unfollowAfterList struct {
	Client
	fake   *fakewx.Server
	openid string
}

func (u *unfollowAfterList) Followers(ctx context.Context, appid, next string) (wechat.FollowerPage, error) {
	p, err := u.Client.Followers(ctx, appid, next)
	u.fake.RemoveFollowers(appid, u.openid)
	return p, err
}
