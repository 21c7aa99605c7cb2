package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/officialaccount"
	oaconfig "github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/officialaccount/message"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
)

// benchJourney is the journey the bench measures: a follow sends a welcome.
const benchJourney = `key: bench-welcome
name: 压测关注欢迎
trigger: { event: wechat.subscribe }
steps:
  - id: hello
    send: { channel: wechat.text, text: "欢迎关注 {{ .event.scene }}" }
`

// benchOpts are the bench's flags.
type benchOpts struct {
	n, burst, concurrency int
	rate                  float64
	target, fakeAddr      string
	// fakeWeComAddr is where the fake WeCom API listens for --welcomes
	// with --target; writeJourneys, when set, is where the journeys a
	// --target server needs are written (the bench then exits).
	fakeWeComAddr, writeJourneys string
	settle                       time.Duration
	bare, unionIDs               bool
	role                         string
	// databaseURL and redisURL are the embedded server's stores: empty for
	// a temporary SQLite file and the in-process Redis.
	databaseURL, redisURL string
	// secretKey is WEJOURNEY_SECRET_KEY; when empty, PostgreSQL and MySQL
	// get benchSecretKey (SQLite keeps its key file).
	secretKey string
	reset     bool
	preload   int
	// steps is the members of the 10-step journey run (see bench_steps.go);
	// 0 runs the paced and burst follow-welcome runs instead.
	steps int
	// web and workers are the `serve --role=web` and `--role=worker`
	// processes of cluster mode (see bench_cluster.go); both 0: off.
	web, workers int
	// killWorker kills the first worker with SIGKILL once half of the
	// burst's callbacks are acknowledged (cluster mode).
	killWorker bool
	// bin is the wejourney binary cluster mode starts; empty: this one.
	bin string
	// roleSet records that --role was given (cluster mode refuses it).
	roleSet bool
	// welcomes, when positive, runs the welcome-code run instead of the
	// follow runs: welcomes WeCom adds at welcomeRate while marketing
	// template sends are queued (see bench_welcomes.go).
	welcomes, marketing int
	welcomeRate         float64
	// failEvery makes the fake WeChat API answer -1 (system busy) to every
	// failEvery-th send; 0: never.
	failEvery int
	// stats, when positive, runs the statistics run instead: that many
	// step visits loaded into the database, then the stats API timed (see
	// bench_stats.go).
	stats int
	// birthdays, when positive, runs the schedule-trigger run instead of
	// the follow runs: this many members with random birthdays, and a
	// birthday journey due now (see bench_birthdays.go).
	birthdays int
	// segments, when positive, runs the segment-trigger run instead of the
	// follow runs: this many members, a segment journey evaluated once,
	// then again after changed of them changed (see bench_segments.go).
	segments, changed int
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench [flags]", "Measures callbacks and follow → message latency against an embedded server (default), --target, or separate web and worker processes (--web, --workers).", stderr)
	var o benchOpts
	fs.IntVar(&o.n, "n", 10000, "follows sent at --rate")
	fs.Float64Var(&o.rate, "rate", 500, "follows per second in the paced run")
	fs.IntVar(&o.burst, "burst", 20000, "callbacks sent as fast as possible in the burst run (0 skips it)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent connections")
	fs.StringVar(&o.target, "target", "", "a running server's base URL (default: start one with embedded defaults); it must send to --fake-addr")
	fs.StringVar(&o.fakeAddr, "fake-addr", "127.0.0.1:18081", "where the fake WeChat API listens when --target is set (the server's WEJOURNEY_WECHAT_API_BASE)")
	fs.StringVar(&o.fakeWeComAddr, "fake-wecom-addr", "127.0.0.1:18083", "with --welcomes and --target: where the fake WeCom API listens (the server's WEJOURNEY_WECOM_API_BASE)")
	fs.StringVar(&o.writeJourneys, "write-journeys", "", "write the journeys the chosen scenario needs into this `directory` (a --target server's WEJOURNEY_JOURNEYS_DIR), print the configuration that server needs, and exit")
	fs.DurationVar(&o.settle, "settle", 30*time.Second, "how long to wait for the last messages after the last callback")
	fs.BoolVar(&o.bare, "bare", true, "also measure a bare silenceper callback server for comparison")
	fs.BoolVar(&o.unionIDs, "unionids", true, "the fake WeChat API answers every follower's user info with a unionid (an account bound to the Open Platform: each follow's unionid is looked up and recorded before routing); false: no unionids")
	fs.StringVar(&o.role, "role", RoleAll, "role of the embedded server: all, or web to measure callbacks alone (no message is sent)")
	fs.StringVar(&o.databaseURL, "database-url", "", "database of the embedded server (default: WEJOURNEY_DATABASE_URL when set, else a temporary SQLite file); it must hold no events, or pass --reset")
	fs.StringVar(&o.redisURL, "redis-url", "", "Redis of the embedded server (default: WEJOURNEY_REDIS_URL when set, else an in-process Redis); with --welcomes and --target, the target's Redis, where the bench pauses the marketing queue while it posts the campaign")
	fs.BoolVar(&o.reset, "reset", false, "empty wejourney's tables (events, members, journeys, …) in --database-url and flush the --redis-url database first")
	fs.IntVar(&o.preload, "preload", 0, "members to create first, each mid-journey on a 30-day wait (directly in the database)")
	fs.IntVar(&o.steps, "steps", 0, "instead of the follow runs, send this many follows into a 10-step journey and report step executions/s (0: off)")
	fs.IntVar(&o.web, "web", 0, "cluster mode: start this many serve --role=web processes and spread the callbacks over them (needs --database-url and --redis-url)")
	fs.IntVar(&o.workers, "workers", 0, "cluster mode: start this many serve --role=worker processes")
	fs.BoolVar(&o.killWorker, "kill-worker", false, "cluster mode: kill -9 the first worker once half of the burst's callbacks are acknowledged; its work is recovered after the 5 s lease, or after 1 min for unrouted events while the queue has a backlog: raise --settle to match")
	fs.StringVar(&o.bin, "bin", "", "cluster mode: the wejourney binary to start (default: this one)")
	fs.IntVar(&o.failEvery, "fail-every", 0, "the fake WeChat API answers errcode -1 (system busy) to every Nth send, which must be retried: every follow still gets its welcome once (0: never)")
	fs.IntVar(&o.welcomes, "welcomes", 0, "instead of the follow runs, post --marketing campaign events (a template message each, on the marketing queue), then send this many WeCom adds with a welcome_code at --welcome-rate while those sends are queued, and report how soon each code is used (0: off)")
	fs.IntVar(&o.marketing, "marketing", 50000, "with --welcomes: marketing sends queued first")
	fs.Float64Var(&o.welcomeRate, "welcome-rate", 100, "with --welcomes: WeCom adds per second")
	fs.IntVar(&o.stats, "stats", 0, "instead of the follow runs, load this many step visits of one journey directly into the database (--database-url, or a temporary SQLite file), then time GET /api/v1/journeys/{key}/stats 20 times and report p50/p99 (0: off)")
	fs.IntVar(&o.birthdays, "birthdays", 0, "instead of the follow runs, load this many members with random birthdays directly into the database and time Engine.RunSchedules entering today's into a birthday journey (0: off)")
	fs.IntVar(&o.segments, "segments", 0, "instead of the follow runs, load this many members with points directly into the database, time a segment journey's first evaluation, change --changed of them and time the second, which must re-check only those (0: off)")
	fs.IntVar(&o.changed, "changed", 1000, "with --segments: members changed between the two evaluations (a third newly match, a third stop matching, the rest change an attribute the segment does not read)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole bench to this file")
	cfg, err := loadConfig(fs, args, stdout)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { o.roleSet = o.roleSet || f.Name == "role" })
	if fs.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments, got %q (see wejourney bench --help)", fs.Arg(0))
	}
	if o.target == "" {
		if o.databaseURL == "" && cfg.DatabaseURL != config.Defaults().DatabaseURL {
			o.databaseURL = cfg.DatabaseURL
		}
		if o.redisURL == "" {
			o.redisURL = cfg.RedisURL
		}
		o.secretKey = cfg.SecretKey
	}
	if err := o.check(); err != nil {
		return err
	}
	if err := o.checkStats(); err != nil {
		return err
	}
	if o.stats > 0 {
		return runStatsBench(ctx, o, stdout)
	}
	if o.birthdays > 0 {
		return runBirthdaysBench(ctx, o, stdout, stderr)
	}
	if err := o.checkSegments(); err != nil {
		return err
	}
	if o.segments > 0 {
		return runSegmentsBench(ctx, o, stdout, stderr)
	}
	if err := o.checkSteps(); err != nil {
		return err
	}
	if err := o.checkWelcomes(); err != nil {
		return err
	}
	if err := o.checkCluster(); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.writeJourneys != "" {
		return writeTargetSetup(o, stdout)
	}
	if o.cluster() {
		return runCluster(ctx, o, stdout, stderr)
	}
	return runBench(ctx, cfg, o, stdout, stderr)
}

// check refuses flag values the bench cannot run with, naming the flag.
func (o benchOpts) check() error {
	switch {
	case o.n <= 0:
		return fmt.Errorf("-n: want at least 1 follow, got %d", o.n)
	case o.rate <= 0:
		return fmt.Errorf("--rate: want follows per second above 0, got %v", o.rate)
	case o.burst < 0:
		return fmt.Errorf("--burst: want 0 (no burst run) or more, got %d", o.burst)
	case o.concurrency <= 0:
		return fmt.Errorf("--concurrency: want at least 1, got %d", o.concurrency)
	case o.settle < 0:
		return fmt.Errorf("--settle: want a duration of 0 or more, got %v", o.settle)
	case o.role != RoleAll && o.role != RoleWeb:
		return fmt.Errorf("--role: want all or web, got %q", o.role)
	case o.preload < 0:
		return fmt.Errorf("--preload: want 0 or more members, got %d", o.preload)
	case o.failEvery < 0 || o.failEvery == 1:
		return fmt.Errorf("--fail-every: want 0 (never) or 2 or more, got %d", o.failEvery)
	case o.target != "" && (o.databaseURL != "" || (o.redisURL != "" && o.welcomes == 0) || o.reset || o.preload > 0):
		return errors.New("--database-url, --redis-url, --reset and --preload are for the embedded server: drop --target, or prepare the target's stores yourself")
	case o.reset && o.databaseURL == "" && o.redisURL == "":
		return errors.New("--reset: the default temporary SQLite file and in-process Redis are always empty; --reset needs --database-url or --redis-url (or WEJOURNEY_DATABASE_URL, WEJOURNEY_REDIS_URL)")
	}
	return nil
}

// arrivals records when each member's messages reached the fake WeChat API.
type arrivals struct {
	mu sync.Mutex
	at map[string][]time.Time
	n  atomic.Int64
}

func (a *arrivals) record(m fakewx.Message) {
	a.mu.Lock()
	a.at[m.ToUser] = append(a.at[m.ToUser], m.At)
	a.mu.Unlock()
	a.n.Add(1)
}

func runBench(ctx context.Context, cfg config.Config, o benchOpts, stdout, stderr io.Writer) error {
	arr := &arrivals{at: map[string][]time.Time{}}
	fakeCfg := fakewx.Config{OnMessage: arr.record, UnionIDs: o.unionIDs, FailEvery: o.failEvery}
	target := o.target
	desc := "external server " + target
	if target != "" {
		ln, err := net.Listen("tcp", o.fakeAddr)
		if err != nil {
			return fmt.Errorf("--fake-addr: the fake WeChat API cannot listen: %w", err)
		}
		fakeCfg.Listener = ln
	}
	fake := fakewx.New(fakeCfg)
	defer fake.Close()
	var wc *fakewecom.Server
	if o.welcomes > 0 {
		var ln net.Listener
		if target != "" {
			var err error
			if ln, err = net.Listen("tcp", o.fakeWeComAddr); err != nil {
				return fmt.Errorf("--fake-wecom-addr: the fake WeCom API cannot listen: %w", err)
			}
		}
		wc = fakewecom.NewOn(ln)
		defer wc.Close()
		wc.AddCorp(benchCorpID, "bench-wecom-secret")
	}
	var app *App
	if target == "" {
		dir, err := os.MkdirTemp("", "wejourney-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if cfg, err = benchConfig(dir, o, fake.URL); err != nil {
			return err
		}
		if wc != nil {
			welcomesConfig(&cfg, wc.URL)
		}
		cfg.DatabaseURL = "sqlite:" + filepath.Join(dir, "bench.db")
		desc = "embedded defaults (SQLite file, in-process Redis), server and load generator in one process"
		if o.databaseURL != "" || o.redisURL != "" {
			stores, err := benchStores(ctx, &cfg, o, stdout)
			if err != nil {
				return err
			}
			desc = "embedded server on " + stores + ", server and load generator in one process"
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		app, err = NewApp(ctx, cfg, Options{Listener: ln, Logger: logger, AutoMigrate: true, Role: o.role})
		if err != nil {
			return err
		}
		defer app.Close()
		if err := app.Start(ctx); err != nil {
			return err
		}
		target = "http://" + app.Addr
	}
	sim, err := wxsim.New(wxsim.Config{Target: target, AppID: cfg.DefaultAppID(), Token: cfg.DefaultToken(), AESKey: cfg.WeChatAESKey})
	if err != nil {
		return err
	}
	run := &followRuns{o: o, cfg: cfg, arr: arr, sims: []*wxsim.Client{sim}, client: benchClient(o), busy: fake.Busy}
	run.header(stdout, desc)
	if app == nil && o.welcomes > 0 {
		// The server runs elsewhere: its Redis, to pause its marketing queue.
		opt, err := redis.ParseURL(o.redisURL)
		if err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		return runWelcomesBench(ctx, target, rdb, fake, wc, o, stdout)
	}
	if app != nil {
		if run.readRows, run.rdbState, err = watchStores(ctx, app.DB, app.rdb, cfg, o, stdout, stderr); err != nil {
			return err
		}
		if o.steps > 0 {
			err := runStepsBench(ctx, app.DB, fake, sim, run.client, o, stdout)
			fmt.Fprintf(stdout, "redis after: %s\n", run.rdbState())
			return err
		}
		if o.welcomes > 0 {
			err := runWelcomesBench(ctx, target, app.rdb, fake, wc, o, stdout)
			fmt.Fprintf(stdout, "redis after: %s\n", run.rdbState())
			return err
		}
	}
	return run.run(ctx, stdout)
}

// writeTargetSetup writes the journeys of o's scenario for a server of
// its own (--target) and prints the configuration that server needs.
func writeTargetSetup(o benchOpts, stdout io.Writer) error {
	if err := os.MkdirAll(o.writeJourneys, 0o755); err != nil {
		return err
	}
	if err := writeBenchJourneys(o.writeJourneys, o); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "journeys written to %s; start the server with (the bench takes the same WEJOURNEY_WECHAT_* and WEJOURNEY_JOURNEYS_DIR):\n\n", o.writeJourneys)
	fmt.Fprintf(stdout, "WEJOURNEY_JOURNEYS_DIR=%s WEJOURNEY_DEMO_JOURNEYS=off\n", o.writeJourneys)
	fmt.Fprintf(stdout, "WEJOURNEY_WECHAT_APPID=wxbench000000001 WEJOURNEY_WECHAT_APPSECRET=bench-secret WEJOURNEY_WECHAT_TOKEN=bench-token WEJOURNEY_WECHAT_AES_KEY=<43 characters>\n")
	fmt.Fprintf(stdout, "WEJOURNEY_WECHAT_API_BASE=http://%s\n", o.fakeAddr)
	if o.welcomes > 0 {
		fmt.Fprintf(stdout, "WEJOURNEY_WECOM_CORPID=%s WEJOURNEY_WECOM_AGENTID=%s WEJOURNEY_WECOM_SECRET=bench-wecom-secret\n", benchCorpID, benchAgentID)
		fmt.Fprintf(stdout, "WEJOURNEY_WECOM_TOKEN=%s WEJOURNEY_WECOM_AES_KEY=%s WEJOURNEY_WECOM_API_BASE=http://%s\n", benchWeComToken, benchWeComAES, o.fakeWeComAddr)
		fmt.Fprintf(stdout, "WEJOURNEY_API_KEY=%s WEJOURNEY_EVENTS_RATE=0\n", benchAPIKey)
		fmt.Fprintf(stdout, "\nthen: wejourney bench --target URL --welcomes %d --marketing %d --redis-url <the server's WEJOURNEY_REDIS_URL>\n", o.welcomes, o.marketing)
	}
	return nil
}

// writeBenchJourneys writes the journeys of o's scenario into dir.
func writeBenchJourneys(dir string, o benchOpts) error {
	files := map[string]string{"bench.yaml": benchJourney}
	switch {
	case o.steps > 0:
		files = map[string]string{"bench-steps.yaml": stepsJourney}
	case o.welcomes > 0:
		files = map[string]string{"bench-wecom-welcome.yaml": welcomeJourney, "bench-marketing.yaml": marketingJourney}
	}
	if o.preload > 0 {
		files["bench-longwait.yaml"] = preloadJourney
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// benchConfig writes the bench's journeys into dir/journeys and returns
// the configuration of a server that runs them: the bench account
// wxbench000000001 in safe mode with a fresh AES key, its WeChat API calls
// aimed at the fake API at fakeURL. The stores are the defaults' (see
// benchStores).
func benchConfig(dir string, o benchOpts, fakeURL string) (config.Config, error) {
	journeys := filepath.Join(dir, "journeys")
	if err := os.MkdirAll(journeys, 0o755); err != nil {
		return config.Config{}, err
	}
	if err := writeBenchJourneys(journeys, o); err != nil {
		return config.Config{}, err
	}
	cfg := config.Defaults()
	cfg.JourneysDir = journeys
	cfg.WeChatAppID, cfg.WeChatAppSecret, cfg.WeChatToken = "wxbench000000001", "bench-secret", "bench-token"
	cfg.WeChatAESKey = randomAESKey()
	cfg.WeChatAPIBase = fakeURL
	cfg.AdminPassword = "bench"
	if o.steps > 0 {
		// Four customer-service messages within seconds of a follow: more
		// than WeChat's 3 a minute, which would send the fourth nowhere.
		cfg.WeChatAllowanceEvent = "10/1m"
	}
	return cfg, nil
}

// benchClient is the HTTP client of the load generator.
func benchClient(o benchOpts) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: o.concurrency * 2, MaxIdleConnsPerHost: o.concurrency * 2, IdleConnTimeout: time.Minute,
	}}
}

// followRuns are the paced and burst follow-welcome runs and their report,
// against one server (embedded or --target) or several (cluster mode).
type followRuns struct {
	o      benchOpts
	cfg    config.Config
	arr    *arrivals
	sims   []*wxsim.Client // the callbacks go round-robin to these servers
	client *http.Client
	// readRows reads PostgreSQL's rows read so far (ok false: not known).
	readRows func() (rowsRead, bool)
	// rdbState, when set, reads what Redis holds.
	rdbState func() redisState
	// onBurstAck, when set, is called after each acknowledged callback of
	// the burst with how many are acknowledged so far.
	onBurstAck func(acked int)
	// burstNote, when set, returns lines printed after the burst's report.
	burstNote func() string
	// gone, when set, says how many of the openids will never get their
	// message (see follows.outcome).
	gone func(openids []string) int
	// busy, when set, says how many sends the fake WeChat API answered -1.
	busy func() int
	// explainLost, when set, returns lines that say why the openids of
	// the follows without a message got none.
	explainLost func(openids []string) string
}

// header prints the report's first line: what is measured, where, when.
func (r *followRuns) header(stdout io.Writer, desc string) {
	mode := "plaintext"
	if r.sims[0].SafeMode() {
		mode = "safe mode (AES)"
	}
	fmt.Fprintf(stdout, "wejourney bench — %s, %s callbacks, %d CPUs (GOMAXPROCS %d), %s\n",
		desc, mode, runtime.NumCPU(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
}

// watchStores preloads --preload members into db and prints it, prints
// what Redis holds, and returns the readers of PostgreSQL's rows read and
// of Redis's state for the runs' report.
func watchStores(ctx context.Context, db *gorm.DB, rdb redis.UniversalClient, cfg config.Config, o benchOpts, stdout, stderr io.Writer) (func() (rowsRead, bool), func() redisState, error) {
	pre := preloadResult{}
	if o.preload > 0 {
		var err error
		if pre, err = preload(ctx, db, cfg.DefaultAppID(), o.preload, preloadBatch, stderr); err != nil {
			return nil, nil, err
		}
		t0 := time.Now()
		if did, err := analyzeBenchTables(ctx, db); err != nil {
			return nil, nil, err
		} else if did {
			pre.vacuumed = time.Since(t0)
		}
	}
	if pre.members == 0 {
		fmt.Fprintln(stdout, "preload: 0 members (--preload N first creates N members mid-journey)")
	} else {
		fmt.Fprintf(stdout, "preload: %d members mid-journey (bench-longwait, waiting %s) in %s (%.0f members/s); no asynq task enqueued for their waits: the database holds them\n",
			pre.members, preloadWaitText, pre.took.Round(10*time.Millisecond), float64(pre.members)/max(pre.took.Seconds(), 1e-9))
	}
	if pre.vacuumed > 0 {
		fmt.Fprintf(stdout, "  then VACUUM (ANALYZE) of wejourney's tables in %s, as autovacuum would do\n", pre.vacuumed.Round(10*time.Millisecond))
	}
	readRows := func() (rowsRead, bool) { return pgRowsRead(ctx, db) }
	rdbState := func() redisState { return readRedisState(ctx, rdb) }
	fmt.Fprintf(stdout, "redis before: %s\n", rdbState())
	return readRows, rdbState, nil
}

// run runs the paced run, then the burst, then the bare server's burst,
// and prints their report.
func (r *followRuns) run(ctx context.Context, stdout io.Writer) error {
	o, arr, client := r.o, r.arr, r.client
	readRows := r.readRows
	if readRows == nil {
		readRows = func() (rowsRead, bool) { return nil, false }
	}
	// rowsPerFollow prints the rows read per follow since before, on PostgreSQL.
	rowsPerFollow := func(before rowsRead, ok bool, follows int) {
		after, okAfter := readRows()
		if !ok || !okAfter || follows == 0 {
			return
		}
		total, tables := after.since(before, follows)
		fmt.Fprintf(stdout, "  rows read/follow   %8.1f   (pg_stat_user_tables seq_tup_read + idx_tup_fetch per follow: %s)\n", total, tables)
	}
	printLost := func(f *follows, sentAt []time.Time, lost, doubled int) {
		fmt.Fprintf(stdout, "  messages lost %d, doubled %d\n", lost, doubled)
		if lost == 0 || r.explainLost == nil {
			return
		}
		ids := f.missingAcked(arr, sentAt)
		if unacked := lost - len(ids); unacked > 0 {
			fmt.Fprintf(stdout, "  lost, not acknowledged   %d   (their callback failed: WeChat would send it again)\n", unacked)
		}
		if len(ids) > 0 {
			fmt.Fprint(stdout, r.explainLost(ids))
		}
	}

	// Paced run: follows at --rate.
	rowsBefore, rowsOK := readRows()
	paced, err := prepareFollowsOver(r.sims, "obp", o.n)
	if err != nil {
		return err
	}
	res := runLoad(ctx, client, paced.reqs, o.rate, o.concurrency)
	lost, doubled, lat := paced.outcome(ctx, arr, res.sentAt, o.settle, r.gone)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted in the paced run: %w", err)
	}
	fmt.Fprintf(stdout, "\npaced: %d follows at %.0f/s, concurrency %d\n", o.n, o.rate, o.concurrency)
	fmt.Fprintf(stdout, "  callbacks/s        %8.0f   (errors %d)\n", res.throughput(), res.errors)
	fmt.Fprintf(stdout, "  ack                p50 %s  p99 %s  max %s\n", pct(res.acks, 50), pct(res.acks, 99), pct(res.acks, 100))
	fmt.Fprintf(stdout, "  follow → message   p50 %s  p99 %s  max %s\n", pct(lat, 50), pct(lat, 99), pct(lat, 100))
	printLost(paced, res.sentAt, lost, doubled)
	rowsPerFollow(rowsBefore, rowsOK, o.n)

	var burstRate float64
	if o.burst > 0 {
		burst, err := prepareFollowsOver(r.sims, "obb", o.burst)
		if err != nil {
			return err
		}
		rowsBefore, rowsOK := readRows()
		burstStart := time.Now()
		res := runLoadWith(ctx, client, burst.reqs, 0, o.concurrency, r.onBurstAck)
		burstRate = res.throughput()
		drainStart := time.Now()
		lost, doubled, lat := burst.outcome(ctx, arr, res.sentAt, o.settle, r.gone)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted in the burst: %w", err)
		}
		fmt.Fprintf(stdout, "\nburst: %d follows as fast as possible, concurrency %d\n", o.burst, o.concurrency)
		fmt.Fprintf(stdout, "  callbacks/s        %8.0f   (errors %d)\n", burstRate, res.errors)
		fmt.Fprintf(stdout, "  ack                p50 %s  p99 %s  max %s\n", pct(res.acks, 50), pct(res.acks, 99), pct(res.acks, 100))
		fmt.Fprintf(stdout, "  follow → message   p50 %s  p99 %s  max %s   (backlog drained %s after the last callback)\n",
			pct(lat, 50), pct(lat, 99), pct(lat, 100), time.Since(drainStart).Round(10*time.Millisecond))
		printLost(burst, res.sentAt, lost, doubled)
		if delivered, last := burst.delivered(arr); delivered > 0 {
			took := last.Sub(burstStart)
			fmt.Fprintf(stdout, "  drained follows/s  %8.0f   (%d messages delivered ÷ %s from the first burst callback to the last message)\n",
				float64(delivered)/took.Seconds(), delivered, took.Round(10*time.Millisecond))
		}
		rowsPerFollow(rowsBefore, rowsOK, o.burst)
		if r.burstNote != nil {
			fmt.Fprint(stdout, r.burstNote())
		}
	}
	if r.busy != nil && o.failEvery > 0 {
		fmt.Fprintf(stdout, "fake WeChat answered -1 (system busy) to %d sends (every %dth): each was retried, and each follow got its welcome exactly once when lost and doubled are 0\n", r.busy(), o.failEvery)
	}
	if r.rdbState != nil {
		fmt.Fprintf(stdout, "redis after: %s\n", r.rdbState())
	}
	if o.bare && o.burst > 0 {
		bareRate, err := benchBare(ctx, client, r.cfg, o)
		if err != nil {
			return fmt.Errorf("bare server: %w", err)
		}
		mode := "plaintext"
		if r.sims[0].SafeMode() {
			mode = "safe mode (AES)"
		}
		fmt.Fprintf(stdout, "\nbare silenceper callback server (net/http, answers \"success\", stores nothing), %s, same burst:\n", mode)
		fmt.Fprintf(stdout, "  callbacks/s        %8.0f\n", bareRate)
		fmt.Fprintf(stdout, "  wejourney burst / bare = %.2f\n", burstRate/bareRate)
	}
	return nil
}

// follows are prepared callbacks, one new member each.
type follows struct {
	openids []string
	reqs    []wxsim.Prepared
}

func prepareFollows(sim *wxsim.Client, prefix string, n int) (*follows, error) {
	return prepareFollowsOver([]*wxsim.Client{sim}, prefix, n)
}

// prepareFollowsOver prepares n follows, the i-th against sims[i % len(sims)].
func prepareFollowsOver(sims []*wxsim.Client, prefix string, n int) (*follows, error) {
	f := &follows{openids: make([]string, n), reqs: make([]wxsim.Prepared, n)}
	run := randomHex(4)
	for i := range n {
		f.openids[i] = fmt.Sprintf("%s_%s_%d", prefix, run, i)
		p, err := sims[i%len(sims)].Prepared(wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: f.openids[i], Scene: "store_bench"})
		if err != nil {
			return nil, err
		}
		f.reqs[i] = p
	}
	return f, nil
}

// outcome waits up to settle after the last callback (or until ctx is
// done) for one message per follow, then counts the lost and the doubled
// and the follow → message latencies. gone, when set, says how many of
// the follows still without a message never will get one: the wait ends
// when the others have. It is asked only once no message has arrived for
// a second, then after 2, 4, 8, 8, … seconds, so that it reads little.
func (f *follows) outcome(ctx context.Context, arr *arrivals, sentAt []time.Time, settle time.Duration, gone func(openids []string) int) (lost, doubled int, lat []time.Duration) {
	deadline := time.Now().Add(settle)
	lastN, lastArrival, lastGone, goneEvery := arr.n.Load(), time.Now(), time.Time{}, time.Second
	for {
		missing := f.missing(arr)
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		if n := arr.n.Load(); n != lastN {
			lastN, lastArrival = n, time.Now()
		}
		if gone != nil && time.Since(lastArrival) >= time.Second && time.Since(lastGone) >= goneEvery {
			lastGone, goneEvery = time.Now(), min(2*goneEvery, 8*time.Second)
			// A follow whose callback failed has no message coming.
			acked := f.missingAcked(arr, sentAt)
			if gone(acked) == len(acked) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A doubled message would arrive just after the first: look once more.
	time.Sleep(time.Second)
	arr.mu.Lock()
	defer arr.mu.Unlock()
	for i, id := range f.openids {
		ts := arr.at[id]
		switch {
		case len(ts) == 0:
			lost++
		case len(ts) > 1:
			doubled++
		}
		if len(ts) > 0 && !sentAt[i].IsZero() {
			lat = append(lat, ts[0].Sub(sentAt[i]))
		}
	}
	return lost, doubled, lat
}

// missing returns the openids of the follows no message has reached yet.
func (f *follows) missing(arr *arrivals) []string {
	arr.mu.Lock()
	defer arr.mu.Unlock()
	var ids []string
	for _, id := range f.openids {
		if len(arr.at[id]) == 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// missingAcked returns the openids of the follows whose callback was
// acknowledged (sentAt set) and no message has reached yet.
func (f *follows) missingAcked(arr *arrivals, sentAt []time.Time) []string {
	arr.mu.Lock()
	defer arr.mu.Unlock()
	var ids []string
	for i, id := range f.openids {
		if len(arr.at[id]) == 0 && !sentAt[i].IsZero() {
			ids = append(ids, id)
		}
	}
	return ids
}

// delivered counts the follows whose message arrived and when the last
// of those first messages did.
func (f *follows) delivered(arr *arrivals) (n int, last time.Time) {
	arr.mu.Lock()
	defer arr.mu.Unlock()
	for _, id := range f.openids {
		if ts := arr.at[id]; len(ts) > 0 {
			n++
			if ts[0].After(last) {
				last = ts[0]
			}
		}
	}
	return n, last
}

type loadResult struct {
	acks    []time.Duration
	sentAt  []time.Time
	errors  int
	elapsed time.Duration
}

func (r loadResult) throughput() float64 {
	return float64(len(r.acks)) / r.elapsed.Seconds()
}

// runLoad sends reqs with concurrency workers, paced at rate per second
// (open loop: request i is due at start + i/rate) or as fast as possible
// when rate is 0.
func runLoad(ctx context.Context, client *http.Client, reqs []wxsim.Prepared, rate float64, concurrency int) loadResult {
	return runLoadWith(ctx, client, reqs, rate, concurrency, nil)
}

// runLoadWith is runLoad that calls onAck, when set, after each
// acknowledged callback with how many are acknowledged so far.
func runLoadWith(ctx context.Context, client *http.Client, reqs []wxsim.Prepared, rate float64, concurrency int, onAck func(acked int)) loadResult {
	res := loadResult{sentAt: make([]time.Time, len(reqs))}
	var acked atomic.Int64
	acks := make([]time.Duration, len(reqs))
	ok := make([]bool, len(reqs))
	var next atomic.Int64
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				if rate > 0 {
					if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
						time.Sleep(d) // pacing the open-loop schedule
					}
				}
				req, err := reqs[i].NewRequest(ctx)
				if err != nil {
					errs.Add(1)
					continue
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != "success" {
					errs.Add(1)
					continue
				}
				res.sentAt[i], acks[i], ok[i] = t0, time.Since(t0), true
				if n := acked.Add(1); onAck != nil {
					onAck(int(n))
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for i := range acks {
		if ok[i] {
			res.acks = append(res.acks, acks[i])
		}
	}
	res.errors = int(errs.Load())
	return res
}

// benchBare measures a bare silenceper callback server on the same machine:
// the same safe-mode verification and decryption, no storage.
func benchBare(ctx context.Context, client *http.Client, cfg config.Config, o benchOpts) (float64, error) {
	oa := officialaccount.NewOfficialAccount(&oaconfig.Config{AppID: cfg.DefaultAppID(), Token: cfg.DefaultToken(),
		EncodingAESKey: cfg.WeChatAESKey, Cache: cache.NewMemory()})
	mux := http.NewServeMux()
	mux.HandleFunc("/wechat/oa/", func(w http.ResponseWriter, r *http.Request) {
		srv := oa.GetServer(r, w)
		srv.SetMessageHandler(func(*message.MixMessage) *message.Reply { return nil })
		if err := srv.Serve(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if cfg.WeChatAESKey != "" {
			io.WriteString(w, "success") // plaintext mode: silenceper wrote it
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer hs.Close()
	sim, err := wxsim.New(wxsim.Config{Target: "http://" + ln.Addr().String(), AppID: cfg.DefaultAppID(), Token: cfg.DefaultToken(), AESKey: cfg.WeChatAESKey})
	if err != nil {
		return 0, err
	}
	f, err := prepareFollows(sim, "obare", o.burst)
	if err != nil {
		return 0, err
	}
	res := runLoad(ctx, client, f.reqs, 0, o.concurrency)
	if res.errors > 0 {
		return 0, errors.New("the bare server answered errors")
	}
	return res.throughput(), nil
}

// pct returns the p-th percentile of ds, formatted.
func pct(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i].Round(10 * time.Microsecond).String()
}

func randomAESKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)[:43]
}
