package journey_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// The real worker path with a worker killed mid-step. A rig is what a
// deployment runs: two worker processes, each an engine on its own database
// connections with its own asynq server taking the engine's tasks, and a
// sweeper process (RunSweeper: overdue visits, schedules, segments), sharing
// one database and one Redis; events come in through an Ingestor that
// enqueues their route tasks. Nothing is run by hand (no h.drain, no
// h.runStep): the test only ingests events, calls lifecycle actions and
// moves the simulated clock, then polls until the workers are done. The
// database is SQLite, or PostgreSQL with WEJOURNEY_TEST_DATABASE_URL; Redis
// is in-process, or the real one of WEJOURNEY_TEST_REDIS_URL.
//
// asynq runs tasks on the wall clock, the engines on the simulated one: a
// step task due days ahead (simulated) sits in asynq's scheduled set, and
// once the simulated clock passes its due time the sweeper finds the visit
// overdue and has asynq run its task now, as it does after an outage.
//
// One step of each case kills the worker running it (a send: the killAt-th
// message handed to a sender; or a die step): its database connections go
// down, its context ends (no lease renewal, no claim release) and its
// asynq server shuts down, leaving things as a process killed by the OOM
// killer would: the visit running under a lease that has not run out, and
// for a send the delivery row sending, the provider holding the message
// (or not, with killBefore). Then the lease runs out on the simulated
// clock and the sweeper and the surviving worker finish the step.

// rigIndexTTL is how soon the processes see a journey paused or resumed
// by another (Config.IndexTTL).
const rigIndexTTL = 20 * time.Millisecond

// rigDBs counts the PostgreSQL databases the rigs create.
var rigDBs atomic.Int64

// realRedis serialises the rigs on the real Redis of
// WEJOURNEY_TEST_REDIS_URL: the engine's queue names are fixed, so two rigs
// on one Redis database would take each other's tasks.
var realRedis sync.Mutex

// rig is the processes of one case; its harness is the test's own view of
// the database (and the sweeper's engine, for publishing and lifecycle
// actions).
type rig struct {
	*harness
	workers []*rigWorker

	mu         sync.Mutex
	attempts   int  // messages handed to a sender, by any worker
	killAt     int  // the attempt that kills its worker (1-based; 0: none)
	killBefore bool // it dies before the request leaves, not after the provider took it
	killed     chan struct{}
	victim     string
	stepKill   bool // a die step killed the worker (no message in flight)
}

// rigWorker is one worker process.
type rigWorker struct {
	name   string
	e      *journey.Engine
	srv    *asynq.Server
	db     *outage
	cancel context.CancelFunc
	stop   sync.Once
}

func (w *rigWorker) shutdown() { w.stop.Do(w.srv.Shutdown) }

// die kills the worker where it stands: nothing it does from now on
// reaches the database, and it takes no more tasks.
func (w *rigWorker) die() {
	w.db.down.Store(true)
	w.cancel()
	go w.shutdown()
}

// dieKind is the rig's step kind `die: {}`: the first visit of it to run
// kills the worker running it, mid-step, before the step has done anything
// (no message in flight); a later run passes on to next.
type dieKind struct {
	r *rig
	w *rigWorker // nil: the sweeper process, which runs no step
}

type dieBody struct{ dieKind }

func (dieKind) Name() string { return "die" }

func (k dieKind) Compile(n *yaml.Node, ck *journey.Check) journey.StepBody {
	var v struct{}
	ck.Decode(n, &v)
	return &dieBody{k}
}

func (*dieBody) Waits() (time.Duration, bool) { return 0, false }
func (*dieBody) Refs() []journey.Ref          { return nil }
func (b *dieBody) Run(run *journey.Run) (journey.Result, error) {
	r := b.r
	if b.w == nil {
		r.t.Errorf("the sweeper process ran step %s; only workers run steps", run.Step.ID)
		return journey.Result{}, errors.New("test: not a worker")
	}
	r.mu.Lock()
	first := !r.stepKill
	if first {
		r.stepKill, r.victim = true, b.w.name
	}
	r.mu.Unlock()
	if !first {
		return journey.Result{Outcome: "survived", Next: run.Step.Next}, nil
	}
	b.w.die()
	close(r.killed)
	return journey.Result{}, errors.New("test: the worker died mid-step")
}

// rigDatabase returns a function opening a new connection pool (as a new
// process does) to one fresh migrated database: SQLite, or a new database
// on the PostgreSQL server of WEJOURNEY_TEST_DATABASE_URL.
func rigDatabase(t *testing.T) func() *gorm.DB {
	t.Helper()
	base := os.Getenv("WEJOURNEY_TEST_DATABASE_URL")
	dialect, dsn := "sqlite", filepath.Join(t.TempDir(), "k.db")
	if strings.HasPrefix(base, "postgres") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("wj_killed_%d_%d", time.Now().UnixNano(), rigDBs.Add(1))
		admin, err := model.Open("postgres", base)
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
			t.Fatalf("create database: %v", err)
		}
		t.Cleanup(func() { // runs after every pool below is closed
			admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			closeGorm(admin)
		})
		u.Path = "/" + name
		dialect, dsn = "postgres", u.String()
	}
	migrated := false
	return func() *gorm.DB {
		t.Helper()
		db, err := model.Open(dialect, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeGorm(db) })
		if !migrated {
			if err := model.Migrate(db); err != nil {
				t.Fatal(err)
			}
			migrated = true
		}
		return db
	}
}

// rigRedis returns the Redis of the rig: the real one of
// WEJOURNEY_TEST_REDIS_URL, in the database after its own (go test runs
// packages side by side, and cmd/wejourney's tests flush that one),
// flushed; or an in-process one.
func rigRedis(t *testing.T) asynq.RedisConnOpt {
	t.Helper()
	raw := os.Getenv("WEJOURNEY_TEST_REDIS_URL")
	if raw == "" {
		return asynq.RedisClientOpt{Addr: miniredis.RunT(t).Addr()}
	}
	parsed, err := asynq.ParseRedisURI(raw)
	if err != nil {
		t.Fatal(err)
	}
	opt, ok := parsed.(asynq.RedisClientOpt)
	if !ok {
		t.Fatalf("WEJOURNEY_TEST_REDIS_URL %s: want one Redis server (redis://host:port/db)", raw)
	}
	opt.DB = (opt.DB + 1) % 16
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	if err := rdb.FlushDB(t.Context()).Err(); err != nil {
		t.Fatalf("flush %s: %v", raw, err)
	}
	return opt
}

// newRig publishes the journeys and starts the processes.
func newRig(t *testing.T, journeys ...string) *rig {
	t.Helper()
	open := rigDatabase(t)
	opt := rigRedis(t)
	client, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { client.Close(); insp.Close() })
	db := open()
	slots := 1 // as the app configures SQLite
	if db.Dialector.Name() != "sqlite" {
		slots = 0
	}
	logger := testLogger(t)
	clk := clock.NewSimulated(time.Now().UTC().Truncate(time.Microsecond))
	r := &rig{killed: make(chan struct{})}
	config := func(db *gorm.DB, senders *channels.Registry, w *rigWorker, base context.Context) journey.Config {
		return journey.Config{DB: db, Queue: client, Inspector: insp, Senders: senders, Logger: logger,
			Clock: clk, SweepGrace: time.Millisecond, IndexTTL: rigIndexTTL, DBSlots: slots, BaseContext: base,
			StepKinds: []journey.StepKind{dieKind{r, w}}}
	}
	// The sweeper process sends nothing: every message goes out on a worker.
	sweeper := journey.New(config(open(), senderThrough(func(_ context.Context, msg channels.Message) (channels.Result, error) {
		t.Errorf("the sweeper process sent a %s message; only workers send", msg.Channel)
		return channels.Result{}, channels.ErrPermanent
	}), nil, t.Context()))
	// An enqueue slower than the default 250 ms (the machine busy with
	// the parallel cases) would leave the event to the sweeper, which routes
	// it once it is SweepGrace old by the clock: the simulated clock, which
	// stands still while the test waits.
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db, Queue: client, Logger: logger, Clock: clk,
		EnqueueTimeout: 10 * time.Second})
	t.Cleanup(ing.Close)
	r.harness = &harness{t: t, ctx: t.Context(), db: db, e: sweeper, ing: ing, rec: &sendRecorder{}, clk: clk, q: client, insp: insp}
	for _, src := range journeys {
		r.publish(src)
	}
	for i := range 2 {
		w := &rigWorker{name: fmt.Sprintf("worker-%d", i+1)}
		wdb := open()
		w.db = newOutage(t, wdb)
		base, cancel := context.WithCancel(t.Context())
		w.cancel = cancel
		w.e = journey.New(config(wdb, r.senderOf(w), w, base))
		w.srv = asynq.NewServer(opt, asynq.Config{
			Concurrency:              4,
			Queues:                   journey.Queues(),
			StrictPriority:           true,
			TaskCheckInterval:        20 * time.Millisecond,
			DelayedTaskCheckInterval: 50 * time.Millisecond,
			RetryDelayFunc:           journey.RetryDelay,
			Logger:                   quietAsynq{},
			LogLevel:                 asynq.FatalLevel,
			ShutdownTimeout:          time.Second,
		})
		mux := asynq.NewServeMux()
		w.e.Register(mux)
		if err := w.srv.Start(mux); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.shutdown)
		r.workers = append(r.workers, w)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sweeper.RunSweeper(sctx, 20*time.Millisecond)
	}()
	t.Cleanup(func() { stop(); <-done })
	return r
}

// publish parses (knowing the die step) and publishes a journey.
func (r *rig) publish(src string) {
	r.t.Helper()
	c, err := journey.Parse("test.yaml", []byte(src), journey.WithStepKinds(dieKind{r, nil}))
	if err != nil {
		r.t.Fatalf("Parse: %v", err)
	}
	if _, err := r.e.Publish(r.ctx, c, "test"); err != nil {
		r.t.Fatalf("Publish: %v", err)
	}
}

// senderOf is worker w's connection to the channels: the recorder, except
// for the attempt that kills w.
func (r *rig) senderOf(w *rigWorker) *channels.Registry {
	rec := r.rec.send()
	return senderThrough(func(ctx context.Context, msg channels.Message) (channels.Result, error) {
		r.mu.Lock()
		r.attempts++
		kill := r.attempts == r.killAt
		if kill {
			r.victim = w.name
		}
		r.mu.Unlock()
		if !kill {
			return rec(ctx, msg)
		}
		defer close(r.killed)
		if r.killBefore {
			w.die()
			return channels.Result{}, errors.New("test: the worker died before its request left")
		}
		res, err := rec(ctx, msg) // the provider has it
		w.die()
		return res, err
	})
}

// busy says what the workers still have to do, "" when nothing: a task
// pending, running or retrying, an event not routed, or (withVisits) a
// visit running or due by the simulated clock, except the held visits of
// paused journeys. A visit is due once the sweeper finds it overdue (its
// SweepGrace, a millisecond, past its due time): asynq holds its task for
// the wall clock.
func (r *rig) busy(withVisits bool) string {
	queues, err := r.insp.Queues()
	if err != nil {
		return err.Error()
	}
	for _, q := range queues {
		info, err := r.insp.GetQueueInfo(q)
		if err != nil {
			return err.Error()
		}
		if n := info.Pending + info.Active + info.Retry; n > 0 {
			return fmt.Sprintf("queue %s: %d pending, %d active, %d retrying", q, info.Pending, info.Active, info.Retry)
		}
	}
	var n int64
	if err := r.db.Model(&model.Event{}).Where("routed_at IS NULL").Count(&n).Error; err != nil {
		return err.Error()
	}
	if n > 0 {
		return fmt.Sprintf("%d events not routed", n)
	}
	if !withVisits {
		return ""
	}
	paused := r.db.Model(&model.Journey{}).Select("id").Where("status = ?", model.JourneyPaused)
	var vs []model.StepVisit
	if err := r.db.Where("journey_id NOT IN (?) AND (status = ? OR (status IN ? AND due_at <= ?))", paused,
		model.VisitRunning, []string{model.VisitScheduled, model.VisitWaiting}, r.clk.Now().UTC().Add(-time.Millisecond)).Find(&vs).Error; err != nil {
		return err.Error()
	}
	if len(vs) > 0 {
		return fmt.Sprintf("visit of step %s is %s (due %v, lease %v; now %v)", vs[0].StepID, vs[0].Status, vs[0].DueAt, vs[0].LeaseUntil, r.clk.Now())
	}
	return ""
}

// waitCalm polls until busy(withVisits) says nothing calm times in a row,
// 20 ms apart, failing after 30 s.
func (r *rig) waitCalm(withVisits bool, calm int) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < calm; {
		why := r.busy(withVisits)
		if why == "" {
			n++
		} else {
			n = 0
			if time.Now().After(deadline) {
				r.t.Fatalf("the workers are not done 30 s on: %s", why)
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the workers
	}
}

// settle waits until the workers did everything due by the simulated clock.
func (r *rig) settle() {
	r.t.Helper()
	r.waitCalm(true, 3)
}

// at moves the simulated clock to t and waits for the workers.
func (r *rig) at(t time.Time) {
	r.t.Helper()
	r.clk.Set(t)
	r.settle()
}

// after moves the simulated clock on by d and waits for the workers.
func (r *rig) after(d time.Duration) {
	r.t.Helper()
	r.at(r.clk.Now().Add(d))
}

// event ingests an event (its route task is enqueued by the ingestor) and
// waits for the workers.
func (r *rig) event(typ, source, openid string, props map[string]any) {
	r.t.Helper()
	r.ingest(&model.Event{Type: typ, Source: source, Member: model.MemberRef{AppID: testAppID, OpenID: openid}, Props: props})
	r.settle()
}

// killedAt moves the clock to a second after t, when a step due at t has
// run and killed its worker, and recovers it.
func (r *rig) killedAt(t time.Time) {
	r.t.Helper()
	r.clk.Set(t.Add(time.Second))
	r.recoverKilled()
}

// deadVisit waits for the kill and checks what the dead worker left: one
// visit running under a lease that has not run out, its delivery row
// sending, the message taken by the provider (or not, with killBefore).
func (r *rig) deadVisit() (model.StepVisit, model.Delivery) {
	r.t.Helper()
	select {
	case <-r.killed:
	case <-time.After(30 * time.Second):
		r.mu.Lock()
		defer r.mu.Unlock()
		r.t.Fatalf("no worker died in 30 s: %d messages attempted, the kill is at %d", r.attempts, r.killAt)
	}
	r.waitCalm(false, 3)
	var running []model.StepVisit
	if err := r.db.Where("status = ?", model.VisitRunning).Find(&running).Error; err != nil {
		r.t.Fatal(err)
	}
	if len(running) != 1 {
		r.t.Fatalf("%d visits running after %s died; want its one", len(running), r.victim)
	}
	v := running[0]
	now := r.clk.Now()
	if v.LeaseUntil == nil || !v.LeaseUntil.After(now) {
		r.t.Fatalf("visit of %s left running by %s has lease %v at %v; want its lease not run out", v.StepID, r.victim, v.LeaseUntil, now)
	}
	var d model.Delivery
	if r.stepKill {
		if n := r.count(&model.Delivery{}); n != int64(r.taken()) {
			r.t.Fatalf("%d deliveries when %s died in a step that sends nothing; want %d", n, r.victim, r.taken())
		}
		return v, d
	}
	if err := r.db.Where("step_visit_id = ?", v.ID).First(&d).Error; err != nil {
		r.t.Fatalf("delivery of the killed step: %v", err)
	}
	if d.Status != model.DeliverySending {
		r.t.Fatalf("delivery of the killed step is %s; want sending", d.Status)
	}
	if n, want := len(r.rec.messages()), r.taken(); n != want {
		r.t.Fatalf("%d messages taken by the provider when %s died; want %d", n, r.victim, want)
	}
	return v, d
}

// taken is how many messages the provider had when the worker died.
func (r *rig) taken() int {
	if r.stepKill {
		return r.attempts
	}
	if r.killBefore {
		return r.killAt - 1
	}
	return r.killAt
}

// recoverKilled waits for the kill (deadVisit), checks that nobody takes
// the step over while its lease holds, then lets the lease run out on the
// simulated clock and waits for the sweeper and the surviving worker to
// finish the step: claimed once more, the message not doubled.
func (r *rig) recoverKilled() {
	r.t.Helper()
	v, d := r.deadVisit()
	// Sweeps while the lease holds: the step is not taken over. (A negative
	// check: several sweeper rounds run during the calm.)
	r.clk.Set(v.LeaseUntil.Add(-time.Millisecond))
	r.waitCalm(false, 5)
	r.checkHeld(v)
	r.clk.Set(v.LeaseUntil.Add(time.Millisecond))
	r.settle()
	r.checkRecovered(v, d)
}

// checkHeld checks that the killed visit v is still running, not claimed again.
func (r *rig) checkHeld(v model.StepVisit) {
	r.t.Helper()
	var still model.StepVisit
	if err := r.db.First(&still, v.ID).Error; err != nil {
		r.t.Fatal(err)
	}
	if still.Status != model.VisitRunning || still.Attempts != v.Attempts {
		r.t.Fatalf("the killed step went from running (attempt %d) to %s (attempt %d); want left as it was", v.Attempts, still.Status, still.Attempts)
	}
	if n, want := len(r.rec.messages()), r.taken(); n != want {
		r.t.Fatalf("%d messages while the killed step is held; want %d", n, want)
	}
}

// checkRecovered checks that the killed visit v, with delivery d, was
// claimed once more and settled: its delivery no longer sending, its
// message sent once (with killBefore: once, now, under the crashed
// delivery's idempotency key).
func (r *rig) checkRecovered(v model.StepVisit, d model.Delivery) {
	r.t.Helper()
	var got model.StepVisit
	if err := r.db.First(&got, v.ID).Error; err != nil {
		r.t.Fatal(err)
	}
	if got.Attempts != v.Attempts+1 {
		r.t.Errorf("the killed step was claimed %d more times after its lease ran out; want once", got.Attempts-v.Attempts)
	}
	if got.Status != model.VisitDone {
		r.t.Errorf("the killed step is %s after its lease ran out; want done", got.Status)
	}
	if r.stepKill {
		return // no message was in flight
	}
	if err := r.db.First(&d, d.ID).Error; err != nil {
		r.t.Fatal(err)
	}
	if d.Status == model.DeliverySending {
		r.t.Errorf("the killed step's delivery is still sending after its lease ran out")
	}
	msgs := r.rec.messages()
	if len(msgs) != r.killAt {
		r.t.Errorf("%d messages once the killed step was recovered; want %d", len(msgs), r.killAt)
	}
	if r.killBefore && len(msgs) >= r.killAt {
		if m := msgs[r.killAt-1]; m.DeliveryID != d.ID || m.IdempotencyKey != fmt.Sprintf("wj-%d", d.ID) {
			r.t.Errorf("re-send used delivery %d key %q; want the crashed delivery %d", m.DeliveryID, m.IdempotencyKey, d.ID)
		}
	}
}

// enroll ingests the journey.enroll event of an operator enrolling openid
// in the journey with key, and waits for the workers.
func (r *rig) enroll(openid, key string) {
	r.t.Helper()
	r.event(events.JourneyEnroll, events.Engine{}.Name(), openid, map[string]any{"journey": key, "by": "api"})
}

// nextChina returns the first time at hh:mm China time after now.
func nextChina(now time.Time, hh, mm int) time.Time {
	l := now.In(beijing)
	t := time.Date(l.Year(), l.Month(), l.Day(), hh, mm, 0, 0, beijing)
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t
}

// messageSummary is what a test compares of a message: channel and text
// (or template id).
func messageSummary(m channels.Message) string {
	return m.Channel + ":" + m.Text + m.TemplateID
}

func TestKilledWorkerMidStep(t *testing.T) {
	t.Parallel()
	const (
		wechat = "wechat"
		api    = "api"
		day    = 24 * time.Hour
	)
	tests := []struct {
		name       string
		journeys   []string
		killAt     int  // the message attempt that kills its worker
		killBefore bool // before the provider takes it
		run        func(t *testing.T, r *rig)

		wantMessages    []string
		wantEnrollments []enrollment
		wantVisits      []visit
	}{
		{
			name: "wait until 09:00",
			journeys: []string{`
key: morning
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: { until: "09:00" }, next: hello }
  - { id: hello, send: { channel: wechat.text, text: good morning } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				due := nextChina(r.clk.Now(), 9, 0)
				r.event("wechat.subscribe", wechat, "o1", nil)
				if v := r.visitOf("pause"); v.Status != model.VisitWaiting || !v.DueAt.Equal(due) {
					t.Fatalf("wait is %s due %v; want waiting until %v", v.Status, v.DueAt, due)
				}
				r.at(due.Add(-time.Minute))
				if n := len(r.rec.messages()); n != 0 {
					t.Fatalf("%d messages a minute before 09:00; want none", n)
				}
				r.killedAt(due)
			},
			wantMessages:    []string{"wechat.text:good morning"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantVisits:      []visit{{"pause", model.VisitDone, "waited"}, {"hello", model.VisitDone, "unknown"}},
		},
		{
			name: "wait until_attribute, 3 days before at 10:00",
			journeys: []string{`
key: renewal
trigger: { event: member.updated, where: 'event.renewal_date != nil' }
steps:
  - { id: remind, wait: { until_attribute: renewal_date, offset: -3d, at: "10:00" }, next: notice }
  - { id: notice, send: { channel: wechat.text, text: renew soon } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				renews := r.clk.Now().In(beijing).AddDate(0, 0, 10)
				due := time.Date(renews.Year(), renews.Month(), renews.Day()-3, 10, 0, 0, 0, beijing)
				r.event("member.updated", api, "o1", map[string]any{"renewal_date": renews.Format(time.DateOnly)})
				if v := r.visitOf("remind"); v.Status != model.VisitWaiting || !v.DueAt.Equal(due) {
					t.Fatalf("wait is %s due %v; want waiting until %v", v.Status, v.DueAt, due)
				}
				r.at(due.Add(-time.Minute))
				if n := len(r.rec.messages()); n != 0 {
					t.Fatalf("%d messages a minute before the reminder is due; want none", n)
				}
				r.killedAt(due)
			},
			wantMessages:    []string{"wechat.text:renew soon"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "notice", journey.ReasonCompleted}},
			wantVisits:      []visit{{"remind", model.VisitDone, "waited"}, {"notice", model.VisitDone, "unknown"}},
		},
		{
			name: "wait_for with match: another cart's order first",
			journeys: []string{`
key: cart
trigger: { event: cart.abandoned }
steps:
  - { id: wait_order, wait_for: { event: order.paid, match: cart_id, timeout: 1d }, next: bought, on_timeout: nudge }
  - { id: bought, send: { channel: wechat.text, text: thanks } }
  - { id: nudge, send: { channel: wechat.text, text: come back } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.event("cart.abandoned", api, "o1", map[string]any{"cart_id": "c1"})
				r.after(2 * time.Hour)
				r.event("order.paid", api, "o1", map[string]any{"cart_id": "c2"})
				if v := r.visitOf("wait_order"); v.Status != model.VisitWaiting {
					t.Fatalf("after an order of another cart the wait is %s; want waiting", v.Status)
				}
				r.after(2 * time.Hour)
				r.ingest(&model.Event{Type: "order.paid", Source: api, Member: model.MemberRef{AppID: testAppID, OpenID: "o1"},
					Props: map[string]any{"cart_id": "c1"}})
				r.recoverKilled()
				r.after(2 * day) // the timeout is long past: no nudge
			},
			wantMessages:    []string{"wechat.text:thanks"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "bought", journey.ReasonCompleted}},
			wantVisits:      []visit{{"wait_order", model.VisitDone, "matched"}, {"bought", model.VisitDone, "unknown"}},
		},
		{
			name: "schedule: a birthday each year, across the new year",
			journeys: []string{`
key: birthday
trigger: { schedule: { attribute: birthday, at: "09:00", every: year } }
steps:
  - { id: gift, send: { channel: wechat.text, text: happy birthday } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.addMember("o1", map[string]any{"birthday": "1990-12-31"})
				y := r.clk.Now().In(beijing).Year()
				first := time.Date(y, 12, 31, 9, 0, 0, 0, beijing)
				if !first.After(r.clk.Now()) {
					first = first.AddDate(1, 0, 0)
				}
				r.at(first.Add(-time.Minute))
				if n := len(r.enrollments()); n != 0 {
					t.Fatalf("%d enrollments at 08:59 on the birthday; want none", n)
				}
				r.killedAt(first)
				for _, at := range []time.Time{
					first.Add(8 * time.Hour),                 // the same day
					first.AddDate(0, 0, 1),                   // 1 January, the next year
					first.AddDate(1, 0, 0).Add(-time.Minute), // the next birthday, 08:59
				} {
					r.at(at)
					if n := len(r.enrollments()); n != 1 {
						t.Fatalf("%d enrollments at %v; want the one of the first birthday", n, at.In(beijing))
					}
				}
				r.at(first.AddDate(1, 0, 0))
				r.at(first.AddDate(1, 0, 0).Add(8 * time.Hour))
			},
			wantMessages: []string{"wechat.text:happy birthday", "wechat.text:happy birthday"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "gift", journey.ReasonCompleted},
				{"o1", model.EnrollmentCompleted, "gift", journey.ReasonCompleted}},
			wantVisits: []visit{{"gift", model.VisitDone, "unknown"}, {"gift", model.VisitDone, "sent"}},
		},
		{
			name: "segment: the member updated to match",
			journeys: []string{`
key: big-cart
trigger: { segment: 'member.attrs.cart_value > 500', every: 1h }
steps:
  - { id: nudge, send: { channel: wechat.text, text: your cart } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.event("member.updated", api, "o1", map[string]any{"cart_value": 100})
				r.after(time.Hour + time.Minute)
				if n := len(r.enrollments()); n != 0 {
					t.Fatalf("%d enrollments with a small cart; want none", n)
				}
				r.event("member.updated", api, "o1", map[string]any{"cart_value": 800})
				r.clk.Advance(time.Hour + time.Minute)
				r.recoverKilled()
				r.event("member.updated", api, "o1", map[string]any{"cart_value": 900}) // still in the segment
				r.after(time.Hour + time.Minute)
				r.after(time.Hour + time.Minute)
			},
			wantMessages:    []string{"wechat.text:your cart"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "nudge", journey.ReasonCompleted}},
			wantVisits:      []visit{{"nudge", model.VisitDone, "unknown"}},
		},
		{
			// The template channel dedupes by the idempotency key: the
			// message the dead worker never handed over is sent on recovery.
			name: "manual enrollment, killed before the provider took the message",
			journeys: []string{`
key: vip-care
trigger: { event: order.paid, where: 'event.amount > 10000' }
entry: { once: true }
steps:
  - { id: hello, send: { channel: wechat.template, template_id: T_VIP } }
`},
			killAt:     1,
			killBefore: true,
			run: func(t *testing.T, r *rig) {
				r.ingest(&model.Event{Type: events.JourneyEnroll, Source: events.Engine{}.Name(),
					Member: model.MemberRef{AppID: testAppID, OpenID: "o1"}, Props: map[string]any{"journey": "vip-care", "by": "api"}})
				r.recoverKilled()
				r.after(day)
				r.enroll("o1", "vip-care") // once: not again
				r.event("order.paid", api, "o1", map[string]any{"amount": 50})
			},
			wantMessages:    []string{"wechat.template:T_VIP"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantVisits:      []visit{{"hello", model.VisitDone, "sent"}},
		},
		{
			name: "goal event mid-wait",
			journeys: []string{`
key: goal
trigger: { event: wechat.subscribe }
goal: { event: order.paid, where: 'event.amount > 0' }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: pause }
  - { id: pause, wait: 3d, next: later }
  - { id: later, send: { channel: wechat.text, text: still there } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.ingest(wechatEvent("wechat.subscribe", "o1", nil))
				r.recoverKilled()
				r.after(day)
				r.event("order.paid", api, "o1", map[string]any{"amount": 0}) // no goal
				r.event("order.paid", api, "o1", map[string]any{"amount": 99})
				r.after(3 * day)
			},
			wantMessages:    []string{"wechat.text:hi"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentGoal, "pause", "goal:order.paid"}},
			wantVisits:      []visit{{"hello", model.VisitDone, "unknown"}, {"pause", model.VisitCancelled, "goal:order.paid"}},
		},
		{
			name: "exit expression",
			journeys: []string{`
key: leave
trigger: { event: wechat.subscribe }
exit:
  - when: 'member.attrs.vip == true'
steps:
  - { id: pause, wait: 1d, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi }, next: pause2 }
  - { id: pause2, wait: 2d, next: bye }
  - { id: bye, send: { channel: wechat.text, text: bye } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.event("wechat.subscribe", wechat, "o1", nil)
				r.killedAt(r.clk.Now().Add(day))
				r.after(day)
				r.event("member.updated", api, "o1", map[string]any{"vip": false})
				r.event("member.updated", api, "o1", map[string]any{"vip": true})
				r.after(3 * day)
			},
			wantMessages:    []string{"wechat.text:hi"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentExited, "pause2", "exit:when"}},
			wantVisits: []visit{{"pause", model.VisitDone, "waited"}, {"hello", model.VisitDone, "unknown"},
				{"pause2", model.VisitCancelled, "exit:when"}},
		},
		{
			name: "exit event with where, the first reminder killed",
			journeys: []string{`
key: cart
trigger: { event: cart.abandoned }
exit:
  - { event: order.paid, where: 'event.amount > 0' }
steps:
  - { id: remind, send: { channel: wechat.text, text: remind }, next: pause }
  - { id: pause, wait: 1d, next: coupon }
  - { id: coupon, send: { channel: wechat.text, text: coupon } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.ingest(&model.Event{Type: "cart.abandoned", Source: api, Member: model.MemberRef{AppID: testAppID, OpenID: "o1"}})
				r.recoverKilled()
				r.after(time.Hour)
				r.event("order.paid", api, "o1", map[string]any{"amount": 0}) // nothing paid: stays
				r.event("order.paid", api, "o1", map[string]any{"amount": 99})
				r.after(2 * day)
			},
			wantMessages:    []string{"wechat.text:remind"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentExited, "pause", "exit:order.paid"}},
			wantVisits:      []visit{{"remind", model.VisitDone, "unknown"}, {"pause", model.VisitCancelled, "exit:order.paid"}},
		},
		{
			name: "entry once",
			journeys: []string{`
key: once
trigger: { event: wechat.subscribe }
entry: { once: true }
steps:
  - { id: hello, send: { channel: wechat.text, text: once } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.ingest(wechatEvent("wechat.subscribe", "o1", nil))
				r.recoverKilled()
				r.after(day)
				r.event("wechat.subscribe", wechat, "o1", nil) // once is once
				r.after(time.Minute)
			},
			wantMessages:    []string{"wechat.text:once"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantVisits:      []visit{{"hello", model.VisitDone, "unknown"}},
		},
		{
			name: "entry cooldown",
			journeys: []string{`
key: cool
trigger: { event: wechat.subscribe }
entry: { cooldown: 24h }
steps:
  - { id: hi, send: { channel: wechat.text, text: cool } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.ingest(wechatEvent("wechat.subscribe", "o1", nil))
				r.recoverKilled()
				r.after(time.Hour)
				r.event("wechat.subscribe", wechat, "o1", nil) // within the cooldown: nothing
				r.after(day)
				r.event("wechat.subscribe", wechat, "o1", nil) // after it: again
				r.after(time.Minute)
			},
			wantMessages: []string{"wechat.text:cool", "wechat.text:cool"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hi", journey.ReasonCompleted},
				{"o1", model.EnrollmentCompleted, "hi", journey.ReasonCompleted}},
			wantVisits: []visit{{"hi", model.VisitDone, "unknown"}, {"hi", model.VisitDone, "sent"}},
		},
		{
			name: "entry.max_active",
			journeys: []string{`
key: capped
trigger: { event: wechat.subscribe }
entry: { max_active: 1 }
steps:
  - { id: hello, send: { channel: wechat.text, text: welcome }, next: hold }
  - { id: hold, wait: 1d }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.ingest(wechatEvent("wechat.subscribe", "o1", nil))
				r.recoverKilled()
				r.after(time.Hour)
				r.event("wechat.subscribe", wechat, "o1", nil) // one active already: refused
				r.after(day)
				r.event("wechat.subscribe", wechat, "o1", nil) // the first has ended
				r.after(day + time.Minute)
			},
			wantMessages: []string{"wechat.text:welcome", "wechat.text:welcome"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hold", journey.ReasonCompleted},
				{"o1", model.EnrollmentCompleted, "hold", journey.ReasonCompleted}},
			wantVisits: []visit{{"hello", model.VisitDone, "unknown"}, {"hold", model.VisitDone, "waited"},
				{"hello", model.VisitDone, "sent"}, {"hold", model.VisitDone, "waited"}},
		},
		{
			// The send the cap delays to the next day is the one killed.
			name: "frequency cap, on_cap delay",
			journeys: []string{`
key: daily
trigger: { event: campaign.daily }
frequency_caps: [ { channel: wechat.text, max: 1, per: 1d } ]
on_cap: delay
steps:
  - { id: push, send: { channel: wechat.text, text: offer }, next: mark }
  - { id: mark, update: { add_tags: [pushed] } }
`},
			killAt: 2,
			run: func(t *testing.T, r *rig) {
				r.after(2 * time.Minute)
				first := r.clk.Now()
				r.event("campaign.daily", api, "o1", nil)
				r.after(2 * time.Minute)
				r.event("campaign.daily", api, "o1", nil)
				held := r.visitOf("push")
				if held.Status != model.VisitScheduled || held.DueAt.Sub(first.Add(day)).Abs() > time.Second {
					t.Fatalf("the second push is %s due %v; want held until %v", held.Status, held.DueAt, first.Add(day))
				}
				r.at(held.DueAt.Add(-time.Minute))
				if n := len(r.rec.messages()); n != 1 {
					t.Fatalf("%d messages a minute before the cap frees a slot; want 1", n)
				}
				r.killedAt(held.DueAt)
				r.after(2 * day)
			},
			wantMessages: []string{"wechat.text:offer", "wechat.text:offer"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "mark", journey.ReasonCompleted},
				{"o1", model.EnrollmentCompleted, "mark", journey.ReasonCompleted}},
			wantVisits: []visit{{"push", model.VisitDone, "sent"}, {"mark", model.VisitDone, "updated"},
				{"push", model.VisitDone, "unknown"}, {"mark", model.VisitDone, "updated"}},
		},
		{
			name: "frequency cap, on_cap skip",
			journeys: []string{`
key: daily
trigger: { event: campaign.daily }
frequency_caps: [ { channel: wechat.text, max: 1, per: 1d } ]
on_cap: skip
steps:
  - { id: push, send: { channel: wechat.text, text: offer }, next: mark }
  - { id: mark, update: { add_tags: [pushed] } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.after(2 * time.Minute)
				r.ingest(&model.Event{Type: "campaign.daily", Source: api, Member: model.MemberRef{AppID: testAppID, OpenID: "o1"}})
				r.recoverKilled()
				r.after(2 * time.Minute)
				r.event("campaign.daily", api, "o1", nil)
				r.after(2 * day)
			},
			wantMessages: []string{"wechat.text:offer"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "mark", journey.ReasonCompleted},
				{"o1", model.EnrollmentCompleted, "mark", journey.ReasonCompleted}},
			wantVisits: []visit{{"push", model.VisitDone, "unknown"}, {"mark", model.VisitDone, "updated"},
				{"push", model.VisitDone, "capped: frequency cap wechat.text=1/1d"}, {"mark", model.VisitDone, "updated"}},
		},
		{
			name: "pause, then resume",
			journeys: []string{`
key: quick
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1h, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.event("wechat.subscribe", wechat, "o1", nil)
				if _, err := r.e.Pause(r.ctx, "quick"); err != nil {
					t.Fatal(err)
				}
				r.after(2 * time.Hour)
				if n := len(r.rec.messages()); n != 0 {
					t.Fatalf("%d messages while paused; want none", n)
				}
				if v := r.visitOf("pause"); v.Status != model.VisitWaiting {
					t.Fatalf("while paused the wait is %s; want waiting (held)", v.Status)
				}
				r.after(day)
				if _, err := r.e.Resume(r.ctx, "quick"); err != nil {
					t.Fatal(err)
				}
				r.recoverKilled()
			},
			wantMessages:    []string{"wechat.text:hi"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantVisits:      []visit{{"pause", model.VisitDone, "waited"}, {"hello", model.VisitDone, "unknown"}},
		},
		{
			// The pause comes while the dead worker's lease runs: the step
			// stays held past it, and the resume recovers it.
			name: "killed, then paused while its lease runs out, then resumed",
			journeys: []string{`
key: held
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1h, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi }, next: mark }
  - { id: mark, update: { add_tags: [greeted] } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.event("wechat.subscribe", wechat, "o1", nil)
				r.clk.Set(r.visitOf("pause").DueAt.Add(time.Second))
				v, d := r.deadVisit()
				if _, err := r.e.Pause(r.ctx, "held"); err != nil {
					t.Fatal(err)
				}
				r.at(v.LeaseUntil.Add(time.Hour))
				r.checkHeld(v)
				if _, err := r.e.Resume(r.ctx, "held"); err != nil {
					t.Fatal(err)
				}
				r.settle()
				r.checkRecovered(v, d)
			},
			wantMessages:    []string{"wechat.text:hi"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "mark", journey.ReasonCompleted}},
			wantVisits: []visit{{"pause", model.VisitDone, "waited"}, {"hello", model.VisitDone, "unknown"},
				{"mark", model.VisitDone, "updated"}},
		},
		{
			name: "archive mid-wait",
			journeys: []string{`
key: arch
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: pause }
  - { id: pause, wait: 1d, next: bye }
  - { id: bye, send: { channel: wechat.text, text: bye } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.ingest(wechatEvent("wechat.subscribe", "o1", nil))
				r.recoverKilled()
				r.after(time.Hour)
				if _, err := r.e.Archive(r.ctx, "arch"); err != nil {
					t.Fatal(err)
				}
				r.after(2 * day)
				r.event("wechat.subscribe", wechat, "o2", nil) // archived: nobody enters
			},
			wantMessages:    []string{"wechat.text:hi"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentExited, "pause", journey.EndReasonArchived}},
			wantVisits:      []visit{{"hello", model.VisitDone, "unknown"}, {"pause", model.VisitCancelled, journey.EndReasonArchived}},
		},
		{
			name: "quiet hours hold a late send until morning",
			journeys: []string{`
key: late
trigger: { event: wechat.subscribe }
quiet_hours: "22:00-08:00"
steps:
  - { id: pause, wait: { until: "23:00" }, next: hello }
  - { id: hello, send: { channel: wechat.text, text: good day } }
`},
			killAt: 1,
			run: func(t *testing.T, r *rig) {
				r.event("wechat.subscribe", wechat, "o1", nil)
				late := r.visitOf("pause").DueAt
				r.at(late.Add(time.Second))
				morning := nextChina(late, 8, 0)
				if v := r.visitOf("hello"); v.Status != model.VisitScheduled || !v.DueAt.Equal(morning) {
					t.Fatalf("the send at 23:00 is %s due %v; want held until %v", v.Status, v.DueAt, morning)
				}
				r.at(morning.Add(-time.Minute))
				if n := len(r.rec.messages()); n != 0 {
					t.Fatalf("%d messages in quiet hours; want none", n)
				}
				r.killedAt(morning)
			},
			wantMessages:    []string{"wechat.text:good day"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantVisits:      []visit{{"pause", model.VisitDone, "waited"}, {"hello", model.VisitDone, "unknown"}},
		},
		{
			// The worker dies in a step that sends nothing: the visit is
			// left running under its lease, and is run once more.
			name: "killed in a step that sends nothing",
			journeys: []string{`
key: work
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1d, next: work }
  - { id: work, die: {}, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`},
			run: func(t *testing.T, r *rig) {
				r.event("wechat.subscribe", wechat, "o1", nil)
				r.killedAt(r.visitOf("pause").DueAt)
			},
			wantMessages:    []string{"wechat.text:hi"},
			wantEnrollments: []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantVisits: []visit{{"pause", model.VisitDone, "waited"}, {"work", model.VisitDone, "survived"},
				{"hello", model.VisitDone, "sent"}},
		},
	}
	// On a real Redis the cases take turns (see realRedis).
	parallel := os.Getenv("WEJOURNEY_TEST_REDIS_URL") == ""
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if parallel {
				t.Parallel()
			} else {
				realRedis.Lock()
				t.Cleanup(realRedis.Unlock)
			}
			r := newRig(t, tc.journeys...)
			r.killAt, r.killBefore = tc.killAt, tc.killBefore
			tc.run(t, r)
			r.settle()
			t.Logf("%s died mid-step", r.victim)

			if diff := cmp.Diff(tc.wantEnrollments, r.enrollments()); diff != "" {
				t.Errorf("enrollments (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantVisits, r.visits()); diff != "" {
				t.Errorf("visits (-want +got):\n%s", diff)
			}
			msgs := r.rec.messages()
			var got []string
			keys := map[string]int{}
			for _, m := range msgs {
				got = append(got, messageSummary(m))
				keys[m.IdempotencyKey]++
			}
			if diff := cmp.Diff(tc.wantMessages, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			for k, n := range keys {
				if n > 1 {
					t.Errorf("message %s handed to the provider %d times; want once", k, n)
				}
			}
			// No step twice in one enrollment, nothing left open.
			seen := map[string]bool{}
			for _, v := range r.visitRows() {
				k := fmt.Sprintf("%d/%s", v.EnrollmentID, v.StepID)
				if seen[k] {
					t.Errorf("enrollment %d visited step %s twice", v.EnrollmentID, v.StepID)
				}
				seen[k] = true
				if slices.Contains([]string{model.VisitScheduled, model.VisitWaiting, model.VisitRunning}, v.Status) {
					t.Errorf("visit of step %s left %s", v.StepID, v.Status)
				}
			}
			var ds []model.Delivery
			if err := r.db.Find(&ds).Error; err != nil {
				t.Fatal(err)
			}
			if len(ds) != len(tc.wantMessages) {
				t.Errorf("%d delivery rows; want %d", len(ds), len(tc.wantMessages))
			}
			for _, d := range ds {
				if d.Status == model.DeliverySending {
					t.Errorf("delivery %d left sending", d.ID)
				}
			}
		})
	}
}
