package journey_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// testAppID is the Official Account every test member follows.
const testAppID = "wxtestapp"

// sendRecorder is a channels.Sender that records every message handed to it
// and fails those a test configured to fail.
type sendRecorder struct {
	mu   sync.Mutex
	msgs []channels.Message
	errs map[string]error // by channel, or by channel + "/" + openid
}

// sender returns a registry whose every channel records into r, with the
// capabilities the real senders declare.
func (r *sendRecorder) sender() *channels.Registry {
	return senderThrough(r.send())
}

// senderThrough returns a registry whose every channel sends through f,
// with the capabilities the real senders declare.
func senderThrough(f channels.SenderFunc) *channels.Registry {
	reg := channels.NewRegistry()
	for ch, caps := range wechat.Capabilities() {
		reg.Register(ch, f, caps)
	}
	reg.Register(channels.WeChatSubscribe, f, channels.Capabilities{NeedsSubscribed: true, Address: channels.ByOpenID})
	reg.Register(channels.WeComText, f, channels.Capabilities{Address: channels.ByExternalUserID})
	reg.Register(channels.WeComWelcome, f, channels.Capabilities{Address: channels.ByExternalUserID, Urgent: true})
	reg.Register(channels.SMS, f, channels.Capabilities{Address: channels.ByPhone, OptOut: "sms"})
	reg.Register(channels.Email, f, channels.Capabilities{Address: channels.ByEmail, OptOut: "email"})
	reg.Register(channels.Webhook, f, channels.Capabilities{})
	return reg
}

func (r *sendRecorder) send() channels.SenderFunc {
	return channels.SenderFunc(func(_ context.Context, msg channels.Message) (channels.Result, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.msgs = append(r.msgs, msg)
		if err := r.errs[msg.Channel+"/"+msg.To.OpenID]; err != nil {
			return channels.Result{}, err
		}
		if err := r.errs[msg.Channel]; err != nil {
			return channels.Result{}, err
		}
		return channels.Result{ProviderID: fmt.Sprintf("msg-%d", len(r.msgs))}, nil
	})
}

// fail makes sends on key (a channel, or channel/openid) return err; nil clears it.
func (r *sendRecorder) fail(key string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs == nil {
		r.errs = map[string]error{}
	}
	r.errs[key] = err
}

func (r *sendRecorder) messages() []channels.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]channels.Message(nil), r.msgs...)
}

// sent is the part of a recorded message the tests compare.
type sent struct {
	Channel, OpenID, Phone, Text, TemplateID, Template, URL string
	Data                                                    map[string]string
}

func (r *sendRecorder) sent() []sent {
	var out []sent
	for _, m := range r.messages() {
		s := sent{Channel: m.Channel, OpenID: m.To.OpenID, Phone: m.To.Phone, Text: m.Text, TemplateID: m.TemplateID, Template: m.Template, URL: m.URL}
		if len(m.Data) > 0 {
			s.Data = m.Data
		}
		out = append(out, s)
	}
	return out
}

// harness is one engine on its own fresh SQLite database and its own
// in-process Redis queue, on a simulated clock, driven by hand: events are
// ingested then routed explicitly, steps run with RunStep, and waits end
// when the test moves the clock. No asynq server runs: the queue only
// receives tasks, which sweep runs as a worker would.
type harness struct {
	t    *testing.T
	ctx  context.Context
	db   *gorm.DB
	e    *journey.Engine
	ing  *journey.Ingestor
	rec  *sendRecorder
	clk  *clock.Simulated
	q    *asynq.Client
	insp *asynq.Inspector
	n    int // dedupe key counter
}

// newTestQueue returns an asynq client and inspector on a fresh in-process
// Redis that lives as long as the test.
func newTestQueue(t *testing.T) (*asynq.Client, *asynq.Inspector) {
	t.Helper()
	mr := miniredis.RunT(t)
	opt := asynq.RedisClientOpt{Addr: mr.Addr()}
	q, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { q.Close(); insp.Close() })
	return q, insp
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with the engine's configuration changed by
// configure (extra step kinds, senders or sources).
func newHarnessWith(t *testing.T, configure func(*journey.Config)) *harness {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	lw := &testLogWriter{t: t}
	t.Cleanup(func() { lw.done.Store(true) })
	logger := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &sendRecorder{}
	q, insp := newTestQueue(t)
	// The clock starts at the wall time (quiet hours and entry rules read
	// the time of day) and moves only when the test moves it.
	clk := clock.NewSimulated(time.Now().UTC().Truncate(time.Microsecond))
	h := &harness{
		t:    t,
		ctx:  t.Context(),
		db:   db,
		rec:  rec,
		clk:  clk,
		q:    q,
		insp: insp,
		// As the app configures it for SQLite (one database slot); work
		// the engine starts by itself ends with the test.
		ing: journey.NewIngestor(journey.IngestorConfig{DB: db, Logger: logger, Clock: clk}),
	}
	cfg := journey.Config{DB: db, Queue: q, Inspector: insp, Senders: rec.sender(), Logger: logger,
		SweepGrace: time.Nanosecond, DBSlots: 1, BaseContext: t.Context(), Clock: clk}
	if configure != nil {
		configure(&cfg)
	}
	h.e = journey.New(cfg)
	t.Cleanup(h.ing.Close)
	return h
}

// testLogWriter sends the engine's log to the test's log, shown on failure,
// until the test ends.
type testLogWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// publish parses and publishes a journey.
func (h *harness) publish(src string) *journey.Compiled {
	h.t.Helper()
	c, err := journey.Parse("test.yaml", []byte(src))
	if err != nil {
		h.t.Fatalf("Parse: %v", err)
	}
	if _, err := h.e.Publish(h.ctx, c, "test"); err != nil {
		h.t.Fatalf("Publish: %v", err)
	}
	return c
}

// ingest stores an event (a fresh dedupe key unless it has one) and returns its id.
func (h *harness) ingest(ev *model.Event) int64 {
	h.t.Helper()
	if ev.DedupeKey == "" {
		h.n++
		ev.DedupeKey = fmt.Sprintf("test-%d", h.n)
	}
	if ev.Source == "" {
		ev.Source = "wechat"
	}
	acc, dup, err := h.ing.Ingest(h.ctx, ev)
	if err != nil || acc != 1 || dup != 0 {
		h.t.Fatalf("Ingest(%s) = %d accepted, %d duplicates, %v; want 1, 0, nil", ev.Type, acc, dup, err)
	}
	return ev.ID
}

// route ingests and routes one event.
func (h *harness) route(ev *model.Event) int64 {
	h.t.Helper()
	id := h.ingest(ev)
	if err := h.e.Route(h.ctx, id); err != nil {
		h.t.Fatalf("Route(%d): %v", id, err)
	}
	for h.runRouteTasks() > 0 { // the events routing emitted
	}
	return id
}

func wechatEvent(typ, openid string, props map[string]any) *model.Event {
	return &model.Event{Type: typ, Source: "wechat", Member: model.MemberRef{AppID: testAppID, OpenID: openid}, Props: props}
}

func (h *harness) subscribe(openid, scene string) int64 {
	h.t.Helper()
	return h.route(wechatEvent("wechat.subscribe", openid, map[string]any{"scene": scene}))
}

func (h *harness) unsubscribe(openid string) int64 {
	h.t.Helper()
	return h.route(wechatEvent("wechat.unsubscribe", openid, nil))
}

// apiEvent routes a brand event from the events API naming the member by appid+openid.
func (h *harness) apiEvent(typ, openid string, props map[string]any) int64 {
	h.t.Helper()
	return h.route(&model.Event{Type: typ, Source: "api", Member: model.MemberRef{AppID: testAppID, OpenID: openid}, Props: props})
}

// drain runs every step visit that is due now (by the harness's clock),
// and the ones those lead to, until none is left due. Waits not yet due
// stay waiting.
func (h *harness) drain() {
	h.t.Helper()
	for range 100 {
		var ids []int64
		if err := h.db.Model(&model.StepVisit{}).Where("status IN ? AND due_at <= ?",
			[]string{model.VisitScheduled, model.VisitWaiting}, h.clk.Now().UTC()).Order("id").Pluck("id", &ids).Error; err != nil {
			h.t.Fatal(err)
		}
		if len(ids) == 0 {
			return
		}
		for _, id := range ids {
			h.runStep(id)
		}
	}
	h.t.Fatal("drain: steps keep becoming due")
}

// sweep sweeps, then does what a worker does with what the sweep
// enqueued: runs the route tasks now, and the step visits due by the
// harness's clock (drain; asynq would run the step tasks on wall time).
func (h *harness) sweep() journey.SweepResult {
	h.t.Helper()
	r, err := h.e.Sweep(h.ctx)
	if err != nil {
		h.t.Fatalf("Sweep: %v", err)
	}
	if n := h.runRouteTasks(); n != (r.Events+99)/100 {
		h.t.Errorf("sweep of %d unrouted events enqueued %d route tasks; want %d", r.Events, n, (r.Events+99)/100)
	}
	h.drain()
	return r
}

// runRouteTasks runs and removes the route tasks waiting in the queue and
// returns how many there were.
func (h *harness) runRouteTasks() int {
	h.t.Helper()
	n := 0
	for q := range journey.Queues() {
		n += h.runRouteTasksOf(q)
	}
	return n
}

// runRouteTasksOf runs and removes the route tasks waiting in queue q.
func (h *harness) runRouteTasksOf(q string) int {
	h.t.Helper()
	tasks, err := h.insp.ListPendingTasks(q, asynq.PageSize(1000))
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return 0 // nothing was ever enqueued
	}
	if err != nil {
		h.t.Fatalf("list pending tasks: %v", err)
	}
	n := 0
	for _, ti := range tasks {
		if ti.Type != journey.TypeRouteEvents {
			continue
		}
		n++
		if err := h.e.HandleRouteEventsTask(h.ctx, asynq.NewTask(ti.Type, ti.Payload)); err != nil {
			h.t.Fatalf("route task %s: %v", ti.ID, err)
		}
		if err := h.insp.DeleteTask(q, ti.ID); err != nil {
			h.t.Fatalf("delete route task %s: %v", ti.ID, err)
		}
	}
	return n
}

// runWhenDue moves the clock to when the newest visit of step is due and
// runs it. Just before then, the visit is not due: a sweep and a drain
// leave it as it was.
func (h *harness) runWhenDue(step string) {
	h.t.Helper()
	v := h.visitOf(step)
	if d := v.DueAt.Sub(h.clk.Now()); d > 5*time.Second {
		h.t.Fatalf("visit of step %q is due in %v; want within seconds", step, d)
	}
	if early := v.DueAt.Add(-time.Millisecond); early.After(h.clk.Now()) {
		h.clk.Set(early)
		h.sweep()
		if got := h.visitOf(step); got.ID != v.ID || got.Status != v.Status {
			h.t.Fatalf("a millisecond before it was due, visit of step %q went from %s to %s", step, v.Status, got.Status)
		}
	}
	h.clk.Set(v.DueAt.Add(time.Millisecond))
	h.runStep(v.ID)
}

func (h *harness) runStep(id int64) {
	h.t.Helper()
	if err := h.e.RunStep(h.ctx, id); err != nil {
		h.t.Fatalf("RunStep(%d): %v", id, err)
	}
}

// visit is the part of a step visit the tests compare.
type visit struct{ Step, Status, Outcome string }

func (h *harness) visitRows() []model.StepVisit {
	h.t.Helper()
	var vs []model.StepVisit
	if err := h.db.Order("id").Find(&vs).Error; err != nil {
		h.t.Fatal(err)
	}
	return vs
}

func (h *harness) visits() []visit {
	h.t.Helper()
	var out []visit
	for _, v := range h.visitRows() {
		out = append(out, visit{v.StepID, v.Status, v.Outcome})
	}
	return out
}

// visitOf returns the newest visit of a step.
func (h *harness) visitOf(step string) model.StepVisit {
	h.t.Helper()
	var v model.StepVisit
	if err := h.db.Where("step_id = ?", step).Order("id DESC").First(&v).Error; err != nil {
		h.t.Fatalf("visit of step %q: %v", step, err)
	}
	return v
}

// enrollment is the part of an enrollment the tests compare.
type enrollment struct{ Member, Status, Step, EndReason string }

func (h *harness) enrollments() []enrollment {
	h.t.Helper()
	var es []model.Enrollment
	if err := h.db.Order("id").Find(&es).Error; err != nil {
		h.t.Fatal(err)
	}
	var out []enrollment
	for _, e := range es {
		var m model.Member
		if err := h.db.First(&m, e.MemberID).Error; err != nil {
			h.t.Fatal(err)
		}
		out = append(out, enrollment{m.OpenID, e.Status, e.StepID, e.EndReason})
	}
	return out
}

func (h *harness) member(openid string) model.Member {
	h.t.Helper()
	var m model.Member
	if err := h.db.Where("open_id = ?", openid).First(&m).Error; err != nil {
		h.t.Fatalf("member %q: %v", openid, err)
	}
	return m
}

// delivery is the part of a delivery row the tests compare.
type delivery struct{ Step, Channel, To, Status string }

func (h *harness) deliveries() []delivery {
	h.t.Helper()
	var ds []model.Delivery
	if err := h.db.Order("id").Find(&ds).Error; err != nil {
		h.t.Fatal(err)
	}
	var out []delivery
	for _, d := range ds {
		var v model.StepVisit
		if err := h.db.First(&v, d.StepVisitID).Error; err != nil {
			h.t.Fatal(err)
		}
		out = append(out, delivery{v.StepID, d.Channel, d.To, d.Status})
	}
	return out
}

func (h *harness) count(m any) int64 {
	h.t.Helper()
	var n int64
	if err := h.db.Model(m).Count(&n).Error; err != nil {
		h.t.Fatal(err)
	}
	return n
}
