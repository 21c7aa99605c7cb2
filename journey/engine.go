package journey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/model"
)

// Config configures an Engine. Zero values have the documented defaults.
type Config struct {
	// DB is required.
	DB *gorm.DB
	// Queue carries step and route tasks; it is required (tests use an
	// in-process miniredis). Without it no task is enqueued (each attempt
	// logs an error) and Sweep and Recover fail.
	Queue *asynq.Client
	// Inspector, if set, looks into Queue's Redis: when the sweeper
	// re-enqueues an overdue visit whose task already exists, waiting out a
	// retry delay in asynq's retry set (or archived after its retries ran
	// out during an outage), the task is run now instead. Nil: such a visit
	// runs when its task's retry comes.
	Inspector *asynq.Inspector
	// Senders delivers messages and says what each channel can do
	// (*channels.Registry); required for journeys that send.
	Senders Senders
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Lease is how long a claimed step visit stays claimed before another
	// worker may take it over. A running step renews its claim every third
	// of the lease, so a slow send keeps it, while the claims of a process
	// that died expire within one lease. Default 5 seconds.
	Lease time.Duration
	// MaxAttempts bounds retries of a step that fails temporarily. Default 8.
	MaxAttempts int
	// IndexTTL is how often the trigger index re-reads which journey versions
	// are live, so a version published by another process is picked up.
	// Default 2 seconds.
	IndexTTL time.Duration
	// SweepGrace is how overdue work must be before the sweeper re-enqueues
	// it. Default 3 seconds.
	SweepGrace time.Duration
	// Horizon bounds how far ahead step tasks are queued: a visit due later
	// is kept by the database alone (its index on due time), and the
	// sweeper queues it once it comes within the horizon. Redis then holds
	// the next Horizon's waits, not one task per waiting member. Default 1
	// minute.
	Horizon time.Duration
	// RouteConcurrency is how many routing transactions (batches of up to
	// 64 events of whole members) one gathered batch of route tasks runs at
	// once. Default 8; with DBSlots they still take turns at the database.
	RouteConcurrency int
	// LagGrace is how old an unrouted event must be before the sweeper
	// re-enqueues it while the queue has a backlog (pending tasks, as in a
	// burst the workers are behind on): such an event is most likely
	// waiting in the backlog, not lost, and routing it again would only
	// add to the backlog. Default 1 minute. Needs Inspector; without one
	// SweepGrace applies.
	LagGrace time.Duration
	// Gate, if set, is called before each unit of background work (routing
	// an event, running a step) and may block to give way. A process that
	// also takes callbacks passes its Ingestor's WaitCalm, so acknowledging
	// callbacks comes first in a burst.
	Gate func(ctx context.Context)
	// DBSlots, when positive, bounds how many of this engine's goroutines
	// use the database at once (sends to channels happen outside). Urgent
	// work takes the database first either way (see dbSlot). With
	// SQLite's single connection, 1 keeps callback commits from queueing
	// behind every worker. Zero: unbounded, except on SQLite, where it is
	// 1 (with one connection, gorm's prepared statements can deadlock when
	// one goroutine prepares a statement outside a transaction while
	// another holds the connection in a transaction that uses it).
	DBSlots int
	// FrequencyCaps bound the marketing messages a member gets from every
	// journey together (a journey's frequency_caps add to them).
	// Transactional sends are exempt; see capExempt.
	FrequencyCaps []FrequencyCap
	// QuietHours is the daily window ("22:00-08:00", China time) in which
	// every journey's marketing sends wait, unless the journey sets its own
	// quiet_hours ("off": none). Empty: none. A bad one is logged and
	// ignored (the configuration checks it first).
	QuietHours string
	// BaseContext is the context of work the engine starts by itself (steps
	// held until their due time). Default context.Background().
	BaseContext context.Context
	// Sources are the event sources: what each event changes on its member.
	// Default events.Default().
	Sources *events.Registry
	// Clock tells the time of every recorded and compared instant (due
	// times, leases, entries, routing). Default clock.Real(); tests pass a
	// *clock.Simulated and move it instead of sleeping.
	Clock clock.Clock
	// StepKinds are step kinds added to the built-in ones
	// (BuiltinStepKinds), for journeys this engine publishes and runs.
	StepKinds []StepKind
	// TriggerKinds are trigger kinds added to the built-in ones
	// (BuiltinTriggerKinds).
	TriggerKinds []TriggerKind
	// Metrics, if set, receives the engine's Prometheus metrics: routed
	// events by type, deliveries by channel and status, step outcomes.
	Metrics prometheus.Registerer
	// Enrich, if set, looks up the identities an event's source did not
	// carry (a follower's or a WeCom contact's unionid) before the event is
	// routed; see Enricher. Nil: events are routed with what they carry.
	Enrich Enricher
	// Observe, if set, is told of the events about to be routed, before
	// any step they start runs: the WeChat sender opens each member's
	// customer-service allowance from follows, scans, clicks and messages.
	// It may be told of an event more than once (a routing retry).
	Observe Observer
	// MergeBy lists the identity kinds besides the platform ones (openid,
	// mini-program openid, WeCom external_userid, unionid and the brand's
	// user_id, which always merge) by which two members are one person:
	// model.IdentityPhone, model.IdentityEmail. Default none: a phone or
	// email already on another member is left with that member.
	MergeBy []string
}

// Senders is what the engine needs of the configured senders: sending, and
// each channel's capabilities (whether a message of unknown fate may be
// re-sent, whether the member must be subscribed, which address is theirs).
// *channels.Registry implements it.
type Senders interface {
	channels.Sender
	Capabilities(channel string) (channels.Capabilities, bool)
}

// engineMetrics are the counters the engine keeps when Config.Metrics is set.
type engineMetrics struct {
	routed     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	steps      *prometheus.CounterVec
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wejourney_events_routed_total", Help: "Events routed to journeys, by type.",
		}, []string{"type"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wejourney_deliveries_total", Help: "Messages handed to channels, by channel and delivery status.",
		}, []string{"channel", "status"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wejourney_steps_total", Help: "Step visits finished, by visit status.",
		}, []string{"status"}),
	}
	if reg != nil {
		reg.MustRegister(m.routed, m.deliveries, m.steps)
	}
	return m
}

// dbSlot bounds how many goroutines use the database at once; a nil one
// never blocks. Urgent work (urgentContext: a welcome code WeCom takes
// only within 20 s) goes ahead of every other waiter, and while it holds
// the database no other work starts a statement: in a burst of marketing
// on PostgreSQL, the CPU a welcome's statements need is not spread over
// dozens of marketing batches.
type dbSlot = *prioritySlot

// prioritySlot is a counting semaphore whose urgent waiters go first.
type prioritySlot struct {
	mu     sync.Mutex
	cond   *sync.Cond
	free   int
	urgent int // urgent waiters
	active int // urgent holders
}

// unboundedSlots is the size of the slot of an engine with no DBSlots: it
// bounds nothing and only puts urgent work first.
const unboundedSlots = 1 << 20

func newDBSlot(n int) dbSlot {
	if n <= 0 {
		return nil
	}
	s := &prioritySlot{free: n}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// urgentKey marks a context whose work goes first (see urgentContext).
type urgentKey struct{}

// urgentContext marks ctx's work as urgent: it takes the database slot
// ahead of other waiters.
func urgentContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, urgentKey{}, true)
}

func isUrgent(ctx context.Context) bool {
	u, _ := ctx.Value(urgentKey{}).(bool)
	return u
}

func (s *prioritySlot) lock(ctx context.Context) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if isUrgent(ctx) {
		s.urgent++
		for s.free == 0 {
			s.cond.Wait()
		}
		s.urgent--
		s.active++
	} else {
		for s.free == 0 || s.urgent > 0 || s.active > 0 {
			s.cond.Wait()
		}
	}
	s.free--
	s.mu.Unlock()
}

// unlock gives back the slot lock(ctx) took, with the same ctx.
func (s *prioritySlot) unlock(ctx context.Context) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.free++
	if isUrgent(ctx) {
		s.active--
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// Engine routes events to journeys and runs their steps.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	slot    dbSlot
	metrics *engineMetrics
	quiet   *quietHours // Config.QuietHours

	mu       sync.Mutex
	versions map[int64]*Compiled // immutable versions, cached forever
	index    *triggerIndex
	// indexGen counts InvalidateIndex calls: an index read before one is
	// not kept (it may say a journey just paused is live).
	indexGen uint64
	// queuedUntil is how far ahead the sweeper has queued upcoming visits.
	queuedUntil   time.Time
	steps, routes *gatherer // step and route tasks, run in batches
	schedules     sync.Map  // journey id -> scheduleCache (trigger_schedule.go)
}

type liveJourney struct {
	journeyID, versionID int64
	c                    *Compiled
}

// triggerIndex finds the live journeys by trigger kind and key (for event
// triggers, the event type), and knows the paused ones (their steps are
// held).
type triggerIndex struct {
	loaded time.Time
	byKey  map[triggerKey][]liveJourney
	paused map[int64]bool // journey ids
}

type triggerKey struct{ kind, key string }

// New returns an engine.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 5 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.IndexTTL <= 0 {
		cfg.IndexTTL = 2 * time.Second
	}
	if cfg.SweepGrace <= 0 {
		cfg.SweepGrace = 3 * time.Second
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = time.Minute
	}
	if cfg.RouteConcurrency <= 0 {
		cfg.RouteConcurrency = 8
	}
	if cfg.LagGrace <= 0 {
		cfg.LagGrace = time.Minute
	}
	if cfg.BaseContext == nil {
		cfg.BaseContext = context.Background()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Sources == nil {
		cfg.Sources = events.Default()
	}
	if cfg.DBSlots == 0 && cfg.DB != nil && cfg.DB.Dialector.Name() == "sqlite" {
		cfg.DBSlots = 1
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, versions: map[int64]*Compiled{}, metrics: newEngineMetrics(cfg.Metrics)}
	if cfg.QuietHours != "" && cfg.QuietHours != quietOff {
		q, err := parseQuietHours(cfg.QuietHours)
		if err != nil {
			e.log.Error("quiet hours ignored", "quiet_hours", cfg.QuietHours, "err", err)
		}
		e.quiet = q
	}
	if cfg.DBSlots > 0 {
		e.slot = newDBSlot(cfg.DBSlots)
	} else {
		e.slot = newDBSlot(unboundedSlots)
	}
	flushers := gatherFlushers
	if cfg.DBSlots == 1 {
		flushers = 1
	}
	e.steps = &gatherer{run: e.runStepBatch, max: stepBatchMax, flushers: flushers, base: cfg.BaseContext, timeout: stepTaskTimeout}
	e.routes = &gatherer{run: e.routeGathered, max: routeGatherMax, flushers: flushers, base: cfg.BaseContext, timeout: routeTaskTimeout}
	return e
}

// now is the engine clock's time in UTC.
func (e *Engine) now() time.Time { return e.cfg.Clock.Now().UTC() }

func (e *Engine) gate(ctx context.Context) {
	if e.cfg.Gate != nil && !isUrgent(ctx) {
		e.cfg.Gate(ctx)
	}
}

// InvalidateIndex makes the next routed event or step re-read the live
// and paused journeys.
func (e *Engine) InvalidateIndex() {
	e.mu.Lock()
	e.index = nil
	e.indexGen++
	e.mu.Unlock()
}

// version returns the compiled journey version with that id.
func (e *Engine) version(db *gorm.DB, id int64) (*Compiled, error) {
	e.mu.Lock()
	c := e.versions[id]
	e.mu.Unlock()
	if c != nil {
		return c, nil
	}
	var v model.JourneyVersion
	if err := db.First(&v, id).Error; err != nil {
		return nil, fmt.Errorf("journey: load version %d: %w", id, err)
	}
	// A stored version is not checked against the senders and sources of
	// today: a version already live keeps running (its sends to a channel
	// without a sender fail with "no sender").
	c, err := Parse(v.Origin, []byte(v.Source), e.kindOptions(storedVersion)...)
	if err != nil {
		return nil, fmt.Errorf("journey: version %d no longer parses: %w", id, err)
	}
	e.mu.Lock()
	e.versions[id] = c
	e.mu.Unlock()
	return c, nil
}

// Parse parses and validates a journey with the engine's checks: its
// senders (Config.Senders), event sources and step and trigger kinds. Publish
// and SyncDir use it.
func (e *Engine) Parse(name string, src []byte) (*Compiled, error) {
	opts := e.kindOptions(WithSources(e.cfg.Sources))
	if e.cfg.Senders != nil {
		opts = append(opts, WithChannels(e.cfg.Senders))
	}
	return Parse(name, src, opts...)
}

// kindOptions are the parse options of the engine's extra kinds, plus more.
func (e *Engine) kindOptions(more ...ParseOption) []ParseOption {
	return append([]ParseOption{WithStepKinds(e.cfg.StepKinds...), WithTriggerKinds(e.cfg.TriggerKinds...)}, more...)
}

// triggerManual is the index kind of manual enrollments: every live
// journey, under its own key (see events.JourneyEnroll).
const triggerManual = "manual"

// triggers returns the live journeys whose trigger of this kind has key.
func (e *Engine) triggers(db *gorm.DB, kind, key string) ([]liveJourney, error) {
	idx, err := e.liveIndex(db)
	if err != nil {
		return nil, err
	}
	return idx.byKey[triggerKey{kind, key}], nil
}

// liveIndex returns the trigger index, re-read from the database when it
// is older than Config.IndexTTL or was invalidated.
func (e *Engine) liveIndex(db *gorm.DB) (*triggerIndex, error) {
	e.mu.Lock()
	idx, gen := e.index, e.indexGen
	e.mu.Unlock()
	if idx != nil && time.Since(idx.loaded) <= e.cfg.IndexTTL {
		return idx, nil
	}
	var js []model.Journey
	if err := db.Where("status IN ? AND current_version_id <> 0", []string{model.JourneyActive, model.JourneyPaused}).Find(&js).Error; err != nil {
		return nil, fmt.Errorf("journey: load live journeys: %w", err)
	}
	idx = &triggerIndex{loaded: time.Now(), byKey: map[triggerKey][]liveJourney{}, paused: map[int64]bool{}}
	for _, j := range js {
		if j.Status == model.JourneyPaused {
			idx.paused[j.ID] = true
			continue
		}
		c, err := e.version(db, j.CurrentVersionID)
		if err != nil {
			e.log.Error("skipping journey", "journey", j.Key, "err", err)
			continue
		}
		for _, k := range c.triggerKeys {
			tk := triggerKey{c.trigger, k}
			idx.byKey[tk] = append(idx.byKey[tk], liveJourney{j.ID, j.CurrentVersionID, c})
		}
		// Every live journey takes manual enrollments, by its key.
		mk := triggerKey{triggerManual, j.Key}
		idx.byKey[mk] = append(idx.byKey[mk], liveJourney{j.ID, j.CurrentVersionID, c})
	}
	e.mu.Lock()
	if e.indexGen == gen {
		e.index = idx
	}
	e.mu.Unlock()
	return idx, nil
}

// env is what expressions and templates see.
type env map[string]any

func eventEnv(ev *model.Event) map[string]any {
	m := make(map[string]any, len(ev.Props)+2)
	for k, v := range ev.Props {
		m[k] = v
	}
	m["type"] = ev.Type
	m["at"] = ev.At
	return m
}

func memberEnv(m *model.Member) map[string]any {
	tags := m.Tags
	if tags == nil {
		tags = []string{}
	}
	attrs := m.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	return map[string]any{
		"id": m.ID, "appid": m.AppID, "openid": m.OpenID, "unionid": m.UnionID,
		"external_userid": m.ExternalUserID, "phone": m.Phone, "email": m.Email,
		"user_id": m.UserID, "nickname": m.Nickname, "subscribed": subscribedVar(m),
		"mp_openid": m.MPOpenID,
		"tags":      tags, "attrs": attrs, "first_scene": m.FirstScene, "last_scene": m.LastScene,
	}
}

// subscribedVar is member.subscribed: true or false once the member's
// subscription to their Official Account is known, nil while unknown.
func subscribedVar(m *model.Member) any {
	switch m.Subscription("") {
	case model.SubscriptionSubscribed:
		return true
	case model.SubscriptionUnsubscribed:
		return false
	}
	return nil
}

// eval runs a boolean expression; a nil program is true. An expression that
// fails at run time (a missing prop compared as a string, say) is false.
func (e *Engine) eval(p *vm.Program, vars env) bool {
	if p == nil {
		return true
	}
	out, err := expr.Run(p, map[string]any(vars))
	if err != nil {
		e.log.Debug("expression failed; treated as false", "expr", p.Source().String(), "err", err)
		return false
	}
	b, _ := out.(bool)
	return b
}

// End reasons recorded on enrollments. Exits by rule record "exit:" and the
// event type.
const (
	ReasonCompleted   = "completed"
	ReasonTimeout     = "timeout"
	ReasonUnreachable = "unreachable"
	ReasonFailed      = "failed"
)

// errConflict means another worker already made this transition.
var errConflict = errors.New("journey: transition already made")

// newVisit inserts the visit for member m entering step id (see buildVisit).
func newVisit(tx *gorm.DB, c *Compiled, enr *model.Enrollment, m *model.Member, seq int, stepID string, now time.Time, lease time.Duration) (*model.StepVisit, error) {
	v := buildVisit(c, enr, m, seq, stepID, now, lease)
	if err := tx.Create(v).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return nil, errConflict
		}
		return nil, fmt.Errorf("journey: create visit: %w", err)
	}
	return v, nil
}

// buildVisit returns the visit for member m entering step id, to insert.
// Steps whose body waits (wait, wait_for) start waiting until their due
// time (an UntilWaiter's moment, computed here from now and m). Others,
// and an UntilWaiter whose moment is not after now, are due now and are
// created already claimed (running, leased), so the transaction's caller
// runs them at once without a queue round trip; if it dies first, the lease
// expires and the sweeper hands the visit to another worker.
func buildVisit(c *Compiled, enr *model.Enrollment, m *model.Member, seq int, stepID string, now time.Time, lease time.Duration) *model.StepVisit {
	cs := c.steps[stepID]
	until := now.Add(lease)
	v := &model.StepVisit{
		EnrollmentID: enr.ID, Seq: seq, JourneyID: enr.JourneyID, VersionID: enr.VersionID,
		StepID: stepID, MemberID: enr.MemberID, Status: model.VisitRunning, DueAt: now, CreatedAt: now,
		LeaseUntil: &until, Attempts: 1, EnteredDay: enr.EnteredDay,
	}
	if uw, ok := cs.Body.(UntilWaiter); ok {
		if due := uw.WaitUntil(now, m); due.After(now) {
			v.Status, v.DueAt, v.LeaseUntil, v.Attempts = model.VisitWaiting, due, nil, 0
		}
	} else if d, waits := cs.Body.Waits(); waits {
		v.Status, v.DueAt, v.LeaseUntil, v.Attempts = model.VisitWaiting, now.Add(d), nil, 0
	}
	return v
}

// finishVisit moves a visit out of fromStatus into done (or failed) and the
// enrollment on to next, or ends it when next is empty. It returns the next
// visit, or nil when the enrollment ended or had already left.
func finishVisit(tx *gorm.DB, c *Compiled, enr *model.Enrollment, m *model.Member, v *model.StepVisit, fromStatus, status, outcome, next, endReason string, now time.Time, lease time.Duration) (*model.StepVisit, error) {
	step, err := finishTransition(tx, enr, v, fromStatus, status, outcome, next, endReason, now)
	if err != nil || step == "" {
		return nil, err
	}
	return newVisit(tx, c, enr, m, v.Seq+1, step, now, lease)
}

// finishTransition is finishVisit without the next visit's insert: it
// returns the step the enrollment moved on to ("" when it ended or had
// already left), whose visit the caller creates. errConflict: another
// worker finished the visit.
func finishTransition(tx *gorm.DB, enr *model.Enrollment, v *model.StepVisit, fromStatus, status, outcome, next, endReason string, now time.Time) (string, error) {
	res := tx.Model(&model.StepVisit{}).Where("id = ? AND status = ?", v.ID, fromStatus).
		Updates(map[string]any{"status": status, "outcome": outcome, "finished_at": now, "lease_until": nil})
	if res.Error != nil {
		return "", fmt.Errorf("journey: finish visit: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return "", errConflict
	}
	if next == "" {
		endStatus := model.EnrollmentCompleted
		if endReason != ReasonCompleted {
			endStatus = model.EnrollmentFailed
		}
		return "", endEnrollment(tx, enr.ID, endStatus, endReason, now, endStatus != model.EnrollmentCompleted)
	}
	res = tx.Model(&model.Enrollment{}).Where("id = ? AND status = ?", enr.ID, model.EnrollmentActive).Update("step_id", next)
	if res.Error != nil {
		return "", fmt.Errorf("journey: advance enrollment: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return "", nil // exited meanwhile
	}
	return next, nil
}

// endEnrollment ends an active enrollment and, with cancel, its open visits
// (a completed enrollment has none left).
func endEnrollment(tx *gorm.DB, id int64, status, reason string, now time.Time, cancel bool) error {
	_, err := endEnrollmentIf(tx, id, status, reason, now, cancel)
	return err
}

// endEnrollmentIf is endEnrollment, reporting whether the enrollment was
// still active (false: it had ended, nothing changed).
func endEnrollmentIf(tx *gorm.DB, id int64, status, reason string, now time.Time, cancel bool) (bool, error) {
	res := tx.Model(&model.Enrollment{}).Where("id = ? AND status = ?", id, model.EnrollmentActive).
		Updates(map[string]any{"status": status, "end_reason": reason, "ended_at": now, "active_key": nil})
	if res.Error != nil {
		return false, fmt.Errorf("journey: end enrollment: %w", res.Error)
	}
	if res.RowsAffected == 0 || !cancel {
		return res.RowsAffected > 0, nil
	}
	if err := tx.Model(&model.StepVisit{}).
		Where("enrollment_id = ? AND status IN ?", id, []string{model.VisitScheduled, model.VisitWaiting}).
		Updates(map[string]any{"status": model.VisitCancelled, "outcome": reason, "finished_at": now}).Error; err != nil {
		return false, fmt.Errorf("journey: cancel visits: %w", err)
	}
	return true, nil
}

// goalArm is the prefix the outcome of a split visit gets once its
// enrollment reached the goal: "goal/arm:coupon_a".
const goalArm = "goal/"

// markGoalArms records on the split visits of an enrollment that just
// reached the goal that their arm led to it (goalArm), so that the
// statistics count each arm's goals from the visits alone.
func markGoalArms(tx *gorm.DB, enrollmentID int64) error {
	concat := "'" + goalArm + "' || outcome"
	if tx.Dialector.Name() == "mysql" {
		concat = "CONCAT('" + goalArm + "', outcome)"
	}
	if err := tx.Model(&model.StepVisit{}).
		Where("enrollment_id = ? AND status = ? AND (outcome LIKE 'arm:%' OR outcome LIKE 'split:%')", enrollmentID, model.VisitDone).
		Update("outcome", gorm.Expr(concat)).Error; err != nil {
		return fmt.Errorf("journey: record the goal on split visits: %w", err)
	}
	return nil
}

// schedule enqueues the visits' tasks after their transaction committed,
// those due within Config.Horizon (the sweeper queues the others as their
// time comes), and reports whether every enqueue went through.
// A failed enqueue is left to the sweeper; the first one ends the batch
// (Redis is likely down: the others would wait out the same timeout) and
// is logged once. An overdue visit whose task already exists but waits in
// asynq's retry or scheduled set, or was archived, has that task run now
// (see Config.Inspector): the database says it is due, so it runs on time
// after an outage rather than when asynq's retry comes.
func (e *Engine) schedule(visits ...*model.StepVisit) bool {
	if e.cfg.Queue == nil {
		e.log.Error("cannot enqueue step tasks: journey.Config.Queue is required", "visits", len(visits))
		return false
	}
	now := e.now()
	horizon := now.Add(e.cfg.Horizon)
	for i, v := range visits {
		if v == nil || v.DueAt.After(horizon) {
			continue // the sweeper queues it when it comes within the horizon
		}
		queue := e.queueOf(v)
		t, opts := NewRunStepTask(v.ID, v.DueAt, queue)
		_, err := e.cfg.Queue.Enqueue(t, opts...)
		switch {
		case err == nil:
		case errors.Is(err, asynq.ErrTaskIDConflict):
			if v.DueAt.Before(now) {
				e.hurry(v.ID, StepTaskID(v.ID, v.DueAt), queue)
			}
		default:
			e.log.Warn("enqueue step failed; the sweeper will retry", "visit", v.ID, "not_enqueued", len(visits)-i, "err", err)
			return false
		}
	}
	return true
}

// queueOf returns the queue of v's step task: QueueUrgent for a send on
// an urgent channel (wecom.welcome), QueueReply for the steps of a journey
// a member's own action triggers (an event of WeChat, WeCom, the
// mini-program, email or SMS), QueueMarketing for the others (brand
// events, schedules, segments). A visit read without its version (v.VersionID
// 0) or whose version cannot be read goes on QueueReply.
func (e *Engine) queueOf(v *model.StepVisit) string {
	if v.VersionID == 0 {
		return QueueReply
	}
	c, err := e.version(e.cfg.DB, v.VersionID)
	if err != nil {
		return QueueReply
	}
	if st, ok := c.steps[v.StepID]; ok && e.cfg.Senders != nil {
		if snd, ok := st.Body.(*Send); ok {
			if caps, ok := e.cfg.Senders.Capabilities(snd.Channel); ok && caps.Urgent {
				return QueueUrgent
			}
		}
	}
	if c.trigger == triggerEvent {
		for _, t := range c.triggerKeys {
			if !memberAction(t) {
				return QueueMarketing
			}
		}
		return QueueReply
	}
	return QueueMarketing
}

// memberAction reports whether events of type t are a member's own action
// (a source's reserved namespace other than the brand's and the engine's).
func memberAction(t string) bool {
	for _, ns := range []string{"wechat.", "wecom.", "miniprogram.", "email.", "sms."} {
		if strings.HasPrefix(t, ns) {
			return true
		}
	}
	return false
}

// standInEvery bounds how often a stand-in task is enqueued for one visit
// whose task looks orphaned.
const standInEvery = 10 * time.Second

// standIn enqueues a task for visitID under a fresh id derived from id and
// the current standInEvery bucket.
func (e *Engine) standIn(visitID int64, id, queue string) {
	t, opts := NewRunStepTask(visitID, time.Now(), queue)
	sid := fmt.Sprintf("%s/standin@%d", id, time.Now().Unix()/int64(standInEvery/time.Second))
	_, err := e.cfg.Queue.Enqueue(t, append(opts, asynq.TaskID(sid))...) // the later TaskID wins
	switch {
	case err == nil:
		e.log.Info("overdue step's task looks orphaned (its worker died?): enqueued a stand-in", "visit", visitID, "task", id)
	case errors.Is(err, asynq.ErrTaskIDConflict):
	default:
		e.log.Warn("enqueueing a stand-in for an orphaned step task failed", "visit", visitID, "err", err)
	}
}

// hurry runs the existing task id of an overdue visit now when asynq holds
// it for later: in the retry set (it failed during an outage and waits out
// its retry delay), the scheduled set, or the archive (its retries ran out).
// A pending or active task is left alone: it runs anyway.
func (e *Engine) hurry(visitID int64, id, queue string) {
	if e.cfg.Inspector == nil {
		return
	}
	info, err := e.cfg.Inspector.GetTaskInfo(queue, id)
	if err != nil {
		// Not found: it finished meanwhile; the next sweep enqueues afresh
		// if the visit is still open.
		if !errors.Is(err, asynq.ErrTaskNotFound) {
			e.log.Warn("looking up an overdue step's task failed", "visit", visitID, "task", id, "err", err)
		}
		return
	}
	switch info.State {
	case asynq.TaskStateRetry, asynq.TaskStateScheduled, asynq.TaskStateArchived:
	case asynq.TaskStateActive:
		// The database says the visit is overdue and unclaimed, yet asynq
		// says a worker holds its task: that worker most likely died (asynq
		// recovers such tasks only after a minute or more). Enqueue a
		// stand-in under another id, at most one per standInEvery per visit;
		// running a visit twice is harmless (its claim is conditional).
		e.standIn(visitID, id, queue)
		return
	default:
		return
	}
	if err := e.cfg.Inspector.RunTask(queue, id); err != nil {
		// It moved on meanwhile (asynq's forwarder made it pending, or it ran).
		e.log.Debug("running an overdue step's task now failed", "visit", visitID, "task", id, "err", err)
		return
	}
	e.log.Info("overdue step's task run now", "visit", visitID, "task", id, "was", info.State.String(), "retried", info.Retried)
}
