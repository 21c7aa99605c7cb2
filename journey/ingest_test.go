package journey_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/testutil"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// ingestDialects are the databases the ingest tests run on: SQLite always,
// PostgreSQL when WEJOURNEY_TEST_DATABASE_URL names one, MySQL/MariaDB when
// WEJOURNEY_TEST_MYSQL_URL (or WEJOURNEY_TEST_DATABASE_URL) does.
var ingestDialects = []string{"sqlite", "postgres", "mysql"}

// openTestDB returns a fresh, migrated database of the dialect, or skips.
func openTestDB(t *testing.T, dialect string) *gorm.DB {
	t.Helper()
	if dialect == "sqlite" {
		db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "i.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeGorm(db) })
		if err := model.Migrate(db); err != nil {
			t.Fatal(err)
		}
		return db
	}
	base := ""
	for _, env := range []string{"WEJOURNEY_TEST_DATABASE_URL", "WEJOURNEY_TEST_MYSQL_URL"} {
		if v := os.Getenv(env); (dialect == "postgres") == strings.HasPrefix(v, "postgres") && (dialect == "mysql") == strings.HasPrefix(v, "mysql://") && v != "" {
			base = v
			break
		}
	}
	if base == "" {
		t.Skipf("%s: set WEJOURNEY_TEST_DATABASE_URL (or WEJOURNEY_TEST_MYSQL_URL) to a %s server", dialect, dialect)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("wj_ingest_%d", time.Now().UnixNano())
	var adminDSN, dsn, drop string
	if dialect == "postgres" {
		adminDSN, drop = base, " WITH (FORCE)"
		u.Path = "/" + name
		dsn = u.String()
	} else {
		adminDSN = fmt.Sprintf("%s@tcp(%s)%s?parseTime=true", u.User.String(), u.Host, u.Path)
		dsn = fmt.Sprintf("%s@tcp(%s)/%s?parseTime=true&charset=utf8mb4&loc=UTC", u.User.String(), u.Host, name)
	}
	admin, err := model.Open(dialect, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
		t.Fatalf("create database: %v", err)
	}
	db, err := model.Open(dialect, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		closeGorm(db)
		admin.Exec("DROP DATABASE IF EXISTS " + name + drop)
		closeGorm(admin)
	})
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	return db
}

func closeGorm(db *gorm.DB) {
	if s, err := db.DB(); err == nil {
		s.Close()
	}
}

// poisonHook makes every insert of events that includes one whose dedupe
// key starts with "poison" fail, as a row the database refuses would, and
// holds inserts that include the key "hold" until release is closed. It
// counts the inserts that held poison with other events (failed group
// commits).
type poisonHook struct {
	release      chan struct{}
	holding      chan struct{} // closed when the held insert has started
	holdOnce     sync.Once
	sharedPoison atomic.Int32
}

func installPoisonHook(t *testing.T, db *gorm.DB) *poisonHook {
	t.Helper()
	p := &poisonHook{release: make(chan struct{}), holding: make(chan struct{})}
	err := db.Callback().Create().Before("gorm:create").Register("test:poison", func(tx *gorm.DB) {
		var evs []*model.Event
		switch d := tx.Statement.Dest.(type) {
		case *model.Event:
			evs = []*model.Event{d}
		case []*model.Event:
			evs = d
		case *[]*model.Event:
			evs = *d
		}
		poison, hold := false, false
		for _, ev := range evs {
			poison = poison || strings.HasPrefix(ev.DedupeKey, "poison")
			hold = hold || ev.DedupeKey == "hold"
		}
		if hold {
			p.holdOnce.Do(func() { close(p.holding) })
			<-p.release
		}
		if poison {
			if len(evs) > 1 {
				p.sharedPoison.Add(1)
			}
			tx.AddError(errors.New("test: the database refuses this row"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIngestOneBadEventFailsOnlyItself: a group commit holding one event
// the database refuses stores and acknowledges every other caller.
func TestIngestOneBadEventFailsOnlyItself(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			db := openTestDB(t, dialect)
			hook := installPoisonHook(t, db)
			ing := journey.NewIngestor(journey.IngestorConfig{DB: db, Logger: testLogger(t)})
			t.Cleanup(ing.Close)
			ctx := t.Context()

			// The first caller's commit is held, so everyone else queues
			// behind it and shares the next transaction.
			heldErr := make(chan error, 1)
			go func() {
				_, _, err := ing.Ingest(ctx, wechatEvent("wechat.subscribe", "o-hold", nil), withKey(wechatEvent("wechat.subscribe", "o-hold", nil), "hold"))
				heldErr <- err
			}()
			<-hook.holding
			const callers = 30
			type result struct {
				acc, dup int
				err      error
			}
			results := make([]result, callers)
			var wg sync.WaitGroup
			for i := range callers {
				key := fmt.Sprintf("follow-%d", i)
				if i == 17 {
					key = "poison-17"
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					ev := withKey(wechatEvent("wechat.subscribe", fmt.Sprintf("o-%d", i), map[string]any{"scene": "store_1"}), key)
					acc, dup, err := ing.Ingest(ctx, ev)
					results[i] = result{acc, dup, err}
				}()
			}
			// Let the callers queue up behind the held commit.
			waitFor(t, "callers waiting", func() bool { return ing.Waiting() >= callers+1 })
			close(hook.release)
			wg.Wait()
			if err := <-heldErr; err != nil {
				t.Fatalf("held caller: %v", err)
			}
			if hook.sharedPoison.Load() == 0 {
				t.Fatal("the poisoned event never shared a transaction with others: the test proves nothing")
			}
			for i, r := range results {
				switch {
				case i == 17 && r.err == nil:
					t.Errorf("caller %d (poison): no error; want the store error", i)
				case i != 17 && (r.err != nil || r.acc != 1 || r.dup != 0):
					t.Errorf("caller %d: %d accepted, %d duplicates, %v; want 1, 0, nil", i, r.acc, r.dup, r.err)
				}
			}
			var keys []string
			db.Model(&model.Event{}).Order("dedupe_key").Pluck("dedupe_key", &keys)
			if len(keys) != callers-1+2 || containsStr(keys, "poison-17") {
				t.Errorf("stored %d events %v; want the %d good callers' and the held ones, not poison-17", len(keys), keys, callers-1)
			}
		})
	}
}

// newIngestEngine returns an ingestor and an engine on db, wired as the app
// wires them (the engine's route concurrency at its default).
func newIngestEngine(t *testing.T, db *gorm.DB) (*journey.Ingestor, *journey.Engine) {
	t.Helper()
	logger := testLogger(t)
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db, Logger: logger})
	t.Cleanup(ing.Close)
	q, _ := newTestQueue(t)
	return ing, journey.New(journey.Config{DB: db, Queue: q, Logger: logger, BaseContext: t.Context()})
}

func withKey(ev *model.Event, key string) *model.Event {
	ev.DedupeKey = key
	return ev
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or 5 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIngestLongKeys: dedupe keys, member identities and scenes longer than
// their columns are stored, deduplicated and routed to one member.
func TestIngestLongKeys(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			db := openTestDB(t, dialect)
			ing, e := newIngestEngine(t, db)
			ctx := t.Context()

			link := "https://shop.example.com/very/long/path?" + strings.Repeat("q=长", 100) // 300+ characters
			longOpenID := "o" + strings.Repeat("x", 299)
			view := func(link string) *model.Event {
				ev := wechatEvent("wechat.menu_view", longOpenID, map[string]any{"url": link})
				return withKey(ev, "wx:"+testAppID+":ev:"+longOpenID+":1700000000:VIEW:"+link+":0")
			}
			acc, dup, err := ing.Ingest(ctx, view(link))
			if err != nil || acc != 1 || dup != 0 {
				t.Fatalf("first long view: %d accepted, %d duplicates, %v; want 1, 0, nil", acc, dup, err)
			}
			acc, dup, err = ing.Ingest(ctx, view(link))
			if err != nil || acc != 0 || dup != 1 {
				t.Fatalf("the same long view again: %d accepted, %d duplicates, %v; want 0, 1, nil", acc, dup, err)
			}
			// Same first 191 characters, different end: a different event.
			acc, dup, err = ing.Ingest(ctx, view(link+"&other"))
			if err != nil || acc != 1 || dup != 0 {
				t.Fatalf("another long view: %d accepted, %d duplicates, %v; want 1, 0, nil", acc, dup, err)
			}
			sub := withKey(wechatEvent("wechat.subscribe", longOpenID, map[string]any{"scene": strings.Repeat("s", 200)}), "sub-long")
			if _, _, err := ing.Ingest(ctx, sub); err != nil {
				t.Fatalf("subscribe with a long scene: %v", err)
			}

			var evs []model.Event
			if err := db.Order("id").Find(&evs).Error; err != nil {
				t.Fatal(err)
			}
			if len(evs) != 3 {
				t.Fatalf("%d events stored; want 3", len(evs))
			}
			for _, ev := range evs {
				if n := len([]rune(ev.DedupeKey)); n > model.MaxDedupeKey || len([]rune(ev.MemberKey)) > model.MaxMemberKey {
					t.Errorf("event %d: keys of %d and %d characters; want at most 191", ev.ID, n, len([]rune(ev.MemberKey)))
				}
				if ev.Member.OpenID != longOpenID {
					t.Errorf("event %d names openid %q…; want the long openid as sent", ev.ID, ev.Member.OpenID[:10])
				}
			}
			if evs[0].Props["url"] != link {
				t.Errorf("stored url = %v; want the full url", evs[0].Props["url"])
			}
			var ids []int64
			for _, ev := range evs {
				ids = append(ids, ev.ID)
			}
			if err := e.Route(ctx, ids...); err != nil {
				t.Fatalf("Route: %v", err)
			}
			var members []model.Member
			db.Find(&members)
			if len(members) != 1 {
				t.Fatalf("%d members; want one for the long openid", len(members))
			}
			m := members[0]
			if m.OpenID != "" || m.AppID != testAppID || m.FirstScene != "" || !m.Subscribed {
				t.Errorf("member = openid %q, appid %q, first scene %q, subscribed %v; want no openid or scene copied (too long), the appid, subscribed",
					m.OpenID, m.AppID, m.FirstScene, m.Subscribed)
			}
			var unrouted int64
			db.Model(&model.Event{}).Where("routed_at IS NULL OR member_id <> ?", m.ID).Count(&unrouted)
			if unrouted != 0 {
				t.Errorf("%d events not routed to the member", unrouted)
			}
			var idents []model.MemberIdentity
			db.Find(&idents)
			if len(idents) != 1 || idents[0].MemberID != m.ID || idents[0].Value != model.FitKey(testAppID+"/"+longOpenID, model.MaxIdentityValue) {
				t.Errorf("identities = %+v; want one fitted openid identity of the member", idents)
			}
		})
	}
}

// TestIngestConflict: a key reused with another payload hash fails the call
// that reused it, and stores nothing of that call.
func TestIngestConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ev := func(key, hash string) *model.Event {
		e := withKey(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{Phone: "138"}}, key)
		e.PayloadHash = hash
		return e
	}
	if _, _, err := h.ing.Ingest(h.ctx, ev("k1", "aaa")); err != nil {
		t.Fatal(err)
	}
	_, _, err := h.ing.Ingest(h.ctx, ev("k2", "bbb"), ev("k1", "ccc"), ev("k3", "ddd"), ev("k3", "eee"))
	var ce *journey.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, journey.ErrConflict) || fmt.Sprint(ce.Indexes) != "[1 3]" {
		t.Fatalf("Ingest with reused keys: %v; want a ConflictError for events [1 3]", err)
	}
	if n := h.count(&model.Event{}); n != 1 {
		t.Errorf("%d events stored; want 1 (nothing of the conflicting call)", n)
	}
	for _, tc := range []struct {
		name string
		ev   *model.Event
	}{{"same payload", ev("k1", "aaa")}, {"no payload hash (a callback)", ev("k1", "")}} {
		acc, dup, err := h.ing.Ingest(h.ctx, tc.ev)
		if err != nil || acc != 0 || dup != 1 {
			t.Errorf("%s: %d accepted, %d duplicates, %v; want a duplicate", tc.name, acc, dup, err)
		}
	}
}

// TestIngestRedisUnreachable: with the queue's Redis refusing connections,
// or accepting them and never answering, callers are answered at once.
func TestIngestRedisUnreachable(t *testing.T) {
	t.Parallel()
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	silent := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go io.Copy(io.Discard, c) // read, never answer
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		return ln.Addr().String()
	}
	for name, redisAddr := range map[string]func(*testing.T) string{"refused": refused, "silent": silent} {
		t.Run(name, func(t *testing.T) {
			db := openTestDB(t, "sqlite")
			q := asynq.NewClient(asynq.RedisClientOpt{Addr: redisAddr(t), DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
			t.Cleanup(func() { q.Close() })
			ing := journey.NewIngestor(journey.IngestorConfig{DB: db, Queue: q, Logger: testLogger(t)})
			start := time.Now()
			for i := range 10 {
				t0 := time.Now()
				acc, _, err := ing.Ingest(t.Context(), withKey(wechatEvent("wechat.subscribe", fmt.Sprintf("o-%d", i), nil), fmt.Sprintf("k-%d", i)))
				if err != nil || acc != 1 {
					t.Fatalf("Ingest %d: %d accepted, %v", i, acc, err)
				}
				if d := time.Since(t0); d > time.Second {
					t.Fatalf("Ingest %d took %v with Redis unreachable; want well under a second", i, d)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("10 ingests took %v with Redis unreachable; want well under a second", d)
			}
			t0 := time.Now()
			ing.Close()
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("Close took %v; want it bounded by the enqueue timeout", d)
			}
			if n, _ := countEvents(db); n != 10 {
				t.Errorf("%d events stored; want 10 (the sweeper routes them)", n)
			}
		})
	}
}

func countEvents(db *gorm.DB) (int64, error) {
	var n int64
	err := db.WithContext(context.Background()).Model(&model.Event{}).Count(&n).Error
	return n, err
}

// TestRouteSaysWhyNoJourney: an event that enters no journey is logged at
// debug with each journey's reason.
func TestRouteSaysWhyNoJourney(t *testing.T) {
	t.Parallel()
	db := openTestDB(t, "sqlite")
	var logs testutil.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q, _ := newTestQueue(t)
	e := journey.New(journey.Config{DB: db, Queue: q, Logger: logger, BaseContext: t.Context()})
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db, Logger: logger})
	t.Cleanup(ing.Close)
	ctx := t.Context()
	for _, src := range []string{
		"key: j-once\ntrigger: { event: wechat.subscribe }\nentry: { once: true }\nsteps: [ { id: hold, wait: 1h } ]\n",
		"key: j-cool\ntrigger: { event: wechat.subscribe }\nentry: { cooldown: 24h }\nsteps: [ { id: hold, wait: 1h } ]\n",
		"key: j-default\ntrigger: { event: wechat.subscribe }\nsteps: [ { id: hold, wait: 1h } ]\n",
		"key: j-store\ntrigger: { event: wechat.subscribe, where: 'event.scene startsWith \"store_\"' }\nsteps: [ { id: hold, wait: 1h } ]\n",
	} {
		c, err := journey.Parse("test.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Publish(ctx, c, "test"); err != nil {
			t.Fatal(err)
		}
	}
	route := func(ev *model.Event) string {
		t.Helper()
		logs.Take()
		if _, _, err := ing.Ingest(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if err := e.Route(ctx, ev.ID); err != nil {
			t.Fatal(err)
		}
		return logs.Take()
	}
	if out := route(withKey(wechatEvent("wechat.subscribe", "o1", map[string]any{"scene": "event_1"}), "s1")); strings.Contains(out, "entered no journey") {
		t.Errorf("the first follow entered journeys, yet the log says none:\n%s", out)
	}
	out := route(withKey(wechatEvent("wechat.subscribe", "o1", map[string]any{"scene": "event_1"}), "s2"))
	for _, want := range []string{"entered no journey", "j-once: entry.once and already entered", "j-cool: entry.cooldown",
		"j-default: already active", "j-store: where was false"} {
		if !strings.Contains(out, want) {
			t.Errorf("second follow's log lacks %q:\n%s", want, out)
		}
	}
	out = route(withKey(&model.Event{Type: "form.submitted", Source: "api", Member: model.MemberRef{Phone: "1"}}, "f1"))
	if !strings.Contains(out, "no journey triggers on form.submitted") {
		t.Errorf("an event no journey triggers on: log lacks the reason:\n%s", out)
	}
}

// TestFitKey: fitted keys fit, are stable, stay distinct, and are clean
// text for PostgreSQL.
func TestFitKey(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("长", 150) + "a"
	tests := []struct {
		name string
		in   string
		max  int
	}{
		{"fits", "wx:app:ev:o1", 191},
		{"long ASCII", strings.Repeat("x", 300), 191},
		{"long Chinese", long, 191},
		{"NUL byte", "a\x00b", 191},
		{"invalid UTF-8", "a\xffb" + strings.Repeat("c", 10), 191},
		{"max below a digest", strings.Repeat("x", 100), 32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := model.FitKey(tc.in, tc.max)
			if !model.Fits(got, tc.max) {
				t.Errorf("FitKey = %q: does not fit %d characters as clean UTF-8", got, tc.max)
			}
			if model.FitKey(tc.in, tc.max) != got || model.FitKey(got, tc.max) != got {
				t.Errorf("FitKey is not stable or not idempotent for %q", tc.in)
			}
			if model.Fits(tc.in, tc.max) != (got == tc.in) {
				t.Errorf("FitKey(%q) = %q: want the input back exactly when it fits", tc.in, got)
			}
		})
	}
	a, b := model.FitKey(long, 191), model.FitKey(long+"b", 191)
	if a == b {
		t.Errorf("two long keys with the same start fit to the same key %q", a)
	}
	if !strings.HasPrefix(a, strings.Repeat("长", 100)) {
		t.Errorf("FitKey(long) = %q: want it to keep the key's start, for people reading it", a)
	}
}

// A route task routes different members' events side by side but one
// member's one after another: a batch holding several events of each of
// many new members creates exactly one member per person (routed side by
// side, each event created the member anew on PostgreSQL and MySQL).
func TestRouteBatchOneMemberEach(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			db := openTestDB(t, dialect)
			ing, e := newIngestEngine(t, db)
			var ids []int64
			for m := range 12 { // each member's events next to each other
				for i := range 3 {
					ev := withKey(wechatEvent("wechat.menu_click", fmt.Sprintf("o%d", m), map[string]any{"key": fmt.Sprint(i)}), fmt.Sprintf("k%d-%d", m, i))
					if _, _, err := ing.Ingest(t.Context(), ev); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, ev.ID)
				}
			}
			if err := e.Route(t.Context(), ids...); err != nil {
				t.Fatalf("Route: %v", err)
			}
			var members, unrouted int64
			db.Model(&model.Member{}).Count(&members)
			db.Model(&model.Event{}).Where("routed_at IS NULL").Count(&unrouted)
			if members != 12 || unrouted != 0 {
				t.Errorf("%d members, %d events unrouted; want 12 members (one per openid), 0 unrouted", members, unrouted)
			}
		})
	}
}
