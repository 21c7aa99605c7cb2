package journey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wejourney/wejourney/model"
)

// sweepBatch caps how many rows one sweep re-enqueues of each kind.
const sweepBatch = 1000

// errNoQueue is the error of sweeping or recovering without Config.Queue.
var errNoQueue = errors.New("journey: Config.Queue is required to sweep and recover")

// SweepResult says what one sweep re-enqueued: route tasks for Events
// unrouted events and step tasks for Visits overdue visits.
type SweepResult struct {
	Events int // unrouted events
	Visits int // overdue or abandoned step visits
	// Upcoming counts visits due within Config.Horizon queued ahead of
	// their due time (the database keeps later ones; this is normal work,
	// not recovery).
	Upcoming int
}

// Sweep enqueues (never runs) work the database says is overdue, except the
// held visits of paused journeys (Resume queues them): events not routed
// SweepGrace after they were stored (LagGrace while the queue has a backlog), visits due more than SweepGrace ago, and
// running visits whose lease expired (their worker died). With an embedded
// Redis that lost its queue at a restart, the first sweep re-creates it.
// Re-enqueueing is harmless: routing and step runs happen once. A visit
// whose task asynq holds for later (a retry delay, or archived after an
// outage used up its retries) has that task run now (Config.Inspector), so
// after an outage every overdue wait runs at the next sweep.
func (e *Engine) Sweep(ctx context.Context) (SweepResult, error) {
	var r SweepResult
	if e.cfg.Queue == nil {
		return r, errNoQueue
	}
	db := e.cfg.DB.WithContext(ctx)
	cutoff := e.now().Add(-e.cfg.SweepGrace)
	eventCutoff := cutoff
	if e.backlog() {
		eventCutoff = e.now().Add(-max(e.cfg.LagGrace, e.cfg.SweepGrace))
	}
	var ids []int64
	if err := db.Model(&model.Event{}).Where("routed_at IS NULL AND received_at < ?", eventCutoff).
		Order("id").Limit(sweepBatch).Pluck("id", &ids).Error; err != nil {
		return r, fmt.Errorf("journey: sweep events: %w", err)
	}
	if len(ids) > 0 {
		r.Events = len(ids)
		for start := 0; start < len(ids); start += 100 {
			if _, err := e.cfg.Queue.EnqueueContext(ctx, NewRouteEventsTask(ids[start:min(start+100, len(ids))], QueueReply)); err != nil {
				return r, fmt.Errorf("journey: sweep enqueue: %w", err)
			}
		}
	}
	// Overdue visits: scheduled or waiting past their due time, or running
	// past their lease; the sweepBatch earliest due. One query per status,
	// each an ordered range of idx_visit_due (status, due_at) that stops at
	// the limit, whatever the number of visits; an OR of them would read
	// every overdue visit to sort them.
	// Visits of paused journeys are held: left out here, queued by Resume.
	idx, err := e.liveIndex(db)
	if err != nil {
		return r, fmt.Errorf("journey: sweep: %w", err)
	}
	held := pausedIDs(idx.paused)
	var visits []*model.StepVisit
	now := e.now()
	for _, q := range []struct {
		status, where string
		before        time.Time
	}{
		{model.VisitScheduled, "due_at < ?", cutoff},
		{model.VisitWaiting, "due_at < ?", cutoff},
		{model.VisitRunning, "lease_until < ?", now},
	} {
		var some []*model.StepVisit
		sel := db.Select("id", "due_at", "status", "version_id", "step_id").Where("status = ? AND "+q.where, q.status, q.before)
		if len(held) > 0 {
			sel = sel.Where("journey_id NOT IN ?", held)
		}
		if err := sel.Order("due_at").Limit(sweepBatch).Find(&some).Error; err != nil {
			return r, fmt.Errorf("journey: sweep %s visits: %w", q.status, err)
		}
		visits = append(visits, some...)
	}
	slices.SortStableFunc(visits, func(a, b *model.StepVisit) int { return a.DueAt.Compare(b.DueAt) })
	visits = visits[:min(len(visits), sweepBatch)]
	r.Visits = len(visits)
	e.schedule(visits...)
	up, err := e.queueUpcoming(ctx, cutoff, held)
	r.Upcoming = up
	return r, err
}

// queueUpcoming enqueues the scheduled and waiting visits due from
// SweepGrace ago (older ones are overdue: Sweep has them) to Horizon ahead,
// starting where the last sweep of this engine stopped. Each status is an
// ordered range of idx_visit_due. Several engines sweeping queue the same
// visits: their task ids are the same, so each is queued once. Visits of
// the held (paused) journeys are left out: Resume queues them.
func (e *Engine) queueUpcoming(ctx context.Context, cutoff time.Time, held []int64) (int, error) {
	e.mu.Lock()
	from := e.queuedUntil
	e.mu.Unlock()
	if from.Before(cutoff) {
		from = cutoff
	}
	until := e.now().Add(e.cfg.Horizon)
	var visits []*model.StepVisit
	for _, status := range []string{model.VisitScheduled, model.VisitWaiting} {
		var some []*model.StepVisit
		sel := e.cfg.DB.WithContext(ctx).Select("id", "due_at", "status", "version_id", "step_id").
			Where("status = ? AND due_at >= ? AND due_at < ?", status, from, until)
		if len(held) > 0 {
			sel = sel.Where("journey_id NOT IN ?", held)
		}
		if err := sel.Order("due_at").Limit(sweepBatch).Find(&some).Error; err != nil {
			return 0, fmt.Errorf("journey: sweep upcoming %s visits: %w", status, err)
		}
		if len(some) == sweepBatch && some[len(some)-1].DueAt.Before(until) {
			until = some[len(some)-1].DueAt // more to come: the next sweep goes on from here
		}
		visits = append(visits, some...)
	}
	if !e.schedule(visits...) {
		return len(visits), nil // Redis is failing: the next sweep tries the same window
	}
	e.mu.Lock()
	if until.After(e.queuedUntil) {
		e.queuedUntil = until
	}
	e.mu.Unlock()
	return len(visits), nil
}

// backlog reports whether the queue holds pending tasks: the workers are
// behind, and an unrouted event is likely queued rather than lost (see
// Config.LagGrace). Unknown (no Inspector, Redis unreachable) is false.
func (e *Engine) backlog() bool {
	if e.cfg.Inspector == nil {
		return false
	}
	for _, q := range queueNames {
		info, err := e.cfg.Inspector.GetQueueInfo(q)
		if err == nil && info.Pending > 0 {
			return true
		}
	}
	return false
}

// RunSweeper sweeps every interval until ctx ends, starting at once, and
// runs the schedule journeys due (see RunSchedules).
func (e *Engine) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := e.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.Error("sweep failed", "err", err)
		} else if r.Events+r.Visits > 0 {
			e.log.Info("sweeper re-enqueued overdue work", "events", r.Events, "visits", r.Visits)
		}
		e.sweepSchedules(ctx) // schedule and segment journeys due (trigger_schedule.go)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Recover enqueues every open step visit due within Config.Horizon (the
// sweeper queues later ones as they come within it), and
// releases the leases of running ones. Run it at start when this process is
// the only worker and its queue is known to be empty (the embedded default's
// in-process Redis): running visits then belong to a process that died, and
// waits end on time instead of when the sweeper finds them overdue.
func (e *Engine) Recover(ctx context.Context) (int, error) {
	if e.cfg.Queue == nil {
		return 0, errNoQueue
	}
	now := e.now()
	if err := e.cfg.DB.WithContext(ctx).Model(&model.StepVisit{}).Where("status = ? AND lease_until > ?", model.VisitRunning, now).
		Update("lease_until", now.Add(-time.Millisecond)).Error; err != nil {
		return 0, fmt.Errorf("journey: recover leases: %w", err)
	}
	n := 0
	var last int64
	for {
		var visits []*model.StepVisit
		if err := e.cfg.DB.WithContext(ctx).Select("id", "due_at", "status", "version_id", "step_id").
			Where("id > ? AND status IN ?", last, []string{model.VisitScheduled, model.VisitWaiting, model.VisitRunning}).
			Order("id").Limit(sweepBatch).Find(&visits).Error; err != nil {
			return n, fmt.Errorf("journey: recover: %w", err)
		}
		if len(visits) == 0 {
			return n, nil
		}
		for _, v := range visits {
			if v.Status == model.VisitRunning {
				v.DueAt = now
			}
		}
		e.schedule(visits...)
		n += len(visits)
		last = visits[len(visits)-1].ID
	}
}
