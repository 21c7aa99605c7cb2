package journey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/model"
)

// Step visits run in batches: the visits of the step tasks that arrive
// together, and the first visits of the members one routing transaction
// entered into journeys. A batch runs in rounds, one step per visit each:
// the round's messages are recorded in one statement and handed to their
// channels concurrently, outside any transaction, and the round's outcomes,
// enrollment moves and next visits are written in one transaction. Visits
// due at once (a send after a branch) make the next round; the others are
// scheduled. Whatever fails in a batch statement is done again visit by
// visit, as a single visit would be, so a conflict (another worker took a
// visit over) costs time, never a guarantee.

// stepItem is one claimed visit of a batch and what running it needs.
type stepItem struct {
	v      *model.StepVisit
	enr    *model.Enrollment // nil: loaded by the round
	m      *model.Member     // nil: loaded by the round
	origin int               // index of the request whose chain it continues
	reload bool              // enr is from an earlier round: read it again

	// Set by the round.
	c      *Compiled
	cs     *Step
	cancel string // the enrollment ended: the visit is cancelled with this outcome
	res    stepResult
	ho     *handover // a send waiting to be handed over
	snd    *Send
	msg    channels.Message
	failed error // the round failed for this visit: its claim is released
}

// Batch sizes: at most stepBatchMax visits a batch, gatherFlushers batches
// at once per engine (one with a single database slot: batches would only
// queue for it, and a queued request joins the next batch instead).
const (
	stepBatchMax   = 64
	gatherFlushers = 4
)

// RunStep runs the step visit with this id if it is due and not yet run. It
// is safe to call any number of times for the same visit, concurrently: the
// visit is claimed with a conditional update, and a message already handed to
// a channel for this visit is never handed over again. Calls that arrive
// together run as one batch; RunStep returns when its visit's part is done.
func (e *Engine) RunStep(ctx context.Context, visitID int64) error {
	return e.steps.do(ctx, []int64{visitID})
}

// runStepBatch is the step gatherer's run: one visit per request.
func (e *Engine) runStepBatch(ctx context.Context, reqs [][]int64) []error {
	ids := make([]int64, len(reqs))
	for i, r := range reqs {
		ids[i] = r[0]
	}
	return e.runSteps(ctx, ids)
}

// stepTaskTimeout bounds one batch of step tasks (the task's own timeout).
const stepTaskTimeout = time.Minute

// runSteps claims the due visits among ids and runs them as one batch. The
// error at i is that of ids[i]'s visit and the steps it led to at once.
func (e *Engine) runSteps(ctx context.Context, ids []int64) []error {
	errs := make([]error, len(ids))
	db := e.cfg.DB.WithContext(ctx)
	var (
		visits []*model.StepVisit
		paused map[int64]bool
	)
	e.slot.lock(ctx)
	err := db.Where("id IN ?", ids).Find(&visits).Error
	if err == nil {
		paused, err = e.pausedJourneys(db)
	}
	e.slot.unlock(ctx)
	if err != nil {
		err = fmt.Errorf("journey: load visits: %w", err)
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	byID := make(map[int64]*model.StepVisit, len(visits))
	for _, v := range visits {
		byID[v.ID] = v
	}
	now := e.now()
	var claim []*stepItem
	seen := map[int64]bool{}
	for i, id := range ids {
		v := byID[id]
		if v == nil || seen[id] {
			continue // gone, or twice in this batch
		}
		seen[id] = true
		if paused[v.JourneyID] && slices.Contains([]string{model.VisitScheduled, model.VisitWaiting, model.VisitRunning}, v.Status) {
			// Held: the journey is paused. The visit stays as it is, the
			// sweeper leaves it out, and Resume queues it again.
			e.log.Debug("step held: its journey is paused", "visit", v.ID, "step", v.StepID)
			continue
		}
		switch v.Status {
		case model.VisitScheduled, model.VisitWaiting:
			if early := v.DueAt.Sub(now); early > 0 {
				e.notYet(v, early)
				continue
			}
		case model.VisitRunning:
			if v.LeaseUntil != nil && v.LeaseUntil.After(now) {
				continue // another worker holds it
			}
		default:
			continue // done, failed or cancelled
		}
		claim = append(claim, &stepItem{v: v, origin: i})
	}
	if len(claim) == 0 {
		return errs
	}
	claimed, err := e.claim(ctx, claim, now)
	if err != nil {
		for _, it := range claim {
			if !slices.Contains(claimed, it) {
				errs[it.origin] = err
			}
		}
	}
	e.runBatch(ctx, claimed, errs)
	return errs
}

// claim claims the due visits of items, in id order in one transaction
// (two batches claiming the same visits lock them in the same order), and
// returns those it claimed. Should the transaction fail (a deadlock with
// another batch on MySQL), each is claimed on its own.
func (e *Engine) claim(ctx context.Context, items []*stepItem, now time.Time) ([]*stepItem, error) {
	slices.SortFunc(items, func(a, b *stepItem) int { return int(a.v.ID - b.v.ID) })
	lease := now.Add(e.cfg.Lease)
	claimOne := func(tx *gorm.DB, it *stepItem) (bool, error) {
		res := tx.Model(&model.StepVisit{}).
			Where("id = ? AND ((status IN ? AND due_at <= ?) OR (status = ? AND lease_until < ?))",
				it.v.ID, []string{model.VisitScheduled, model.VisitWaiting}, now, model.VisitRunning, now).
			Updates(map[string]any{"status": model.VisitRunning, "lease_until": lease, "attempts": gorm.Expr("attempts + 1")})
		if res.Error != nil {
			return false, fmt.Errorf("journey: claim visit %d: %w", it.v.ID, res.Error)
		}
		return res.RowsAffected == 1, nil
	}
	var claimed []*stepItem
	db := e.cfg.DB.WithContext(ctx)
	e.slot.lock(ctx)
	err := db.Transaction(func(tx *gorm.DB) error {
		claimed = claimed[:0]
		for _, it := range items {
			ok, err := claimOne(tx, it)
			if err != nil {
				return err
			}
			if ok {
				claimed = append(claimed, it)
			}
		}
		return nil
	})
	if err != nil {
		claimed, err = claimed[:0], nil
		for _, it := range items {
			ok, cerr := claimOne(db, it)
			if cerr != nil {
				err = cerr
				break
			}
			if ok {
				claimed = append(claimed, it)
			}
		}
	}
	e.slot.unlock(ctx)
	for _, it := range claimed {
		it.v.Attempts++
		it.v.Status = model.VisitRunning
		it.v.LeaseUntil = &lease
	}
	return claimed, err
}

// notYet handles a step task that arrived before its visit is due: asynq
// keeps due times in whole seconds and may deliver a task up to a second
// early, and a visit may have been rescheduled since its task was queued.
func (e *Engine) notYet(v *model.StepVisit, early time.Duration) {
	if early > holdLimit {
		e.schedule(v)
		return
	}
	// Early by less than asynq's one-second granularity: run it at the due
	// time the database keeps, without holding a worker. Should this
	// process die first, the sweeper runs it.
	id := v.ID
	time.AfterFunc(early, func() {
		if e.cfg.BaseContext.Err() != nil {
			return // shutting down: the next start's sweep runs it
		}
		if err := e.RunStep(e.cfg.BaseContext, id); err != nil {
			e.log.Error("running held step", "visit", id, "err", err)
		}
	})
}

// runBatch runs claimed visits, then each following visit that is due at
// once (created claimed), round after round, until each has to wait or its
// enrollment ends. An item's failure goes to errs[item.origin]; its claim is
// released so that the task's retry or the sweeper runs it again.
func (e *Engine) runBatch(ctx context.Context, items []*stepItem, errs []error) {
	for round := 0; len(items) > 0; round++ {
		if round == maxChain {
			for _, it := range items {
				if err := e.failLoop(ctx, it.v); err != nil {
					errs[it.origin] = errors.Join(errs[it.origin], err)
				}
			}
			return
		}
		e.gate(ctx)
		items = e.runRound(ctx, items, errs)
	}
}

// failLoop fails a visit and its enrollment: the journey went maxChain steps
// without waiting.
func (e *Engine) failLoop(ctx context.Context, v *model.StepVisit) error {
	e.log.Error("journey loops without waiting; failing the enrollment", "enrollment", v.EnrollmentID, "step", v.StepID)
	e.slot.lock(ctx)
	defer e.slot.unlock(ctx)
	return e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&model.StepVisit{}).Where("id = ?", v.ID).Updates(map[string]any{"status": model.VisitFailed, "outcome": "loop", "finished_at": e.now()}).Error; err != nil {
			return err
		}
		return endEnrollment(tx, v.EnrollmentID, model.EnrollmentFailed, "loop", e.now(), true)
	})
}

// runRound runs one step of every item and returns the visits due next.
func (e *Engine) runRound(ctx context.Context, items []*stepItem, errs []error) []*stepItem {
	fail := func(it *stepItem, err error) {
		it.failed = err
		errs[it.origin] = errors.Join(errs[it.origin], err)
		e.releaseClaim(it.v)
	}
	if err := e.loadItems(ctx, items); err != nil {
		for _, it := range items {
			fail(it, err)
		}
		return nil
	}
	stop := e.keepClaims(items)
	defer stop()

	// Run every step body; sends are prepared, to be handed over together.
	var sends []*stepItem
	e.slot.lock(ctx)
	now := e.now()
	db := e.cfg.DB.WithContext(ctx)
	// The members' recent messages, read once for the round's frequency
	// caps when a send needs them.
	var watch *capWatch
	roundCaps := func(time.Duration) (*capWatch, error) {
		if watch != nil {
			return watch, nil
		}
		longest := longestCap(e.cfg.FrequencyCaps) // the round's longest, over every version in it
		members := make([]int64, 0, len(items))
		for _, it := range items {
			if c, err := e.version(db, it.enr.VersionID); err == nil {
				longest = max(longest, longestCap(c.caps))
			}
			members = append(members, it.v.MemberID)
		}
		w, err := e.watchCaps(db, members, longest, now)
		watch = w
		return w, err
	}
	paused, perr := e.pausedJourneys(db)
	for _, it := range items {
		if perr != nil {
			fail(it, perr)
			continue
		}
		if it.enr.Status != model.EnrollmentActive {
			it.cancel = it.enr.EndReason
			continue
		}
		if paused[it.enr.JourneyID] {
			// The journey was paused while the member went from step to
			// step: this step is held (scheduled, due now) until it resumes.
			it.res = stepResult{retryAt: now, why: "journey paused: held until it is resumed", keepAttempts: true}
			continue
		}
		c, err := e.version(db, it.enr.VersionID)
		if err != nil {
			fail(it, err)
			continue
		}
		it.c, it.cs = c, c.steps[it.v.StepID]
		if it.cs == nil {
			it.res = stepResult{outcome: "missing step", status: model.VisitFailed, endReason: ReasonFailed}
			continue
		}
		vars := env{"event": it.enr.Event, "member": memberEnv(it.m)}
		if vars["event"] == nil {
			vars["event"] = map[string]any{}
		}
		if snd, ok := it.cs.Body.(*Send); ok && !snd.held(e.quietOf(c), c, it.enr, now) {
			if res, err := e.capped(roundCaps, c, it.cs, snd, it.enr, it.m, it.v, now); err != nil {
				fail(it, err)
				continue
			} else if res != nil {
				it.res = *res
				continue
			}
			msg, bad := e.renderSend(snd, it.v, it.enr, vars)
			if bad != nil {
				it.res = *bad
				continue
			}
			it.snd, it.msg = snd, msg
			it.ho = e.newHandover(it.cs, it.enr, it.v, it.m, snd.Channel, msg, now)
			sends = append(sends, it)
			continue
		}
		res, err := it.cs.Body.Run(&Run{Ctx: ctx, Step: it.cs, Visit: it.v, Enrollment: it.enr, Member: it.m, Now: now, e: e, c: c, vars: vars})
		if err != nil {
			fail(it, err)
			continue
		}
		it.res = res.internal()
	}
	e.slot.unlock(ctx)

	e.handOverAll(ctx, sends, now)
	return e.finishRound(ctx, items, errs)
}

// loadItems loads the items' enrollments (every round: one may have ended
// since) and the members not loaded yet, one query each.
func (e *Engine) loadItems(ctx context.Context, items []*stepItem) error {
	var enrIDs, memberIDs []int64
	for _, it := range items {
		if it.enr == nil || it.reload {
			enrIDs = append(enrIDs, it.v.EnrollmentID)
		}
		if it.m == nil {
			memberIDs = append(memberIDs, it.v.MemberID)
		}
	}
	e.slot.lock(ctx)
	defer e.slot.unlock(ctx)
	db := e.cfg.DB.WithContext(ctx)
	enrs, err := byID[model.Enrollment](db, enrIDs, func(x *model.Enrollment) int64 { return x.ID })
	if err != nil {
		return fmt.Errorf("journey: load enrollments: %w", err)
	}
	members, err := byID[model.Member](db, memberIDs, func(x *model.Member) int64 { return x.ID })
	if err != nil {
		return fmt.Errorf("journey: load members: %w", err)
	}
	for _, it := range items {
		if enr := enrs[it.v.EnrollmentID]; enr != nil {
			it.enr = enr
		}
		if it.m == nil {
			it.m = members[it.v.MemberID]
		}
	}
	for _, it := range items {
		if it.enr == nil || it.m == nil {
			return fmt.Errorf("journey: visit %d: enrollment %d or member %d not found", it.v.ID, it.v.EnrollmentID, it.v.MemberID)
		}
		it.c, it.cs, it.cancel, it.res, it.ho, it.snd, it.failed = nil, nil, "", stepResult{}, nil, nil, nil
	}
	return nil
}

// byID loads the rows with these ids (none: no query) by their id.
func byID[T any](db *gorm.DB, ids []int64, id func(*T) int64) (map[int64]*T, error) {
	out := make(map[int64]*T, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var rows []*T
	if err := db.Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, err
	}
	for _, r := range rows {
		out[id(r)] = r
	}
	return out, nil
}

// keepClaims renews the claims of the round's visits every third of the
// lease until the returned stop is called, so a step that takes longer than
// the lease (a slow channel) is not taken over by another worker. Rounds
// that finish within a third of the lease cost no write.
func (e *Engine) keepClaims(items []*stepItem) (stop func()) {
	every := e.cfg.Lease / 3
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-e.cfg.BaseContext.Done():
				return
			case <-t.C:
				for _, it := range items {
					if err := e.setLease(it.v.ID, it.v.Attempts, e.now().Add(e.cfg.Lease), every); err != nil {
						e.log.Warn("renewing a step's claim failed", "visit", it.v.ID, "err", err)
					}
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// handOverAll records the round's messages and hands them to their
// channels, in groups of handOverGroup side by side: each group's delivery
// rows are recorded (as sending) in one statement, then its messages are
// sent at once. A message recorded but not yet sent when the process dies
// is never sent (it stays sending, then unknown: at most one message per
// step), so the time between the two is kept to one small group's sends
// rather than a whole batch's. A visit that ran before (a retry) may have
// its delivery recorded already: it goes the single-visit way, as does a
// group whose statement fails.
func (e *Engine) handOverAll(ctx context.Context, sends []*stepItem, now time.Time) {
	var fresh, again []*stepItem
	for _, it := range sends {
		if it.v.Attempts == 1 {
			fresh = append(fresh, it)
		} else {
			again = append(again, it)
		}
	}
	var g errgroup.Group
	g.SetLimit(handOverGroups)
	for start := 0; start < len(fresh); start += handOverGroup {
		group := fresh[start:min(start+handOverGroup, len(fresh))]
		g.Go(func() error {
			rows := make([]*model.Delivery, len(group))
			for i, it := range group {
				rows[i] = &it.ho.d
			}
			e.slot.lock(ctx)
			err := e.cfg.DB.WithContext(ctx).Create(&rows).Error
			e.slot.unlock(ctx)
			e.sendEach(ctx, group, err == nil, now)
			return nil
		})
	}
	if len(again) > 0 {
		g.Go(func() error {
			e.sendEach(ctx, again, false, now)
			return nil
		})
	}
	g.Wait()
}

// Hand-over groups: handOverGroup messages recorded by one statement,
// handOverGroups groups at once.
const (
	handOverGroup  = 8
	handOverGroups = 8
)

// sendEach sends the items' messages side by side: recorded ones are handed
// over, the others delivered the single-visit way (which records them).
func (e *Engine) sendEach(ctx context.Context, items []*stepItem, recorded bool, now time.Time) {
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r stepResult
			if recorded {
				r = e.handOver(ctx, it.ho, it.cs, it.v, it.m, now)
			} else {
				e.slot.lock(ctx)
				r = e.deliver(ctx, it.cs, it.enr, it.v, it.m, it.snd.Channel, it.msg, now)
				e.slot.unlock(ctx)
			}
			e.slot.lock(ctx)
			it.res = e.afterSend(ctx, it.snd, it.cs, it.enr, it.v, it.m, it.msg, r, now)
			e.slot.unlock(ctx)
		}()
	}
	wg.Wait()
}

// finishRound writes the round's outcomes in one transaction: deliveries,
// visit outcomes, enrollment moves and ends, and the next visits (one
// statement). Should it fail, each visit is finished on its own. It returns
// the next visits that are due at once, claimed.
func (e *Engine) finishRound(ctx context.Context, items []*stepItem, errs []error) []*stepItem {
	type finished struct {
		it   *stepItem
		next *model.StepVisit
		ok   bool // the transition was made here (not by another worker)
	}
	var done []finished
	now := e.now()
	e.slot.lock(ctx)
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		done = done[:0]
		g := roundWrites{finish: map[[2]string][]int64{}, end: map[[2]string][]int64{}, advance: map[string][]int64{}}
		var create []*model.StepVisit
		for _, it := range items {
			if it.failed != nil {
				continue
			}
			f := finished{it: it}
			switch {
			case it.cancel != "":
				if err := tx.Model(&model.StepVisit{}).Where("id = ? AND status = ?", it.v.ID, model.VisitRunning).
					Updates(map[string]any{"status": model.VisitCancelled, "outcome": it.cancel, "finished_at": now}).Error; err != nil {
					return fmt.Errorf("journey: cancel visit: %w", err)
				}
			case !it.res.retryAt.IsZero():
				if err := rescheduleVisit(tx, it.v, it.res); err != nil {
					return err
				}
				f.ok = true
			default:
				if err := applyDeliveries(tx, it.res.deliveries); err != nil {
					return err
				}
				r := it.res
				g.finish[[2]string{r.status, r.outcome}] = append(g.finish[[2]string{r.status, r.outcome}], it.v.ID)
				f.ok = true
				switch {
				case r.next != "":
					g.advance[r.next] = append(g.advance[r.next], it.enr.ID)
					f.next = buildVisit(it.c, it.enr, it.m, it.v.Seq+1, r.next, now, e.cfg.Lease)
					create = append(create, f.next)
				case r.endReason == ReasonCompleted:
					g.end[[2]string{model.EnrollmentCompleted, r.endReason}] = append(g.end[[2]string{model.EnrollmentCompleted, r.endReason}], it.enr.ID)
				default: // failed: its open visits are cancelled too
					if err := endEnrollment(tx, it.enr.ID, model.EnrollmentFailed, r.endReason, now, true); err != nil {
						return err
					}
				}
			}
			done = append(done, f)
		}
		if err := g.write(tx, now); err != nil {
			return err
		}
		if len(create) > 0 {
			if err := tx.Create(&create).Error; err != nil {
				return fmt.Errorf("journey: create visits: %w", err)
			}
		}
		return nil
	})
	e.slot.unlock(ctx)
	if err != nil {
		e.log.Debug("finishing a round in one transaction failed; finishing its visits one by one", "visits", len(items), "err", err)
		return e.finishEach(ctx, items, errs)
	}
	var next []*stepItem
	for _, f := range done {
		it := f.it
		if !f.ok {
			continue
		}
		if !it.res.retryAt.IsZero() {
			e.rescheduled(it.v, it.res)
			continue
		}
		e.counted(it.res)
		if f.next == nil {
			continue
		}
		if f.next.Status != model.VisitRunning {
			e.schedule(f.next)
			continue
		}
		it.enr.StepID = f.next.StepID
		next = append(next, &stepItem{v: f.next, enr: it.enr, m: it.m, origin: it.origin, reload: true})
	}
	return next
}

// roundWrites are a round's outcomes that one statement each writes: visits
// finished by (status, outcome), enrollments completed by (status, reason)
// and moved on by next step.
type roundWrites struct {
	finish  map[[2]string][]int64
	end     map[[2]string][]int64
	advance map[string][]int64
}

// errRoundConflict sends a round back to finishing visit by visit: another
// worker finished one of its visits, or ended one of its enrollments.
var errRoundConflict = errors.New("journey: a round's visit or enrollment moved meanwhile")

// write runs the statements, ids in order (two rounds locking rows in the
// same order cannot deadlock). The rows are first read and locked by
// primary key, then updated by primary key: an update by id whose status
// condition PostgreSQL can match to a partial index (visits by status,
// active enrollments) may be planned as a read of that whole index, which
// holds an entry for every visit recently running.
func (w roundWrites) write(tx *gorm.DB, now time.Time) error {
	var visits, enrs []int64
	for _, ids := range w.finish {
		visits = append(visits, ids...)
	}
	for _, ids := range w.end {
		enrs = append(enrs, ids...)
	}
	for _, ids := range w.advance {
		enrs = append(enrs, ids...)
	}
	status, err := lockStatuses(tx, &model.StepVisit{}, visits)
	if err != nil {
		return err
	}
	for _, id := range visits {
		if status[id] != model.VisitRunning {
			return errRoundConflict
		}
	}
	enrStatus, err := lockStatuses(tx, &model.Enrollment{}, enrs)
	if err != nil {
		return err
	}
	for _, k := range sortedPairs(w.finish) {
		if err := tx.Model(&model.StepVisit{}).Where("id IN ?", sortedIDs(w.finish[k])).
			Updates(map[string]any{"status": k[0], "outcome": k[1], "finished_at": now, "lease_until": nil}).Error; err != nil {
			return fmt.Errorf("journey: finish visits: %w", err)
		}
	}
	for _, k := range sortedPairs(w.end) {
		// One that ended meanwhile (an exit) keeps how it ended.
		ids := slices.DeleteFunc(sortedIDs(w.end[k]), func(id int64) bool { return enrStatus[id] != model.EnrollmentActive })
		if len(ids) == 0 {
			continue
		}
		if err := tx.Model(&model.Enrollment{}).Where("id IN ?", ids).
			Updates(map[string]any{"status": k[0], "end_reason": k[1], "ended_at": now, "active_key": nil}).Error; err != nil {
			return fmt.Errorf("journey: end enrollments: %w", err)
		}
	}
	for _, next := range sortedKeys(w.advance) {
		ids := sortedIDs(w.advance[next])
		for _, id := range ids {
			if enrStatus[id] != model.EnrollmentActive {
				return errRoundConflict // it exited meanwhile: it gets no next visit
			}
		}
		if err := tx.Model(&model.Enrollment{}).Where("id IN ?", ids).Update("step_id", next).Error; err != nil {
			return fmt.Errorf("journey: advance enrollments: %w", err)
		}
	}
	return nil
}

// lockStatuses reads and locks the rows of a table by primary key and
// returns their statuses (SQLite, with one writer, needs no lock).
func lockStatuses(tx *gorm.DB, table any, ids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var rows []struct {
		ID     int64
		Status string
	}
	if err := tx.Model(table).Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate}).
		Select("id", "status").Where("id IN ?", sortedIDs(ids)).Order("id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("journey: lock rows: %w", err)
	}
	for _, r := range rows {
		out[r.ID] = r.Status
	}
	return out, nil
}

func sortedIDs(ids []int64) []int64 {
	slices.Sort(ids)
	return ids
}

func sortedPairs(m map[[2]string][]int64) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	return keys
}

// finishEach finishes the round's visits one transaction each, after the
// round's transaction failed.
func (e *Engine) finishEach(ctx context.Context, items []*stepItem, errs []error) []*stepItem {
	var next []*stepItem
	for _, it := range items {
		if it.failed != nil {
			continue
		}
		var (
			nv  *model.StepVisit
			err error
		)
		e.slot.lock(ctx)
		switch {
		case it.cancel != "":
			err = e.cfg.DB.WithContext(ctx).Model(&model.StepVisit{}).Where("id = ? AND status = ?", it.v.ID, model.VisitRunning).
				Updates(map[string]any{"status": model.VisitCancelled, "outcome": it.cancel, "finished_at": e.now()}).Error
		case !it.res.retryAt.IsZero():
			err = e.reschedule(ctx, it.v, it.res)
		default:
			nv, err = e.finish(ctx, it.c, it.enr, it.m, it.v, it.res, e.now())
		}
		e.slot.unlock(ctx)
		if err != nil {
			errs[it.origin] = errors.Join(errs[it.origin], err)
			e.releaseClaim(it.v)
			continue
		}
		switch {
		case nv == nil:
		case nv.Status != model.VisitRunning:
			e.schedule(nv)
		default:
			next = append(next, &stepItem{v: nv, enr: it.enr, m: it.m, origin: it.origin, reload: true})
		}
	}
	return next
}
