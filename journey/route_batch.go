package journey

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// routeBatchMax caps the events one routing transaction routes.
const routeBatchMax = 64

// errMixed sends a batch back to routing event by event: its events name
// members in a way only routing them in order can sort out (one event's
// identities found on two members, two members' events sharing an identity).
var errMixed = errors.New("journey: the batch's members overlap")

// Route routes the events with these ids: it resolves each event's member,
// applies the event to the member, ends enrollments whose exit rules match,
// resumes wait_for steps, and enters the member into journeys whose trigger
// matches. Each event is routed once: already routed events are skipped. A
// member's events are routed in the order they were stored, together with
// its earlier events still unrouted (stored by another batch).
//
// A route task carries a whole group commit's events. They are routed in
// batches of whole members, up to routeBatchMax events a transaction and
// Config.RouteConcurrency transactions at once; the visits they start run
// as one batch after the commit. A batch that cannot be routed as one (a
// conflict with another worker, members that overlap, a failing statement)
// is routed again event by event, each in its own transaction, so one bad
// event never holds up the others.
//
// Route calls that arrive while earlier ones run are gathered and routed
// together (see gatherer); each returns when its events are routed.
func (e *Engine) Route(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	return e.routes.do(ctx, ids)
}

// Route gathering: at most routeGatherMax events a gathered batch, each
// batch within routeTaskTimeout (a route task's own timeout).
const (
	routeGatherMax   = 512
	routeTaskTimeout = 2 * time.Minute
)

// routeGathered is the route gatherer's run: the requests' events are
// routed together, and every request gets the outcome (an error makes
// each task retry; events already routed are skipped).
func (e *Engine) routeGathered(ctx context.Context, reqs [][]int64) []error {
	var ids []int64
	for _, r := range reqs {
		ids = append(ids, r...)
	}
	err := e.route(ctx, ids)
	errs := make([]error, len(reqs))
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// route routes the events with these ids (see Route).
func (e *Engine) route(ctx context.Context, ids []int64) error {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) < 2 && e.cfg.Enrich == nil && e.cfg.Observe == nil {
		return e.routeEach(ctx, ids...)
	}
	var evs []*model.Event
	e.slot.lock(ctx)
	// By id alone: with "routed_at IS NULL" PostgreSQL may read the partial
	// index of unrouted events (all of a burst's) instead of the primary key.
	err := e.cfg.DB.WithContext(ctx).Where("id IN ?", ids).Order("id").Find(&evs).Error
	e.slot.unlock(ctx)
	if err != nil {
		return e.routeEach(ctx, ids...)
	}
	evs = slices.DeleteFunc(evs, func(ev *model.Event) bool { return ev.RoutedAt != nil })
	e.enrich(ctx, evs)
	if len(evs) < 2 {
		left := make([]int64, len(evs))
		for i, ev := range evs {
			left[i] = ev.ID
		}
		return e.routeEach(ctx, left...)
	}
	chunks, single := routeChunks(evs)
	var (
		g    errgroup.Group
		mu   sync.Mutex
		errs []error
	)
	g.SetLimit(e.cfg.RouteConcurrency)
	add := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	for _, chunk := range chunks {
		g.Go(func() error {
			e.gate(ctx)
			r, err := e.routeBatch(ctx, chunk)
			if err != nil {
				if !errors.Is(err, errConflict) && !errors.Is(err, errMixed) {
					e.log.Warn("routing a batch of events failed; routing them one by one", "events", len(chunk), "err", err)
				}
				// One after another, in order: members that overlap
				// routed side by side would each be created.
				ids := make([]int64, len(chunk))
				for i, ev := range chunk {
					ids[i] = ev.ID
				}
				add(e.routeEach(ctx, ids...))
				return nil
			}
			add(e.routed(ctx, r))
			return nil
		})
	}
	g.Wait()
	if len(single) > 0 {
		add(e.routeEach(ctx, single...))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// routeChunks cuts events (in id order) into batches of whole members, each
// member's events in id order, and returns apart the ids of events that name
// no member (routed one by one: they fail) and of members with an event
// that emits events (member.updated; routed one by one, in order).
func routeChunks(evs []*model.Event) (chunks [][]*model.Event, single []int64) {
	var order []string
	byKey := map[string][]*model.Event{}
	alone := map[string]bool{} // members with an event that emits events
	for _, ev := range evs {
		if ev.MemberKey == "" {
			single = append(single, ev.ID)
			continue
		}
		if _, ok := byKey[ev.MemberKey]; !ok {
			order = append(order, ev.MemberKey)
		}
		byKey[ev.MemberKey] = append(byKey[ev.MemberKey], ev)
		if emitsEvents(ev) {
			alone[ev.MemberKey] = true
		}
	}
	var cur []*model.Event
	for _, k := range order {
		if alone[k] {
			for _, ev := range byKey[k] {
				single = append(single, ev.ID)
			}
			continue
		}
		if len(cur) > 0 && len(cur)+len(byKey[k]) > routeBatchMax {
			chunks = append(chunks, cur)
			cur = nil
		}
		cur = append(cur, byKey[k]...)
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks, single
}

// batchMember is one member of a routing batch and its events, in order.
type batchMember struct {
	key    string
	events []*model.Event
	m      *model.Member
	active []model.Enrollment
}

// routeBatch routes a batch of whole members' events in one transaction:
// one statement each to read their earlier unrouted events, their
// identities, members and active enrollments, to create the new members and
// identities, and to mark the events routed. Entering journeys takes a few
// statements per entry. errConflict: another worker routed one of the
// events meanwhile; errMixed: see there. Either way nothing was written.
func (e *Engine) routeBatch(ctx context.Context, chunk []*model.Event) (routed, error) {
	var r routed
	now := e.now()
	e.slot.lock(ctx)
	defer e.slot.unlock(ctx)
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		r = routed{}
		members, err := e.batchEvents(tx, chunk)
		if err != nil {
			return err
		}
		if err := e.batchMembers(tx, members, now); err != nil {
			return err
		}
		if err := markRouted(tx, members, now); err != nil {
			return err
		}
		if err := loadActive(tx, members); err != nil {
			return err
		}
		pend := &pendingEntries{}
		for _, bm := range members {
			for _, ev := range bm.events {
				if err := e.routeEffects(tx, ev, bm.m, &bm.active, pend, now, &r); err != nil {
					return err
				}
			}
		}
		return pend.flush(tx, e, now, &r)
	})
	return r, err
}

// pendingEntries are a batch's entries into journeys not inserted yet: all
// of them are inserted at once, two statements (the enrollments, then their
// first visits), when the batch ends or before an event of one of their
// members is routed (it may exit them).
type pendingEntries struct {
	entries []pendingEntry
	members map[int64]bool
}

type pendingEntry struct {
	enr    *model.Enrollment
	lj     liveJourney
	m      *model.Member
	active *[]model.Enrollment // the member's, where enr is at index at
	at     int
}

// has reports whether the member has entries pending; a nil p has none.
func (p *pendingEntries) has(memberID int64) bool { return p != nil && p.members[memberID] }

// flush inserts the pending entries and adds their first visits to r.
func (p *pendingEntries) flush(tx *gorm.DB, e *Engine, now time.Time, r *routed) error {
	if len(p.entries) == 0 {
		return nil
	}
	enrs := make([]*model.Enrollment, len(p.entries))
	for i, pe := range p.entries {
		enrs[i] = pe.enr
	}
	// A plain insert: should another worker have entered one of these
	// members meanwhile (the unique active key), the batch fails and its
	// events are routed one by one.
	if err := tx.Create(&enrs).Error; err != nil {
		return fmt.Errorf("journey: enroll: %w", err)
	}
	visits := make([]*model.StepVisit, len(p.entries))
	for i, pe := range p.entries {
		(*pe.active)[pe.at].ID = pe.enr.ID
		visits[i] = buildVisit(pe.lj.c, pe.enr, pe.m, 1, pe.lj.c.first, now, e.cfg.Lease)
	}
	if err := tx.Create(&visits).Error; err != nil {
		return fmt.Errorf("journey: create visits: %w", err)
	}
	for i, v := range visits {
		if v.Status == model.VisitRunning {
			r.claimed = append(r.claimed, &stepItem{v: v, m: p.entries[i].m})
		} else {
			r.waiting = append(r.waiting, v)
		}
	}
	p.entries, p.members = nil, nil
	return nil
}

// enrollLater is enroll for a batch: the entry is checked against the
// member's active enrollments in memory and added to pend, and "" returned,
// or the reason the member does not enter.
func (e *Engine) enrollLater(tx *gorm.DB, lj liveJourney, m *model.Member, ev *model.Event, now time.Time, active *[]model.Enrollment, pend *pendingEntries) (string, error) {
	if slices.ContainsFunc(*active, func(x model.Enrollment) bool {
		return x.JourneyID == lj.journeyID && x.Status == model.EnrollmentActive
	}) {
		return whyActive, nil
	}
	pending := 0
	if lj.c.Def.Entry.MaxActive > 0 {
		for _, pe := range pend.entries {
			if pe.lj.journeyID == lj.journeyID {
				pending++
			}
		}
	}
	if why, err := entryRules(tx, lj, m, now, pending); why != "" || err != nil {
		return why, err
	}
	enr := newEnrollment(lj, m, ev, now)
	*active = append(*active, *enr)
	if pend.members == nil {
		pend.members = map[int64]bool{}
	}
	pend.members[m.ID] = true
	pend.entries = append(pend.entries, pendingEntry{enr: enr, lj: lj, m: m, active: active, at: len(*active) - 1})
	return "", nil
}

// batchEvents groups the chunk's events by member, with each member's
// earlier events still unrouted, in id order.
func (e *Engine) batchEvents(tx *gorm.DB, chunk []*model.Event) ([]*batchMember, error) {
	var members []*batchMember
	byKey := map[string]*batchMember{}
	last := map[string]int64{}
	var keys []string
	maxID := int64(0)
	for _, ev := range chunk {
		if byKey[ev.MemberKey] == nil {
			bm := &batchMember{key: ev.MemberKey}
			byKey[ev.MemberKey] = bm
			members = append(members, bm)
			keys = append(keys, ev.MemberKey)
		}
		last[ev.MemberKey] = max(last[ev.MemberKey], ev.ID)
		maxID = max(maxID, ev.ID)
	}
	var unrouted []*model.Event
	if err := tx.Where("member_key IN ? AND routed_at IS NULL AND id <= ?", keys, maxID).Order("id").Find(&unrouted).Error; err != nil {
		return nil, fmt.Errorf("journey: load unrouted events: %w", err)
	}
	for _, ev := range unrouted {
		bm := byKey[ev.MemberKey]
		if bm == nil || ev.ID > last[ev.MemberKey] {
			continue
		}
		bm.events = append(bm.events, ev)
	}
	for _, ev := range chunk {
		bm := byKey[ev.MemberKey]
		if !slices.ContainsFunc(bm.events, func(x *model.Event) bool { return x.ID == ev.ID }) {
			return nil, errConflict // routed since the chunk was read
		}
	}
	return members, nil
}

// batchMembers finds or creates each batch member and applies its events,
// in order, as resolveMember does for one event.
func (e *Engine) batchMembers(tx *gorm.DB, members []*batchMember, now time.Time) error {
	// Every identity the events name, and which batch member names it.
	owner := map[model.MemberIdentity]*batchMember{}
	byKind := map[string][]string{}
	for _, bm := range members {
		for _, ev := range bm.events {
			ids := identities(ev.Member)
			if len(ids) == 0 {
				return errMixed // routed alone, it fails with its reason
			}
			for _, id := range ids {
				k := model.MemberIdentity{Kind: id.Kind, Value: id.Value}
				switch owner[k] {
				case nil:
					owner[k] = bm
					byKind[id.Kind] = append(byKind[id.Kind], id.Value)
				case bm:
				default:
					return errMixed
				}
			}
		}
	}
	found := map[model.MemberIdentity]int64{}
	for _, kind := range sortedKeys(byKind) {
		var rows []model.MemberIdentity
		if err := tx.Where("kind = ? AND value IN ?", kind, byKind[kind]).Find(&rows).Error; err != nil {
			return fmt.Errorf("journey: find identities: %w", err)
		}
		for _, row := range rows {
			found[model.MemberIdentity{Kind: row.Kind, Value: row.Value}] = row.MemberID
		}
	}
	// Each batch member is at most one stored member, and no two share one.
	memberOf := map[*batchMember]int64{}
	taken := map[int64]bool{}
	for k, id := range found {
		bm := owner[k]
		if cur, ok := memberOf[bm]; ok && cur != id {
			return errMixed
		}
		memberOf[bm] = id
	}
	var ids []int64
	for _, id := range memberOf {
		if taken[id] {
			return errMixed
		}
		taken[id] = true
		ids = append(ids, id)
	}
	stored := map[int64]*model.Member{}
	if len(ids) > 0 {
		var ms []*model.Member
		if err := tx.Where("id IN ?", ids).Find(&ms).Error; err != nil {
			return fmt.Errorf("journey: load members: %w", err)
		}
		for _, m := range ms {
			stored[m.ID] = m
		}
	}
	var created []*model.Member
	was := map[*batchMember][]byte{} // stored members as loaded
	for _, bm := range members {
		if id, ok := memberOf[bm]; ok {
			if bm.m = stored[id]; bm.m == nil {
				return fmt.Errorf("journey: member %d of an identity not found", id)
			}
			was[bm] = memberState(bm.m)
		} else {
			bm.m = &model.Member{CreatedAt: now}
			created = append(created, bm.m)
		}
		for _, ev := range bm.events {
			fillMember(bm.m, ev.Member)
			e.cfg.Sources.Apply(bm.m, ev)
			bm.m.UpdatedAt = now
		}
	}
	if len(created) > 0 {
		if err := tx.Create(&created).Error; err != nil {
			return fmt.Errorf("journey: create members: %w", err)
		}
	}
	for _, bm := range members {
		if _, ok := memberOf[bm]; !ok {
			continue
		}
		if w := was[bm]; w != nil && bytes.Equal(w, memberState(bm.m)) {
			continue // unchanged: updated_at stays when the member last changed
		}
		if err := tx.Save(bm.m).Error; err != nil {
			return fmt.Errorf("journey: save member: %w", err)
		}
	}
	var add []model.MemberIdentity
	for k, bm := range owner {
		if _, ok := found[k]; !ok {
			add = append(add, model.MemberIdentity{Kind: k.Kind, Value: k.Value, MemberID: bm.m.ID})
		}
	}
	if len(add) > 0 {
		slices.SortFunc(add, func(a, b model.MemberIdentity) int {
			return strings.Compare(a.Kind+"\x00"+a.Value, b.Kind+"\x00"+b.Value)
		})
		res := model.InsertIgnore(tx).Create(&add)
		if res.Error != nil {
			return fmt.Errorf("journey: add identities: %w", res.Error)
		}
		if res.RowsAffected != int64(len(add)) {
			return errMixed // added meanwhile (errIdentityRace): routed one by one, they find them
		}
	}
	return nil
}

// markRouted marks the batch's events routed, each with its member, in one
// statement; errConflict if another worker routed one meanwhile.
func markRouted(tx *gorm.DB, members []*batchMember, now time.Time) error {
	var ids []int64
	var keys []string
	var sb strings.Builder
	sb.WriteString("CASE id")
	for _, bm := range members {
		keys = append(keys, bm.key)
		for _, ev := range bm.events {
			ids = append(ids, ev.ID)
			// Integers we hold, written as literals: a parameter would be
			// typed text by PostgreSQL.
			sb.WriteString(" WHEN " + strconv.FormatInt(ev.ID, 10) + " THEN " + strconv.FormatInt(bm.m.ID, 10))
		}
	}
	sb.WriteString(" END")
	// The member keys let the partial index of unrouted events find each
	// row; without them PostgreSQL may read all of that index.
	res := tx.Model(&model.Event{}).Where("member_key IN ? AND id IN ? AND routed_at IS NULL", keys, ids).
		Updates(map[string]any{"routed_at": now, "member_id": gorm.Expr(sb.String())})
	if res.Error != nil {
		return fmt.Errorf("journey: mark events routed: %w", res.Error)
	}
	if res.RowsAffected != int64(len(ids)) {
		return errConflict
	}
	return nil
}

// loadActive loads the batch members' active enrollments, one statement.
func loadActive(tx *gorm.DB, members []*batchMember) error {
	ids := make([]int64, len(members))
	byID := make(map[int64]*batchMember, len(members))
	for i, bm := range members {
		ids[i] = bm.m.ID
		byID[bm.m.ID] = bm
	}
	var active []model.Enrollment
	if err := tx.Where(activeOfMembers, ids).Order("id").Find(&active).Error; err != nil {
		return fmt.Errorf("journey: load enrollments: %w", err)
	}
	for _, enr := range active {
		if bm := byID[enr.MemberID]; bm != nil {
			bm.active = append(bm.active, enr)
		}
	}
	return nil
}

// memberState is the member as routing would store it, but for UpdatedAt;
// nil when it cannot tell. Routing saves a member only when its events
// changed this: updated_at says when the member last changed, and a
// segment trigger re-checks only those members (an event that changes
// nothing, such as the journey.enroll a segment stores, does not bring its
// member back).
func memberState(m *model.Member) []byte {
	c := *m
	c.UpdatedAt = time.Time{}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil
	}
	return b
}

// fillMember copies the reference's identities into the member's empty
// fields. A value too long for its column is not copied: the identity row
// (fitted, see identities) still names the member.
func fillMember(m *model.Member, ref model.MemberRef) {
	fill := func(dst *string, v string, max int) {
		if *dst == "" && model.Fits(v, max) {
			*dst = v
		}
	}
	fill(&m.AppID, ref.AppID, model.MaxAppID)
	fill(&m.OpenID, ref.OpenID, model.MaxOpenID)
	fill(&m.UnionID, ref.UnionID, model.MaxUnionID)
	fill(&m.ExternalUserID, ref.ExternalUserID, model.MaxExternalUser)
	fill(&m.Phone, ref.Phone, model.MaxPhone)
	fill(&m.Email, ref.Email, model.MaxEmail)
	fill(&m.UserID, ref.UserID, model.MaxUserID)
	if m.MPOpenID == "" && model.Fits(ref.MPOpenID, model.MaxOpenID) && model.Fits(ref.MPAppID, model.MaxAppID) {
		m.MPAppID, m.MPOpenID = ref.MPAppID, ref.MPOpenID
	}
}
