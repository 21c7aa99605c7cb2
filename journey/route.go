package journey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/model"
)

// maxRouteAttempts parks an event that keeps failing to route.
const maxRouteAttempts = 5

// routeEach routes the events with these ids one transaction each, one
// after another in id order (see Route): what a batch cannot route, a
// single event, and events that name no member.
func (e *Engine) routeEach(ctx context.Context, ids ...int64) error {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	var errs []error
	for _, id := range ids {
		e.gate(ctx)
		if err := e.routeOne(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// routeOne routes one event. A member's events are routed in the order they
// were stored: earlier events of the same member that are still unrouted
// (stored in another batch, picked up by another worker) are routed first,
// in the same transaction. One that fails is left to its own task.
func (e *Engine) routeOne(ctx context.Context, id int64) error {
	var r routed
	now := e.now()
	e.slot.lock(ctx)
	var err error
	// A deadlock with another worker's batch (MySQL's gap locks on the
	// unique indexes) is run again before it counts as a failure.
	for attempt := 0; attempt == 0 || (attempt < routeRetries && (model.Retryable(err) || errors.Is(err, errIdentityRace))); attempt++ {
		err = e.routeOneTx(ctx, id, now, &r)
	}
	e.slot.unlock(ctx)
	return e.routeOneDone(ctx, id, r, err)
}

// routeRetries bounds the runs of one event's routing transaction that
// lose a lock conflict or an identity race.
const routeRetries = 3

// errIdentityRace: an identity this transaction did not find was added by
// another one meanwhile (a member's first events routed side by side; on
// MySQL a repeatable-read snapshot hides the other's commit). The
// transaction rolls back and runs again, and then finds the member.
var errIdentityRace = errors.New("journey: an identity was added meanwhile")

// routeOneTx is routeOne's transaction.
func (e *Engine) routeOneTx(ctx context.Context, id int64, now time.Time, rp *routed) error {
	var r routed
	defer func() { *rp = r }()
	return e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		r = routed{}
		var ev model.Event
		if err := tx.First(&ev, id).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return nil
			}
			return fmt.Errorf("journey: load event %d: %w", id, err)
		}
		if ev.RoutedAt != nil {
			return nil
		}
		if ev.MemberKey != "" {
			var earlier []model.Event
			if err := tx.Where("member_key = ? AND routed_at IS NULL AND id < ?", ev.MemberKey, ev.ID).
				Order("id").Find(&earlier).Error; err != nil {
				return fmt.Errorf("journey: load earlier events: %w", err)
			}
			for i := range earlier {
				err := tx.Transaction(func(sub *gorm.DB) error { // a savepoint
					return e.routeEvent(sub, &earlier[i], now, &r)
				})
				if err != nil && !errors.Is(err, errConflict) {
					e.log.Warn("routing an earlier event of the member failed; it is retried on its own", "event", earlier[i].ID, "err", err)
				}
			}
		}
		return e.routeEvent(tx, &ev, now, &r)
	})
}

// routeOneDone does what follows routeOne's transaction.
func (e *Engine) routeOneDone(ctx context.Context, id int64, r routed, err error) error {
	if errors.Is(err, errConflict) {
		return nil
	}
	if err != nil {
		e.recordRouteFailure(id, err)
		return err
	}
	for _, it := range r.claimed {
		it.m = r.member // all one member's: as the last event left it
	}
	return e.routed(ctx, r)
}

// routed does what routing left to do once its transaction committed:
// count the events, schedule the waiting visits and run the claimed ones.
func (e *Engine) routed(ctx context.Context, r routed) error {
	for _, t := range r.types {
		e.metrics.routed.WithLabelValues(EventLabel(t)).Inc()
	}
	e.schedule(r.waiting...)
	if len(r.emitted) > 0 && e.cfg.Queue != nil {
		// Should this fail, the sweeper routes them.
		if _, err := e.cfg.Queue.EnqueueContext(ctx, NewRouteEventsTask(r.emitted, QueueMarketing)); err != nil {
			e.log.Warn("enqueueing the events routing emitted failed; the sweeper routes them", "events", len(r.emitted), "err", err)
		}
	}
	errs := make([]error, 1)
	e.runBatch(ctx, r.claimed, errs)
	return errs[0]
}

// routed is what routing left to do once its transaction commits: visits
// created claimed run at once, waiting ones are scheduled.
type routed struct {
	claimed []*stepItem // with their members
	waiting []*model.StepVisit
	types   []string      // of the routed events
	member  *model.Member // as the last routed event left it
	emitted []int64       // engine events stored while routing, to route next
}

// routeEvent routes one unrouted event inside tx and adds its follow-up
// work to r (only when it succeeds, so a rolled-back savepoint adds nothing).
func (e *Engine) routeEvent(tx *gorm.DB, ev *model.Event, now time.Time, r *routed) error {
	var (
		before   map[string]any
		optedOut map[string]time.Time
	)
	emit := emitsEvents(ev)
	m, err := e.resolveMember(tx, ev.Member, now, func(m *model.Member) {
		if emit {
			before = maps.Clone(m.Attrs)
			optedOut = maps.Clone(m.OptOuts)
		}
		e.cfg.Sources.Apply(m, ev)
		m.UpdatedAt = now
	})
	if err != nil {
		return err
	}
	// Marking the event routed is conditional: if another worker routed it
	// meanwhile, the transaction rolls back and nothing happens twice.
	res := tx.Model(&model.Event{}).Where("id = ? AND routed_at IS NULL", ev.ID).
		Updates(map[string]any{"routed_at": now, "member_id": m.ID})
	if res.Error != nil {
		return fmt.Errorf("journey: mark event %d routed: %w", ev.ID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errConflict
	}
	if emit {
		ids, err := emitAttributeChanges(tx, fmt.Sprintf("attr:%d", ev.ID), ev.Member, before, m.Attrs, now)
		if err != nil {
			return err
		}
		r.emitted = append(r.emitted, ids...)
		if ids, err = emitOptOuts(tx, ev, optedOut, m.OptOuts, now); err != nil {
			return err
		}
		r.emitted = append(r.emitted, ids...)
	}
	return e.routeEffects(tx, ev, m, nil, nil, now, r)
}

// routeEffects applies a routed event to its member's journeys inside tx:
// exits, wait_for resumes, entries. active, if not nil, holds the member's
// active enrollments (loaded by the caller; entries are added to it); nil
// loads them. With pend (a batch), entries are inserted later, many at
// once (see pendingEntries). The follow-up work goes to r (only when it
// succeeds, so a rolled-back savepoint adds nothing).
func (e *Engine) routeEffects(tx *gorm.DB, ev *model.Event, m *model.Member, active *[]model.Enrollment, pend *pendingEntries, now time.Time, r *routed) error {
	if err := recordGrant(tx, ev, m, now); err != nil { // subscription-message authorisations (grants.go)
		return err
	}
	if pend.has(m.ID) {
		// This member's earlier event entered journeys: this one may exit them.
		if err := pend.flush(tx, e, now, r); err != nil {
			return err
		}
	}
	vars := env{"event": eventEnv(ev), "member": memberEnv(m)}
	visits, err := e.routeToEnrollments(tx, ev, m, vars, now, active)
	if err != nil {
		return err
	}
	live, err := e.triggers(tx, triggerEvent, ev.Type)
	manual := isManualEnroll(ev)
	if manual {
		key, _ := ev.Props["journey"].(string)
		live, err = e.triggers(tx, triggerManual, key)
	}
	if err != nil {
		return err
	}
	var why []string // per journey, why the member did not enter it
	entered := false
	for _, lj := range live {
		if !manual && !e.eval(lj.c.where, vars) {
			why = append(why, lj.c.Def.Key+": where was false")
			continue
		}
		var (
			v      *model.StepVisit
			reason string
		)
		if pend != nil {
			reason, err = e.enrollLater(tx, lj, m, ev, now, active, pend)
		} else {
			v, reason, err = e.enroll(tx, lj, m, ev, now, active)
		}
		if err != nil {
			return err
		}
		if reason != "" {
			why = append(why, lj.c.Def.Key+": "+reason)
			continue
		}
		entered = true
		visits = append(visits, v)
	}
	if !entered {
		if len(live) == 0 {
			why = []string{"no journey triggers on " + ev.Type}
		}
		e.log.Debug("event entered no journey", "event", ev.ID, "type", ev.Type, "member", m.ID, "why", strings.Join(why, "; "))
	}
	for _, v := range visits {
		switch {
		case v == nil:
		case v.Status == model.VisitRunning:
			r.claimed = append(r.claimed, &stepItem{v: v, m: m})
		default:
			r.waiting = append(r.waiting, v)
		}
	}
	r.types = append(r.types, ev.Type)
	r.member = m
	return nil
}

func (e *Engine) recordRouteFailure(id int64, cause error) {
	ctx := context.Background()
	e.slot.lock(ctx)
	defer e.slot.unlock(ctx)
	e.log.Error("routing event failed", "event", id, "err", cause)
	upd := map[string]any{"attempts": gorm.Expr("attempts + 1"), "error": redact.String(cause.Error())}
	var ev model.Event
	if err := e.cfg.DB.Select("attempts").First(&ev, id).Error; err == nil && ev.Attempts+1 >= maxRouteAttempts {
		upd["routed_at"] = e.now() // parked: visible with its error, not retried
	}
	if err := e.cfg.DB.Model(&model.Event{}).Where("id = ? AND routed_at IS NULL", id).Updates(upd).Error; err != nil {
		e.log.Error("recording routing failure", "event", id, "err", err)
	}
}

// routeToEnrollments applies an event to the member's active enrollments
// (preloaded, or nil to load them): exit rules end them, a matching
// wait_for resumes them.
func (e *Engine) routeToEnrollments(tx *gorm.DB, ev *model.Event, m *model.Member, vars env, now time.Time, preloaded *[]model.Enrollment) ([]*model.StepVisit, error) {
	var active []model.Enrollment
	if preloaded != nil {
		active = *preloaded
	} else if err := tx.Where(activeOf, m.ID).Find(&active).Error; err != nil {
		return nil, fmt.Errorf("journey: load enrollments: %w", err)
	}
	var next []*model.StepVisit
	for i := range active {
		enr := &active[i]
		if enr.Status != model.EnrollmentActive {
			continue // ended earlier in this transaction
		}
		if enr.TriggerEventID == ev.ID {
			continue
		}
		c, err := e.version(tx, enr.VersionID)
		if err != nil {
			return nil, err
		}
		// The goal first: an event that is both the goal and an exit
		// (order.paid) is a conversion.
		status, reason := "", ""
		if g := c.goal; g != nil && e.matches(g, ev.Type, vars) {
			status, reason = model.EnrollmentGoal, g.reason("goal")
		}
		for i := 0; status == "" && i < len(c.exits); i++ {
			if r := &c.exits[i]; e.matches(r, ev.Type, vars) {
				status, reason = model.EnrollmentExited, r.reason("exit")
			}
		}
		if status != "" {
			ended, err := endEnrollmentIf(tx, enr.ID, status, reason, now, true)
			if err != nil {
				return nil, err
			}
			if ended && status == model.EnrollmentGoal {
				if err := markGoalArms(tx, enr.ID); err != nil {
					return nil, err
				}
			}
			enr.Status = status
			continue
		}
		cs := c.steps[enr.StepID]
		if cs == nil {
			continue
		}
		w, ok := cs.Body.(eventWaiter)
		if !ok || !w.resumes(e, ev, vars, enr) {
			continue
		}
		var v model.StepVisit
		err = tx.Where("enrollment_id = ? AND step_id = ? AND status = ?", enr.ID, enr.StepID, model.VisitWaiting).
			Order("seq DESC").First(&v).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("journey: load waiting visit: %w", err)
		}
		if !w.inTime(ev, &v, now) {
			continue
		}
		nv, err := finishVisit(tx, c, enr, m, &v, model.VisitWaiting, model.VisitDone, "matched", cs.Next, ReasonCompleted, now, e.cfg.Lease)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		next = append(next, nv)
	}
	return next, nil
}

// matches reports whether an exit rule or goal holds for an event of type
// eventType routed with vars: an event rule when the type is its event
// and its where holds, an expression rule (when) whenever its expression
// holds for the member as the event left them.
func (e *Engine) matches(r *compiledRule, eventType string, vars env) bool {
	return (r.event == "" || r.event == eventType) && e.eval(r.where, vars)
}

// eventWaiter is a step body a matching event resumes (wait_for).
type eventWaiter interface {
	// resumes reports whether ev (with vars: it and the member) ends the
	// wait of enrollment enr.
	resumes(e *Engine, ev *model.Event, vars env, enr *model.Enrollment) bool
	// inTime reports whether ev, routed at now, came in time for the
	// waiting visit v.
	inTime(ev *model.Event, v *model.StepVisit, now time.Time) bool
}

// Reasons enroll gives for not entering a member into a journey.
const (
	whyOnce     = "entry.once and already entered"
	whyCooldown = "entry.cooldown since the last entry"
	whyActive   = "already active in this journey"
	whyFull     = "entry.max_active: the journey holds as many members as it may"
)

// activeOf selects a member's active enrollments. The status is a literal,
// not a parameter, so that even a prepared statement's generic plan matches
// the partial index on active enrollments (idx_enrollments_member_active).
const activeOf = "member_id = ? AND status = '" + model.EnrollmentActive + "'"

// activeOfMembers is activeOf for several members.
const activeOfMembers = "member_id IN ? AND status = '" + model.EnrollmentActive + "'"

// enroll enters the member into a live journey if its entry rules allow and
// returns the first visit, or nil and why the member was not entered. A new
// enrollment is added to active, when not nil.
func (e *Engine) enroll(tx *gorm.DB, lj liveJourney, m *model.Member, ev *model.Event, now time.Time, active *[]model.Enrollment) (*model.StepVisit, string, error) {
	if why, err := entryRules(tx, lj, m, now, 0); why != "" || err != nil {
		return nil, why, err
	}
	enr := newEnrollment(lj, m, ev, now)
	res := model.InsertIgnore(tx).Create(enr)
	if res.Error != nil {
		return nil, "", fmt.Errorf("journey: enroll: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return nil, whyActive, nil
	}
	if active != nil {
		*active = append(*active, *enr)
	}
	v, err := newVisit(tx, lj.c, enr, m, 1, lj.c.first, now, e.cfg.Lease)
	return v, "", err
}

// entryRules checks the journey's entry rules (once, cooldown, max_active)
// for the member and says why it may not enter ("" when it may). pending
// counts the entries into the journey a batch made and has not inserted
// yet. max_active is checked last: it may lock the journey's row.
func entryRules(tx *gorm.DB, lj liveJourney, m *model.Member, now time.Time, pending int) (string, error) {
	entry := lj.c.Def.Entry
	if entry.Once || entry.Cooldown > 0 {
		q := tx.Model(&model.Enrollment{}).Where("journey_id = ? AND member_id = ?", lj.journeyID, m.ID)
		if entry.Cooldown > 0 {
			q = q.Where("entered_at > ?", now.Add(-time.Duration(entry.Cooldown)))
		}
		var n int64
		if err := q.Count(&n).Error; err != nil {
			return "", fmt.Errorf("journey: entry check: %w", err)
		}
		switch {
		case n == 0:
		case entry.Once:
			return whyOnce, nil
		default:
			return whyCooldown, nil
		}
	}
	if entry.MaxActive > 0 {
		full, err := journeyFull(tx, lj.journeyID, entry.MaxActive-pending)
		if err != nil {
			return "", err
		}
		if full {
			return whyFull, nil
		}
	}
	return "", nil
}

// journeyFull reports whether the journey already has room active
// enrollments or more (room <= 0: full). Where the database locks rows
// (not SQLite, whose writers take turns anyway), the journey's row is
// locked first: entries into a journey with entry.max_active take turns
// until their transactions commit, so two workers never both enter the
// last member the journey has room for.
func journeyFull(tx *gorm.DB, journeyID int64, room int) (bool, error) {
	if room <= 0 {
		return true, nil
	}
	if tx.Dialector.Name() != "sqlite" {
		var j model.Journey
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("id").First(&j, journeyID).Error; err != nil {
			return false, fmt.Errorf("journey: lock journey %d: %w", journeyID, err)
		}
	}
	// At most room rows are read, from the index on (journey_id, status).
	var n int64
	if err := tx.Raw("SELECT COUNT(*) FROM (SELECT 1 FROM enrollments WHERE journey_id = ? AND status = '"+
		model.EnrollmentActive+"' LIMIT ?) capped", journeyID, room).Scan(&n).Error; err != nil {
		return false, fmt.Errorf("journey: count active enrollments: %w", err)
	}
	return n >= int64(room), nil
}

// newEnrollment is the member's active enrollment in the journey, to insert.
func newEnrollment(lj liveJourney, m *model.Member, ev *model.Event, now time.Time) *model.Enrollment {
	key := activeKey(lj.journeyID, m.ID)
	return &model.Enrollment{
		JourneyID: lj.journeyID, VersionID: lj.versionID, MemberID: m.ID, Status: model.EnrollmentActive,
		ActiveKey: &key, StepID: lj.c.first, TriggerEventID: ev.ID, Event: eventEnv(ev), EnteredAt: now,
		EnteredDay: model.EntryDay(now),
	}
}

// activeKey is Enrollment.ActiveKey of an active enrollment: a member is in
// a journey at most once at a time.
func activeKey(journeyID, memberID int64) string { return fmt.Sprintf("%d:%d", journeyID, memberID) }

// resolveMember finds the member the reference names, creating it or
// attaching new identities as needed, and saves it after apply changed it.
// When the reference's identities belong to several members that are one
// person (see mergeable), they are merged into the oldest first.
func (e *Engine) resolveMember(tx *gorm.DB, ref model.MemberRef, now time.Time, apply func(*model.Member)) (*model.Member, error) {
	ids := identities(ref)
	if len(ids) == 0 {
		return nil, fmt.Errorf("journey: event names no member")
	}
	// One primary-key lookup per identity: an OR of pairs would scan.
	var found []model.MemberIdentity
	for _, id := range ids {
		var f []model.MemberIdentity
		if err := tx.Where("kind = ? AND value = ?", id.Kind, id.Value).Limit(1).Find(&f).Error; err != nil {
			return nil, fmt.Errorf("journey: find identity: %w", err)
		}
		found = append(found, f...)
	}
	m := &model.Member{}
	var was []byte // the member as loaded, when nothing merged into it
	if len(found) > 0 {
		keep, others := e.mergeTargets(found)
		if err := tx.First(m, keep).Error; err != nil {
			return nil, fmt.Errorf("journey: load member: %w", err)
		}
		if len(others) > 0 {
			if err := e.mergeMembers(tx, m, others, now); err != nil {
				return nil, err
			}
		} else {
			was = memberState(m)
		}
	} else {
		m.CreatedAt = now
	}
	fillMember(m, ref)
	apply(m)
	switch {
	case m.ID == 0:
		if err := tx.Create(m).Error; err != nil {
			return nil, fmt.Errorf("journey: create member: %w", err)
		}
	case was != nil && bytes.Equal(was, memberState(m)):
		// unchanged: updated_at stays when the member last changed
	default:
		if err := tx.Save(m).Error; err != nil {
			return nil, fmt.Errorf("journey: save member: %w", err)
		}
	}
	for _, id := range ids {
		if slices.ContainsFunc(found, func(f model.MemberIdentity) bool { return f.Kind == id.Kind && f.Value == id.Value }) {
			continue
		}
		id.MemberID = m.ID
		res := model.InsertIgnore(tx).Create(&id)
		if res.Error != nil {
			return nil, fmt.Errorf("journey: add identity: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return nil, errIdentityRace
		}
	}
	return m, nil
}

// identities are the identity rows a reference names. A value longer than
// the column is fitted (model.FitKey), the same way for lookups and inserts.
func identities(ref model.MemberRef) []model.MemberIdentity {
	var out []model.MemberIdentity
	add := func(kind, v string) {
		if v != "" {
			out = append(out, model.MemberIdentity{Kind: kind, Value: model.FitKey(v, model.MaxIdentityValue)})
		}
	}
	if ref.OpenID != "" {
		add(model.IdentityOpenID, ref.AppID+"/"+ref.OpenID)
	}
	if ref.MPOpenID != "" {
		add(model.IdentityMPOpenID, ref.MPAppID+"/"+ref.MPOpenID)
	}
	add(model.IdentityUnionID, ref.UnionID)
	add(model.IdentityExternalUserID, ref.ExternalUserID)
	add(model.IdentityPhone, ref.Phone)
	add(model.IdentityEmail, strings.ToLower(ref.Email))
	add(model.IdentityUserID, ref.UserID)
	return out
}

// isManualEnroll reports whether ev is an operator's manual enrollment:
// of type events.JourneyEnroll and stored by the engine itself (the same
// type from the events API enrolls nobody).
func isManualEnroll(ev *model.Event) bool {
	return ev.Type == events.JourneyEnroll && ev.Source == events.Engine{}.Name()
}

// emitsEvents reports whether routing ev stores engine events
// (member.updated: one member.attribute_changed per changed attribute; an
// SMS reply of TD: sms.unsubscribed). Such events are routed one by one.
func emitsEvents(ev *model.Event) bool {
	switch ev.Type {
	case events.MemberUpdated:
		return true
	case events.SMSReceived:
		text, _ := ev.Props["text"].(string)
		return events.OptOutReply(text)
	}
	return false
}

// emitOptOuts stores a "<channel>.unsubscribed" event for each channel ev
// newly opted the member out of (an SMS reply of TD emits
// sms.unsubscribed), unless ev is that event, and returns their ids.
func emitOptOuts(tx *gorm.DB, ev *model.Event, before, after map[string]time.Time, now time.Time) ([]int64, error) {
	var ids []int64
	for _, ch := range slices.Sorted(maps.Keys(after)) {
		typ := ch + ".unsubscribed"
		if _, was := before[ch]; was || ev.Type == typ {
			continue
		}
		out := &model.Event{
			DedupeKey: fmt.Sprintf("optout:%d:%s", ev.ID, ch),
			Type:      typ, Source: events.Engine{}.Name(), Member: ev.Member,
			Props: map[string]any{"via": ev.Type}, At: now, ReceivedAt: now,
		}
		fitEvent(out)
		res := model.InsertIgnore(tx).Create(out)
		if res.Error != nil {
			return nil, fmt.Errorf("journey: store %s: %w", typ, res.Error)
		}
		if res.RowsAffected > 0 {
			ids = append(ids, out.ID)
		}
	}
	return ids, nil
}

// emitAttributeChanges stores one member.attribute_changed event (props
// name, old, new) per attribute that differs between before and after,
// for the member ref, deduped by cause (an event's "attr:<id>", an update
// step's "attr:visit:<id>") and name, and returns their ids: they are
// routed after the caller's transaction commits.
func emitAttributeChanges(tx *gorm.DB, cause string, ref model.MemberRef, before, after map[string]any, now time.Time) ([]int64, error) {
	var names []string
	for k, v := range after {
		if old, ok := before[k]; !ok || !reflect.DeepEqual(old, v) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var ids []int64
	for _, name := range names {
		ch := &model.Event{
			DedupeKey: cause + ":" + name,
			Type:      events.MemberAttributeChanged, Source: events.Engine{}.Name(), Member: ref,
			Props: map[string]any{"name": name, "old": before[name], "new": after[name]},
			At:    now, ReceivedAt: now,
		}
		fitEvent(ch) // as the ingestor stores events
		res := model.InsertIgnore(tx).Create(ch)
		if res.Error != nil {
			return nil, fmt.Errorf("journey: store %s: %w", events.MemberAttributeChanged, res.Error)
		}
		if res.RowsAffected > 0 {
			ids = append(ids, ch.ID)
		}
	}
	return ids, nil
}
