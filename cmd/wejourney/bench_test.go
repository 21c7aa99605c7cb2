package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// TestBenchReport runs the whole bench in process with tiny numbers and
// checks the report a user reads: nothing lost or doubled, the preload, and
// the drained rate and Redis lines. With WEJOURNEY_TEST_DATABASE_URL naming
// PostgreSQL it also runs on a fresh database and real Redis and checks
// that rows read per follow are reported.
func TestBenchReport(t *testing.T) {
	parallel(t)
	cases := []struct {
		name    string
		opts    func(t *testing.T) benchOpts
		preload int
		want    []string
	}{
		{
			name:    "embedded defaults",
			opts:    func(*testing.T) benchOpts { return benchOpts{} },
			preload: 500,
			want:    []string{"embedded defaults (SQLite file, in-process Redis)", "redis before: used_memory n/a (in-process Redis)"},
		},
	}
	if strings.HasPrefix(os.Getenv(envTestDB), "postgres") {
		cases = append(cases, struct {
			name    string
			opts    func(t *testing.T) benchOpts
			preload int
			want    []string
		}{
			name: "postgres",
			opts: func(t *testing.T) benchOpts {
				return benchOpts{databaseURL: testDatabaseURL(t), redisURL: testRedisURL(t), secretKey: testSecretKey}
			},
			preload: 2000,
			want:    []string{"embedded server on postgres", "rows read/follow"},
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts(t)
			o.n, o.rate, o.burst, o.concurrency, o.settle, o.role, o.preload = 50, 200, 100, 16, 10*time.Second, RoleAll, c.preload
			if err := o.check(); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := runBench(context.Background(), config.Config{}, o, &out, io.Discard); err != nil {
				t.Fatalf("bench: %v\n%s", err, out.String())
			}
			report := out.String()
			want := append([]string{
				fmt.Sprintf("preload: %d members mid-journey (bench-longwait, waiting 30 days)", c.preload),
				"no asynq task enqueued for their waits",
				"paced: 50 follows at 200/s",
				"burst: 100 follows as fast as possible",
				"drained follows/s",
				"(100 messages delivered ÷",
				"redis after:",
			}, c.want...)
			for _, w := range want {
				if !strings.Contains(report, w) {
					t.Errorf("the report lacks %q:\n%s", w, report)
				}
			}
			if n := strings.Count(report, "messages lost 0, doubled 0"); n != 2 {
				t.Errorf("want the paced and the burst run without lost or doubled messages, got %d such lines:\n%s", n, report)
			}
		})
	}
}

// TestBenchPreloadIsRealToTheEngine preloads members in several batches and
// checks that the engine sees them as members who follow it already would
// be: found by their openid, in bench-longwait once, waiting 30 days, with
// no task queued for the wait.
func TestBenchPreloadIsRealToTheEngine(t *testing.T) {
	parallel(t)
	h := newHarness(t, map[string]string{"longwait.yaml": preloadJourney, "welcome.yaml": benchJourney})
	ctx := context.Background()
	const n = 450
	before := time.Now()
	var progress bytes.Buffer
	res, err := preload(ctx, h.db, testAppID, n, 200, &progress) // batches of 200, 200 and 50
	if err != nil {
		t.Fatal(err)
	}
	if res.members != n || !strings.Contains(progress.String(), fmt.Sprintf("%d/%d", n, n)) {
		t.Fatalf("preload reported %d members, progress %q; want %d", res.members, progress.String(), n)
	}
	if got := h.count(&model.Member{}, "open_id LIKE ?", "opl_%"); got != n {
		t.Fatalf("members: got %d, want %d", got, n)
	}
	if got := h.count(&model.MemberIdentity{}, "kind = ?", model.IdentityOpenID); got != n {
		t.Fatalf("openid identities: got %d, want %d", got, n)
	}
	if got := h.count(&model.Enrollment{}, "journey_id = ? AND status = ? AND step_id = ?", res.journeyID, model.EnrollmentActive, "wait"); got != n {
		t.Fatalf("active enrollments in the wait step: got %d, want %d", got, n)
	}
	var visits []model.StepVisit
	if err := h.db.Where("journey_id = ? AND status = ?", res.journeyID, model.VisitWaiting).Find(&visits).Error; err != nil {
		t.Fatal(err)
	}
	if len(visits) != n {
		t.Fatalf("waiting visits: got %d, want %d", len(visits), n)
	}
	for _, v := range visits {
		if d := v.DueAt.Sub(before); d < preloadWait-time.Minute || d > preloadWait+time.Minute {
			t.Fatalf("visit %d is due in %v, want 30 days", v.ID, d)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(h.app.rdb)
	for q := range journey.Queues() {
		if info, err := insp.GetQueueInfo(q); err == nil && info.Size >= n {
			t.Fatalf("queue %s holds %d tasks after preloading %d members: their waits must stay in the database", q, info.Size, n)
		}
	}

	// A preloaded member follows again, twice: found by openid (no new
	// member), welcomed by bench-welcome each time, and still in
	// bench-longwait once (the second follow's scene is "preload").
	var m model.Member
	if err := h.db.Where("open_id LIKE ?", "opl_%").Order("id DESC").First(&m).Error; err != nil {
		t.Fatal(err)
	}
	for i, scene := range []string{"store_bench", "preload"} {
		if status, body := h.send(h.safe, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: m.OpenID, Scene: scene}); status != 200 || body != "success" {
			t.Fatalf("follow from %s: %d %q", scene, status, body)
		}
		got := h.waitMessages(m.OpenID, i+1, 10*time.Second)
		if !strings.Contains(got[i].Text, scene) {
			t.Fatalf("welcome %d: got %q, want the scene %s", i+1, got[i].Text, scene)
		}
		h.eventually("the welcome ends", 10*time.Second, func() bool {
			return h.count(&model.Enrollment{}, "member_id = ? AND journey_id <> ? AND status = ?", m.ID, res.journeyID, model.EnrollmentActive) == 0
		})
	}
	if got := h.count(&model.Member{}, "open_id = ?", m.OpenID); got != 1 {
		t.Errorf("the preloaded member's follow made %d members with its openid, want 1", got)
	}
	if got := h.count(&model.Enrollment{}, "member_id = ? AND journey_id = ?", m.ID, res.journeyID); got != 1 {
		t.Errorf("the preloaded member is in bench-longwait %d times, want once", got)
	}
}

// TestBenchStoreRefusesEvents checks that the bench leaves a database that
// holds events alone unless --reset, and that --reset empties it.
func TestBenchStoreRefusesEvents(t *testing.T) {
	t.Parallel()
	url := "sqlite:" + filepath.Join(t.TempDir(), "used.db")
	ctx := context.Background()
	if _, err := prepareBenchStore(ctx, url, false); err != nil {
		t.Fatalf("a fresh database: %v", err)
	}
	_, dsn, _ := config.ParseDatabaseURL(url)
	db, err := model.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	}()
	now := time.Now()
	if err := db.Create(&model.Event{DedupeKey: "k1", Type: "wechat.subscribe", Source: "wechat", At: now, ReceivedAt: now}).Error; err != nil {
		t.Fatal(err)
	}
	_, err = prepareBenchStore(ctx, url, false)
	if err == nil || !strings.Contains(err.Error(), "--reset") || !strings.Contains(err.Error(), "already holds events") {
		t.Fatalf("want a refusal naming --reset, got %v", err)
	}
	if _, err := prepareBenchStore(ctx, url, true); err != nil {
		t.Fatalf("--reset: %v", err)
	}
	var left int64
	if err := db.Model(&model.Event{}).Count(&left).Error; err != nil || left != 0 {
		t.Fatalf("after --reset: %d events (%v), want none", left, err)
	}
}

// TestBenchFlags checks the refusals of the new flags.
func TestBenchFlags(t *testing.T) {
	t.Parallel()
	ok := benchOpts{n: 1, rate: 1, concurrency: 1, role: RoleAll}
	cases := []struct {
		name string
		edit func(*benchOpts)
		want string // "" for accepted
	}{
		{"defaults", func(*benchOpts) {}, ""},
		{"preload", func(o *benchOpts) { o.preload = 10 }, ""},
		{"negative preload", func(o *benchOpts) { o.preload = -1 }, "--preload"},
		{"reset without stores", func(o *benchOpts) { o.reset = true }, "--reset"},
		{"reset with a database", func(o *benchOpts) { o.reset, o.databaseURL = true, "sqlite:x.db" }, ""},
		{"preload with target", func(o *benchOpts) { o.target, o.preload = "http://127.0.0.1:1", 10 }, "--target"},
		{"database with target", func(o *benchOpts) { o.target, o.databaseURL = "http://127.0.0.1:1", "sqlite:x.db" }, "--target"},
		{"steps", func(o *benchOpts) { o.steps = 10 }, ""},
		{"negative steps", func(o *benchOpts) { o.steps = -1 }, "--steps"},
		{"steps with target", func(o *benchOpts) { o.target, o.steps = "http://127.0.0.1:1", 10 }, "--target"},
		{"steps on a web server", func(o *benchOpts) { o.role, o.steps = RoleWeb, 10 }, "--role"},
		{"stats", func(o *benchOpts) { o.stats = 1000 }, ""},
		{"negative stats", func(o *benchOpts) { o.stats = -1 }, "--stats"},
		{"stats with target", func(o *benchOpts) { o.target, o.stats = "http://127.0.0.1:1", 10 }, "--target"},
		{"welcomes", func(o *benchOpts) { o.welcomes, o.welcomeRate = 10, 100 }, ""},
		{"welcomes with target and its redis", func(o *benchOpts) {
			o.welcomes, o.welcomeRate, o.target, o.redisURL = 10, 100, "http://127.0.0.1:1", "redis://127.0.0.1:6379/6"
		}, ""},
		{"welcomes with target, no redis", func(o *benchOpts) { o.welcomes, o.welcomeRate, o.target = 10, 100, "http://127.0.0.1:1" }, "--redis-url"},
		{"redis with target, follows", func(o *benchOpts) { o.target, o.redisURL = "http://127.0.0.1:1", "redis://127.0.0.1:6379/6" }, "--target"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.edit(&o)
			err := errors.Join(o.check(), o.checkSteps(), o.checkStats(), o.checkWelcomes())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("want an error naming %s, got %v", c.want, err)
			}
		})
	}
}

// TestBenchSteps runs `bench --steps 50` on the embedded defaults and
// checks the report: every member completed the 10-step journey, ten step
// visits each, and four messages each, none lost, doubled or out of order.
func TestBenchSteps(t *testing.T) {
	parallel(t)
	if _, err := journey.Parse("bench-steps.yaml", []byte(stepsJourney)); err != nil {
		t.Fatalf("the steps journey does not parse: %v", err)
	}
	o := benchOpts{n: 1, rate: 1, concurrency: 16, settle: 10 * time.Second, role: RoleAll, steps: 50}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	if err := o.checkSteps(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runBench(context.Background(), config.Config{}, o, &out, io.Discard); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, w := range []string{
		"steps: 50 follows as fast as possible into bench-steps (10 steps per member",
		"(errors 0)",
		"enrollments        50, completed 50, not completed 0",
		"step visits done   500   (want 500 = 50 × 10; completed enrollments with other than 10: 0)",
		"step executions/s",
		"lost 0, doubled 0, wrong 0",
		"redis after:",
	} {
		if !strings.Contains(report, w) {
			t.Errorf("the report lacks %q:\n%s", w, report)
		}
	}
	if strings.Contains(report, "paced:") || strings.Contains(report, "burst:") {
		t.Errorf("--steps runs instead of the paced and burst runs:\n%s", report)
	}
}

// TestBenchWelcomes runs `bench --welcomes` small: every welcome code is
// used once, in time, while marketing sends are queued.
func TestBenchWelcomes(t *testing.T) {
	parallel(t)
	for _, src := range []string{welcomeJourney, marketingJourney} {
		if _, err := journey.Parse("bench.yaml", []byte(src)); err != nil {
			t.Fatalf("a welcomes journey does not parse: %v", err)
		}
	}
	// The settle bounds the wait for the campaign's last send; with the
	// race detector on a busy machine 2,000 sends may take most of a minute.
	o := benchOpts{n: 1, rate: 1, concurrency: 16, settle: 90 * time.Second, role: RoleAll,
		welcomes: 20, marketing: 2000, welcomeRate: 20}
	if err := errors.Join(o.check(), o.checkSteps(), o.checkWelcomes()); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runBench(context.Background(), config.Config{}, o, &out, io.Discard); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, w := range []string{
		"welcomes: 20 WeCom adds with a welcome_code at 20/s while 2000 marketing template sends are queued",
		"marketing posted   2000 events",
		"callback → welcome p50",
		"lost 0, used twice 0, used too late 0; callbacks not answered success 0",
		"marketing sent     2000 of 2000",
	} {
		if !strings.Contains(report, w) {
			t.Errorf("the report lacks %q:\n%s", w, report)
		}
	}
}

// TestBenchFailEvery: with the fake WeChat answering -1 to every 5th send,
// every follow still gets its welcome exactly once.
func TestBenchFailEvery(t *testing.T) {
	parallel(t)
	o := benchOpts{n: 100, rate: 200, concurrency: 16, settle: 30 * time.Second, role: RoleAll, failEvery: 5}
	if err := errors.Join(o.check(), o.checkSteps(), o.checkWelcomes()); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runBench(context.Background(), config.Config{}, o, &out, io.Discard); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, w := range []string{"messages lost 0, doubled 0", "fake WeChat answered -1 (system busy) to 2"} {
		if !strings.Contains(report, w) {
			t.Errorf("the report lacks %q:\n%s", w, report)
		}
	}
}

// TestBenchStats runs `bench --stats 3000` on a temporary SQLite file: the
// visits it loads are what the statistics it times count.
func TestBenchStats(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := runStatsBench(context.Background(), benchOpts{stats: 3000}, &out); err != nil {
		t.Fatalf("bench --stats: %v\n%s", err, out.String())
	}
	report := out.String()
	var visits, enrollments int
	for _, line := range strings.Split(report, "\n") {
		fmt.Sscanf(line, "loaded %d step visits of %d enrollments", &visits, &enrollments)
	}
	if visits < 3000 || enrollments == 0 {
		t.Fatalf("report %q: want at least 3000 visits loaded", report)
	}
	if !strings.Contains(report, "×20 (last 30 days): p50 ") || !strings.Contains(report, " p99 ") {
		t.Errorf("report %q: no p50 and p99 of 20 requests", report)
	}
	_, answer, _ := strings.Cut(report, "answer: ")
	var st journey.Stats
	if err := json.Unmarshal([]byte(answer), &st); err != nil {
		t.Fatalf("answer %q: %v", answer, err)
	}
	// The loaded enrollments entered within the last hours: all of them
	// count, and every visit is counted at its step.
	reached := int64(0)
	for _, s := range st.Steps {
		reached += s.Reached
	}
	if st.Entered != int64(enrollments) || reached != int64(visits) {
		t.Errorf("stats count %d enrollments and %d visits; %d and %d were loaded:\n%s", st.Entered, reached, enrollments, visits, answer)
	}
	if len(st.Splits) != 1 || len(st.Splits[0].Arms) != 2 || st.Splits[0].Arms[0].Goal == 0 {
		t.Errorf("splits %+v: want vip's two arms, with goals", st.Splits)
	}
}

// TestBenchBirthdays runs `bench --birthdays` with few members and checks
// the report: today's birthday members all entered, and a second run the
// same day entered nobody.
func TestBenchBirthdays(t *testing.T) {
	parallel(t)
	var out bytes.Buffer
	if err := runBirthdaysBench(t.Context(), benchOpts{birthdays: 5000}, &out, io.Discard); err != nil {
		t.Fatalf("bench --birthdays: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, w := range []string{"loaded: 5000 members with random birthdays", "members scanned    5000", "run again          0 entered"} {
		if !strings.Contains(report, w) {
			t.Errorf("report lacks %q:\n%s", w, report)
		}
	}
}

// TestBenchSegments runs `bench --segments` with few members and checks the
// report: the first evaluation reads every member, the second only the
// changed ones (on the updated_at index), entering those who newly match.
func TestBenchSegments(t *testing.T) {
	parallel(t)
	var out bytes.Buffer
	if err := runSegmentsBench(t.Context(), benchOpts{segments: 2000, changed: 50}, &out, io.Discard); err != nil {
		t.Fatalf("bench --segments: %v\n%s", err, out.String())
	}
	report := out.String()
	// 30 of 2,000 match (every 50th, less every 200th); of the 50 changed,
	// 16 newly match, 16 stop matching and 18 change city.
	for _, w := range []string{
		"loaded: 2000 members", "30 of them in the segment",
		"members checked 2000 (want 2000, every member), entered 30 (want 30)",
		"16 newly match, 16 stop matching (8 fewer points, 8 opted out), 18 another city",
		"members re-checked 50 (want 50, the changed ones; not 2000), newly entered 16 (want 16)",
		"in the segment     30 (want 30); enrollments 46 (want 46)",
		"USING COVERING INDEX idx_members_updated_at",
	} {
		if !strings.Contains(report, w) {
			t.Errorf("report lacks %q:\n%s", w, report)
		}
	}
	if _, _, err := runCLI(t, "bench", "--segments", "100", "--changed", "80"); err == nil || !strings.Contains(err.Error(), "--changed: want 3 to half of --segments (50)") {
		t.Errorf("bench --segments 100 --changed 80: %v; want --changed refused", err)
	}
}

// `bench --write-journeys DIR` writes the journeys a --target server needs
// and the configuration to start it with.
func TestBenchWriteJourneys(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "j")
	out, _, err := runCLI(t, "bench", "--welcomes", "10", "--write-journeys", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"WEJOURNEY_JOURNEYS_DIR=" + dir, "WEJOURNEY_WECOM_CORPID=" + benchCorpID, "WEJOURNEY_API_KEY=" + benchAPIKey, "--redis-url"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	cs, err := journey.LoadDir(dir)
	if err != nil || len(cs) != 2 {
		t.Fatalf("LoadDir(%s) = %d journeys, %v; want the welcome and the marketing journey", dir, len(cs), err)
	}
}
