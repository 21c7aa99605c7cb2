package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// Cluster mode of `wejourney bench`: --web N `serve --role=web` and
// --workers M `serve --role=worker` processes on one database and one
// Redis, the callbacks spread over the web processes, and with
// --kill-worker the first worker killed -9 in the middle of the burst.

// Bounds of cluster mode's process handling.
const (
	clusterReadyTimeout = 60 * time.Second       // a child's /readyz must answer 200 within this
	clusterReadyPoll    = 100 * time.Millisecond // how often /readyz is asked
	clusterStopTimeout  = 10 * time.Second       // SIGTERM, then SIGKILL after this
	clusterLogTail      = 20                     // lines of a failing child's log printed
	clusterGoneMax      = 1000                   // follows without a message looked up in the database at most, while waiting
	clusterBenchConns   = 4                      // database connections of the bench itself
	// clusterChildConns is the connection pool of each child
	// (WEJOURNEY_DATABASE_MAX_CONNS): 2 web + 2 workers at 20 fit in
	// PostgreSQL's default max_connections of 100.
	clusterChildConns = 20
)

// warnConnections says when PostgreSQL may refuse the children's
// connections: the processes' pools of clusterChildConns, the bench's and the
// connections already open must fit in max_connections, or callbacks are
// refused (503, "too many clients") once the pools fill up.
func warnConnections(ctx context.Context, db *gorm.DB, processes int, stdout io.Writer) {
	if db.Dialector.Name() != "postgres" {
		return
	}
	var maxConns, open int
	if db.WithContext(ctx).Raw("SELECT current_setting('max_connections')::int").Scan(&maxConns).Error != nil ||
		db.WithContext(ctx).Raw("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&open).Error != nil {
		return
	}
	if need := processes*clusterChildConns + clusterBenchConns + open; need > maxConns {
		fmt.Fprintf(stdout, "warning: PostgreSQL max_connections is %d; %d processes × %d connections each, this bench's %d and the %d open now make %d: once the pools fill, connections are refused (\"too many clients\") and so are callbacks (503)\n",
			maxConns, processes, clusterChildConns, clusterBenchConns, open, need)
	}
}

// cluster reports whether o asks for cluster mode.
func (o benchOpts) cluster() bool { return o.web > 0 || o.workers > 0 }

// checkCluster refuses the cluster flags with flags they cannot run with,
// naming the flag.
func (o benchOpts) checkCluster() error {
	switch {
	case o.web < 0:
		return fmt.Errorf("--web: want 0 (off) or more processes, got %d", o.web)
	case o.workers < 0:
		return fmt.Errorf("--workers: want 0 (off) or more processes, got %d", o.workers)
	case !o.cluster() && o.killWorker:
		return errors.New("--kill-worker is for cluster mode: add --web N --workers M")
	case !o.cluster() && o.bin != "":
		return errors.New("--bin is for cluster mode: add --web N --workers M")
	case !o.cluster():
		return nil
	case o.target != "":
		return errors.New("--target: cluster mode (--web, --workers) starts its own servers; drop --target or --web and --workers")
	case o.roleSet || o.role != RoleAll:
		return errors.New("--role: cluster mode gives each process its role (--web N web processes, --workers M workers); drop --role")
	case o.steps > 0:
		return errors.New("--steps: not in cluster mode (--web, --workers) yet; drop one or the other")
	case o.web == 0:
		return errors.New("--web: cluster mode needs at least 1 web process to send the callbacks to")
	case o.workers == 0:
		return errors.New("--workers: cluster mode needs at least 1 worker process to run the journeys")
	case o.killWorker && o.workers < 2:
		return fmt.Errorf("--kill-worker: needs --workers 2 or more, so that a worker is left to finish the work; got %d", o.workers)
	case o.killWorker && o.burst == 0:
		return errors.New("--kill-worker: the worker is killed during the burst; --burst 0 skips it")
	case o.databaseURL == "":
		return errors.New("--database-url: cluster mode (--web, --workers) needs a PostgreSQL or MySQL database its processes share (or WEJOURNEY_DATABASE_URL)")
	case o.redisURL == "":
		return errors.New("--redis-url: cluster mode (--web, --workers) needs a Redis its processes share, an in-process Redis cannot be (or WEJOURNEY_REDIS_URL)")
	}
	dialect, _, err := config.ParseDatabaseURL(o.databaseURL)
	switch {
	case err != nil:
		return fmt.Errorf("--database-url: %w", err)
	case dialect == "sqlite":
		return errors.New("--database-url: cluster mode (--web, --workers) needs PostgreSQL or MySQL: several processes cannot share a SQLite file")
	}
	return nil
}

// clusterChild is one `wejourney serve` process of cluster mode.
type clusterChild struct {
	name    string // "web 1", "worker 2"
	role    string
	addr    string // its HTTP address (a worker serves the probes)
	logPath string // its standard output and error
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has exited
	err     error         // what Wait returned, once exited
	killed  bool          // killed -9 by --kill-worker
}

// running reports whether the process has not exited.
func (c *clusterChild) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// failure describes why the child is not working, with the end of its log.
func (c *clusterChild) failure(why string) error {
	return fmt.Errorf("%s (pid %d, %s): %s; the end of its log %s:\n%s", c.name, c.cmd.Process.Pid, c.addr, why, c.logPath, logTail(c.logPath, clusterLogTail))
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// cluster is the processes of cluster mode.
type cluster struct {
	bin     string
	logDir  string
	env     []string // the environment every child shares, but its address
	web     []*clusterChild
	workers []*clusterChild
}

// children returns every child, the web processes first.
func (cl *cluster) children() []*clusterChild {
	return append(append([]*clusterChild(nil), cl.web...), cl.workers...)
}

// clusterEnv is the environment of the children: this process's, without
// any WEJOURNEY_ variable, plus cfg's.
func clusterEnv(cfg config.Config) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEJOURNEY_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"WEJOURNEY_DATABASE_URL="+cfg.DatabaseURL, "WEJOURNEY_REDIS_URL="+cfg.RedisURL,
		"WEJOURNEY_JOURNEYS_DIR="+cfg.JourneysDir,
		"WEJOURNEY_WECHAT_APPID="+cfg.WeChatAppID, "WEJOURNEY_WECHAT_APPSECRET="+cfg.WeChatAppSecret,
		"WEJOURNEY_WECHAT_TOKEN="+cfg.WeChatToken, "WEJOURNEY_WECHAT_AES_KEY="+cfg.WeChatAESKey,
		"WEJOURNEY_WECHAT_API_BASE="+cfg.WeChatAPIBase, "WEJOURNEY_SECRET_KEY="+cfg.SecretKey,
		"WEJOURNEY_ADMIN_PASSWORD="+cfg.AdminPassword,
		"WEJOURNEY_DATABASE_MAX_CONNS="+strconv.Itoa(clusterChildConns))
}

// start starts `serve --role=role` as the child name, on a free loopback port.
func (cl *cluster) start(name, role string) (*clusterChild, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: find a free port: %w", name, err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &clusterChild{name: name, role: role, addr: addr, exited: make(chan struct{}),
		logPath: filepath.Join(cl.logDir, strings.ReplaceAll(name, " ", "-")+".log")}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.cmd = exec.Command(cl.bin, "serve", "--role="+role)
	c.cmd.Env = append(cl.env, "WEJOURNEY_HTTP_ADDR="+addr)
	c.cmd.Dir = cl.logDir // no wejourney.yaml there
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, cl.bin, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	return c, nil
}

// waitReady polls c's /readyz until it answers 200, c exits, or the deadline.
func (c *clusterChild) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return c.failure(fmt.Sprintf("/readyz did not answer 200 within %s", clusterReadyTimeout))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.exited:
			return c.failure(fmt.Sprintf("exited before it was ready (%v)", c.err))
		case <-time.After(clusterReadyPoll):
		}
	}
}

// startAll starts the web processes and the workers and waits until each
// is ready. The first web process starts alone: it publishes the bench's
// journeys and seeds the account before the others read them.
func (cl *cluster) startAll(ctx context.Context, web, workers int) error {
	var all []*clusterChild
	for i := range web {
		c, err := cl.start(fmt.Sprintf("web %d", i+1), RoleWeb)
		if err != nil {
			return err
		}
		cl.web = append(cl.web, c)
		all = append(all, c)
		if i == 0 {
			if err := c.waitReady(ctx); err != nil {
				return err
			}
		}
	}
	for i := range workers {
		c, err := cl.start(fmt.Sprintf("worker %d", i+1), RoleWorker)
		if err != nil {
			return err
		}
		cl.workers = append(cl.workers, c)
		all = append(all, c)
	}
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, c := range all[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.waitReady(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stop ends every child still running: SIGTERM, then SIGKILL after
// clusterStopTimeout. It returns the children that had exited on their own
// before (but the one --kill-worker killed), as an error.
func (cl *cluster) stop() error {
	var errs []error
	var wg sync.WaitGroup
	for _, c := range cl.children() {
		if !c.running() {
			if !c.killed {
				errs = append(errs, c.failure(fmt.Sprintf("exited during the bench (%v)", c.err)))
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(clusterStopTimeout):
				c.cmd.Process.Kill()
				<-c.exited
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// killAt kills the first worker with SIGKILL, once, when called with at
// least half of total acknowledged, and says so; note then names the
// process layout and the kill for the report.
type killAt struct {
	cl      *cluster
	total   int
	stdout  io.Writer
	once    sync.Once
	mu      sync.Mutex
	acked   int // callbacks acknowledged when the worker was killed; 0: not killed
	at      time.Time
	killErr error
}

// onAck is followRuns.onBurstAck.
func (k *killAt) onAck(acked int) {
	if acked < max(1, k.total/2) {
		return
	}
	k.once.Do(func() {
		w := k.cl.workers[0]
		err := w.cmd.Process.Kill()
		k.mu.Lock()
		k.acked, k.at, k.killErr, w.killed = acked, time.Now(), err, err == nil
		k.mu.Unlock()
		if err != nil {
			fmt.Fprintf(k.stdout, "kill -9 %s (pid %d) failed: %v\n", w.name, w.cmd.Process.Pid, err)
			return
		}
		fmt.Fprintf(k.stdout, "killed -9 %s (pid %d) at %s of %s burst callbacks acknowledged, %s\n",
			w.name, w.cmd.Process.Pid, thousands(acked), thousands(k.total), k.at.UTC().Format("15:04:05.000"))
	})
}

// layout names the processes, and the kill if any.
func (cl *cluster) layout(k *killAt) string {
	s := fmt.Sprintf("%d web + %d worker processes", len(cl.web), len(cl.workers))
	if k == nil {
		return s
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.killErr != nil:
		return s + fmt.Sprintf(", killing worker 1 failed: %v", k.killErr)
	case k.acked == 0:
		return s + ", worker 1 not killed (the burst ended before half of it was acknowledged)"
	}
	return s + fmt.Sprintf(", worker 1 killed -9 at %s of %s callbacks acknowledged", thousands(k.acked), thousands(k.total))
}

// thousands formats n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// runCluster runs the bench in cluster mode: it readies the stores, starts
// o.web web and o.workers worker processes of o.bin (default: this
// executable) on them, runs the paced and burst runs with the callbacks
// spread over the web processes, kills the first worker mid-burst with
// o.killWorker, and stops every process at the end, also on error or
// interrupt.
func runCluster(ctx context.Context, o benchOpts, stdout, stderr io.Writer) (err error) {
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	bin := o.bin
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("--bin: find this executable: %w", err)
		}
	}
	arr := &arrivals{at: map[string][]time.Time{}}
	fake := fakewx.New(fakewx.Config{OnMessage: arr.record, UnionIDs: o.unionIDs, FailEvery: o.failEvery})
	defer fake.Close()

	dir, err := os.MkdirTemp("", "wejourney-cluster")
	if err != nil {
		return err
	}
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Join(dir, "journeys")) // the logs stay
	cfg, err := benchConfig(dir, o, fake.URL)
	if err != nil {
		return err
	}
	stores, err := benchStores(ctx, &cfg, o, stdout) // migrates, and empties with --reset
	if err != nil {
		return err
	}
	dialect, dsn, _ := config.ParseDatabaseURL(cfg.DatabaseURL) // checked by checkCluster
	db, err := model.Open(dialect, dsn)
	if err != nil {
		return fmt.Errorf("--database-url: %w", err)
	}
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.SetMaxOpenConns(clusterBenchConns) // the children need the server's connections
		defer sqlDB.Close()
	}
	warnConnections(ctx, db, o.web+o.workers, stdout)
	redisOpt, err := parseRedisURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("--redis-url: %w", err)
	}
	rdb, ok := redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("--redis-url: unexpected client type")
	}
	defer rdb.Close()

	cl := &cluster{bin: bin, logDir: logDir, env: clusterEnv(cfg)}
	fmt.Fprintf(stdout, "cluster: starting %d × `%s serve --role=web` and %d × `serve --role=worker`; their logs are in %s\n",
		o.web, bin, o.workers, logDir)
	defer func() {
		if stopErr := cl.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	if err := cl.startAll(ctx, o.web, o.workers); err != nil {
		return err
	}
	sims := make([]*wxsim.Client, len(cl.web))
	for i, c := range cl.web {
		if sims[i], err = wxsim.New(wxsim.Config{Target: "http://" + c.addr, AppID: cfg.DefaultAppID(), Token: cfg.DefaultToken(), AESKey: cfg.WeChatAESKey}); err != nil {
			return err
		}
	}
	run := &followRuns{o: o, cfg: cfg, arr: arr, sims: sims, client: benchClient(o), busy: fake.Busy,
		gone: func(ids []string) int {
			if len(ids) > clusterGoneMax {
				return 0 // the backlog is still draining, or much is lost: wait
			}
			n := 0
			for _, st := range deliveryStatuses(ctx, db, cfg.DefaultAppID(), ids) {
				if st == model.DeliveryUnknown {
					n++
				}
			}
			return n
		},
		explainLost: func(ids []string) string {
			return explainLost(deliveryStatuses(ctx, db, cfg.DefaultAppID(), ids), len(ids), o.settle)
		},
	}
	var kill *killAt
	if o.killWorker {
		kill = &killAt{cl: cl, total: o.burst, stdout: stdout}
		run.onBurstAck = kill.onAck
	}
	run.burstNote = func() string { return "  processes          " + cl.layout(kill) + "\n" }
	addrs := func(cs []*clusterChild) string {
		var b bytes.Buffer
		for i, c := range cs {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(c.addr)
		}
		return b.String()
	}
	run.header(stdout, fmt.Sprintf("cluster of %s (web %s; worker probes %s) on %s, callbacks round-robin over the web processes, load generator and fake WeChat API in this process",
		cl.layout(nil), addrs(cl.web), addrs(cl.workers), stores))
	if run.readRows, run.rdbState, err = watchStores(ctx, db, rdb, cfg, o, stdout, stderr); err != nil {
		return err
	}
	if err := run.run(ctx, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cluster logs: %s\n", logDir)
	return nil
}

// deliveryStatuses returns the status of the welcome delivery of each
// follower of openids (of the account appID) that has one, the latest
// should one have several. Two index lookups per follower (the identity by
// primary key, then the member's deliveries): a join was planned as a walk
// down all deliveries, which showed in the rows read per follow.
func deliveryStatuses(ctx context.Context, db *gorm.DB, appID string, openids []string) map[string]string {
	st := map[string]string{}
	for _, id := range openids {
		var member []int64
		if err := db.WithContext(ctx).Model(&model.MemberIdentity{}).
			Where("kind = ? AND value = ?", model.IdentityOpenID, appID+"/"+id).Limit(1).Pluck("member_id", &member).Error; err != nil {
			return st
		}
		if len(member) == 0 {
			continue
		}
		var status []string
		if err := db.WithContext(ctx).Model(&model.Delivery{}).Where("member_id = ?", member[0]).
			Order("id DESC").Limit(1).Pluck("status", &status).Error; err != nil {
			return st
		}
		if len(status) == 1 {
			st[id] = status[0]
		}
	}
	return st
}

// explainLost says, for the lost follows whose callback was acknowledged,
// what became of their message: recorded unknown (a worker died while
// sending it: never re-sent, at most one message per step), another
// status, or no delivery yet.
func explainLost(statuses map[string]string, lost int, settle time.Duration) string {
	by := map[string]int{}
	for _, st := range statuses {
		by[st]++
	}
	none := lost - len(statuses)
	var b strings.Builder
	if n := by[model.DeliveryUnknown]; n > 0 {
		fmt.Fprintf(&b, "  lost, delivery unknown   %d   (a worker died while it sent them; never re-sent: at most one message per step)\n", n)
	}
	var others []string
	for st, n := range by {
		if st != model.DeliveryUnknown {
			others = append(others, fmt.Sprintf("%s %d", st, n))
		}
	}
	slices.Sort(others)
	if len(others) > 0 {
		fmt.Fprintf(&b, "  lost, delivery other     %s\n", strings.Join(others, ", "))
	}
	if none > 0 {
		fmt.Fprintf(&b, "  lost, no delivery        %d   (still arriving? raise --settle, now %s: a killed worker's steps are taken over after the 5 s lease, unrouted events after 1 min while the queue has a backlog)\n", none, settle)
	}
	return b.String()
}
