package journey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// segmentTrigger enters members who newly match an expression over the
// member: trigger: { segment: 'member.attrs.cart_value > 500', every: 1h }.
// Every every (default 1h), one process evaluates the segment for the
// members changed (members.updated_at) since the previous evaluation,
// remembers who matches (segment_members), enters those who newly do
// through a journey.enroll event (by: segment) and forgets those who no
// longer do; they enter again when they come back.
type segmentTrigger struct{}

// triggerSegment is the name of the segment trigger kind.
const triggerSegment = "segment"

// segmentIndexKey is the one index key of every segment journey.
const segmentIndexKey = "segment"

// Segment is a compiled segment trigger.
type Segment struct {
	// Expr is the segment: a boolean expression over member.
	Expr string
	// Every is how often the segment is evaluated.
	Every time.Duration

	prog *vm.Program
}

// Segment evaluation bounds.
const (
	// DefaultSegmentEvery is a segment's every when it sets none.
	DefaultSegmentEvery = time.Hour
	// MinSegmentEvery is the shortest every.
	MinSegmentEvery = time.Minute
	// segmentOverlap re-reads the members changed shortly before the
	// previous evaluation began: a change committed while it ran is not
	// missed (re-evaluating a member is harmless).
	segmentOverlap = time.Minute
)

func (segmentTrigger) Name() string { return triggerSegment }

// Fields implements TriggerFields: every sits beside segment.
func (segmentTrigger) Fields() []string { return []string{"every"} }

func (segmentTrigger) Compile(n *yaml.Node, ck *Check) []string {
	if compileSegment(n, ck) == nil {
		return nil
	}
	return []string{segmentIndexKey}
}

// compileSegment reads a segment trigger from the trigger mapping n,
// reporting problems to ck when it is not nil; nil when there were any.
func compileSegment(n *yaml.Node, ck *Check) *Segment {
	bad := func(n *yaml.Node, format string, args ...any) {
		if ck != nil {
			ck.Problemf(n, format, args...)
		}
	}
	sn := valueOf(n, triggerSegment)
	if sn == nil || sn.Kind != yaml.ScalarNode || strings.TrimSpace(sn.Value) == "" {
		bad(sn, `segment is an expression over the member (e.g. segment: 'member.attrs.cart_value > 500')`)
		return nil
	}
	s := &Segment{Expr: sn.Value, Every: DefaultSegmentEvery}
	ok := true
	if ck != nil {
		s.prog = ck.Expr("segment", sn, sn.Value, "")
		ok = s.prog != nil
	} else {
		p, err := compileExpr(sn.Value)
		if err != nil {
			return nil
		}
		s.prog = p
	}
	if tree, err := parser.Parse(sn.Value); err == nil {
		v := &nameVisitor{}
		ast.Walk(&tree.Node, v)
		for _, path := range v.paths {
			if path[0] == "event" {
				bad(sn, "segment: %s: a segment reads the member only (member.…), no event", strings.Join(path, "."))
				ok = false
				break
			}
		}
	}
	if en := valueOf(n, "every"); en != nil {
		d, err := ParseDuration(en.Value)
		switch {
		case err != nil:
			bad(en, "every: %q: want a duration such as 30m, 1h or 1d", en.Value)
			ok = false
		case d < MinSegmentEvery:
			bad(en, "every: %s: at least %s", en.Value, MinSegmentEvery)
			ok = false
		default:
			s.Every = d
		}
	}
	if !ok {
		return nil
	}
	return s
}

// Segment returns the journey's segment trigger; false when its trigger is
// of another kind.
func (c *Compiled) Segment() (*Segment, bool) {
	if c.trigger != triggerSegment {
		return nil, false
	}
	s := compileSegment(&c.Def.Trigger.node, nil)
	return s, s != nil
}

// segmentCacheKey keys a segment journey's next due time in e.schedules.
type segmentCacheKey struct{ journeyID int64 }

// RunSegments evaluates the segment journeys that are due (every has
// passed since their last evaluation, by this or another process) and
// routes the journey.enroll events of the members who newly match before
// it returns. It returns how many members it stored an event for. The
// sweeper (RunSweeper) runs it by itself, routing through the queue.
func (e *Engine) RunSegments(ctx context.Context) (entered int, err error) {
	return e.runSegments(ctx, true)
}

// RunSegmentsChecked is RunSegments that also returns how many members the
// due segments read and evaluated: every live member at a segment's first
// evaluation (of a version), then only those changed since the previous
// one.
func (e *Engine) RunSegmentsChecked(ctx context.Context) (entered, checked int, err error) {
	return e.evalSegments(ctx, true)
}

func (e *Engine) runSegments(ctx context.Context, inline bool) (int, error) {
	n, _, err := e.evalSegments(ctx, inline)
	return n, err
}

// evalSegments evaluates the due segment journeys; it returns how many
// members it stored an event for and how many it evaluated.
func (e *Engine) evalSegments(ctx context.Context, inline bool) (total, checked int, err error) {
	db := e.cfg.DB.WithContext(ctx)
	live, err := e.triggers(db, triggerSegment, segmentIndexKey)
	if err != nil {
		return 0, 0, err
	}
	now := e.now()
	var errs []error
	for _, lj := range live {
		if v, ok := e.schedules.Load(segmentCacheKey{lj.journeyID}); ok && now.Before(v.(time.Time)) {
			continue
		}
		s, ok := lj.c.Segment()
		if !ok {
			continue
		}
		key := lj.c.Def.Key
		// mark is the members' updated_at this evaluation reads up to: in
		// the time base gorm stamps updated_at with (the database's clock,
		// not Config.Clock).
		mark := db.NowFunc()
		since, next, won, err := claimSegment(db, lj, s, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.schedules.Store(segmentCacheKey{lj.journeyID}, next)
		if !won {
			continue
		}
		n, read, err := e.runSegment(ctx, lj, s, since, now, inline)
		total += n
		checked += read
		if err != nil {
			errs = append(errs, fmt.Errorf("journey %s: %w", key, err)) // the lease runs out, and the next run retries
			continue
		}
		if err := db.Model(&model.Setting{}).Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: segmentSetting(key)}).
			Update("value", fmt.Sprintf("v%d:%d:%d", lj.versionID, now.UnixNano(), mark.UnixNano())).Error; err != nil {
			errs = append(errs, fmt.Errorf("journey %s: mark the segment run: %w", key, err))
		}
	}
	return total, checked, errors.Join(errs...)
}

// segmentSetting is the settings row recording a segment journey's runs.
func segmentSetting(key string) string {
	return model.FitKey("segment:"+key, 64)
}

// claimSegment claims a due evaluation of the journey's segment. The
// settings row holds "v<version>:<unix nanoseconds>:<unix nanoseconds>":
// when the last evaluation of that version began (by Config.Clock) and the
// members' updated_at it read up to, and "~<unix seconds>" after them while
// a process evaluates, until then. A new version evaluates every member.
// It returns the members' updated_at to read from (zero: all), when to
// look again, and whether this process won.
func claimSegment(db *gorm.DB, lj liveJourney, s *Segment, now time.Time) (since, next time.Time, won bool, err error) {
	k := segmentSetting(lj.c.Def.Key)
	if err := model.InsertIgnore(db).Create(&model.Setting{Key: k, Value: ""}).Error; err != nil {
		return since, next, false, fmt.Errorf("journey: segment %s: %w", lj.c.Def.Key, err)
	}
	var st model.Setting
	if err := db.Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: k}).First(&st).Error; err != nil {
		return since, next, false, fmt.Errorf("journey: segment %s: %w", lj.c.Def.Key, err)
	}
	last, mark, lease := parseSegmentRun(st.Value, lj.versionID)
	switch {
	case lease.After(now):
		return since, lease, false, nil // another process is at it
	case !last.IsZero() && now.Before(last.Add(s.Every)):
		return since, last.Add(s.Every), false, nil // not due
	}
	run, _, _ := strings.Cut(st.Value, "~")
	res := db.Model(&model.Setting{}).
		Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: k}).
		Where(clause.Eq{Column: clause.Column{Name: "value"}, Value: st.Value}).
		Update("value", fmt.Sprintf("%s~%d", run, now.Add(scheduleLease).Unix()))
	if res.Error != nil {
		return since, next, false, fmt.Errorf("journey: claim segment %s: %w", lj.c.Def.Key, res.Error)
	}
	if res.RowsAffected != 1 {
		return since, now.Add(MinSegmentEvery), false, nil // another process claimed it first
	}
	if !mark.IsZero() {
		since = mark.Add(-segmentOverlap)
	}
	return since, now.Add(s.Every), true, nil
}

// parseSegmentRun reads a segment's settings value for version: when its
// last evaluation began and the updated_at it read up to (zero: never, or
// of another version), and the lease of one under way (zero: none).
func parseSegmentRun(v string, version int64) (last, mark, lease time.Time) {
	run, leaseS, _ := strings.Cut(v, "~")
	if secs, err := strconv.ParseInt(leaseS, 10, 64); err == nil {
		lease = time.Unix(secs, 0)
	}
	parts := strings.Split(run, ":")
	if len(parts) != 3 || parts[0] != fmt.Sprintf("v%d", version) {
		return last, mark, lease
	}
	a, errA := strconv.ParseInt(parts[1], 10, 64)
	b, errB := strconv.ParseInt(parts[2], 10, 64)
	if errA != nil || errB != nil {
		return last, mark, lease
	}
	return time.Unix(0, a), time.Unix(0, b), lease
}

// runSegment evaluates the segment for the members changed since since
// (all when zero), enters those who newly match and forgets those who no
// longer do. It returns how many events were new and how many members it
// evaluated.
func (e *Engine) runSegment(ctx context.Context, lj liveJourney, s *Segment, since, now time.Time, inline bool) (total, checked int, err error) {
	db := e.cfg.DB.WithContext(ctx)
	key := lj.c.Def.Key
	// changed holds the ids of the members changed since since, read on
	// the updated_at index by that one condition: with another beside it
	// (merged_into IS NULL, id > ?), a planner without statistics (SQLite)
	// walks every live member instead. The members are then read by id
	// alone (the primary key), the merged ones skipped.
	var changed []int64
	if !since.IsZero() {
		if err := db.Model(&model.Member{}).Where("updated_at > ?", since).Pluck("id", &changed).Error; err != nil {
			return total, checked, fmt.Errorf("find changed members: %w", err)
		}
		slices.Sort(changed)
	}
	var last int64
	for {
		var ms []model.Member
		q := db.Where("id > ? AND merged_into IS NULL", last).Order("id").Limit(schedulePage)
		if !since.IsZero() {
			if len(changed) == 0 {
				return total, checked, nil
			}
			page := changed[:min(schedulePage, len(changed))]
			changed = changed[len(page):]
			q = db.Where("id IN ?", page)
		}
		if err := q.Find(&ms).Error; err != nil {
			return total, checked, fmt.Errorf("find members: %w", err)
		}
		ms = slices.DeleteFunc(ms, func(m model.Member) bool { return m.MergedInto != nil })
		if len(ms) == 0 {
			if since.IsZero() {
				return total, checked, nil
			}
			continue // all merged away
		}
		checked += len(ms)
		last = ms[len(ms)-1].ID
		ids := make([]int64, len(ms))
		for i := range ms {
			ids[i] = ms[i].ID
		}
		var in []int64
		if err := db.Model(&model.SegmentMember{}).Where("journey_id = ? AND member_id IN ?", lj.journeyID, ids).
			Pluck("member_id", &in).Error; err != nil {
			return total, checked, fmt.Errorf("load segment members: %w", err)
		}
		was := make(map[int64]bool, len(in))
		for _, id := range in {
			was[id] = true
		}
		var joined []model.SegmentMember
		var left []int64
		var evs []*model.Event
		for i := range ms {
			m := &ms[i]
			match := e.eval(s.prog, env{"event": map[string]any{}, "member": memberEnv(m)})
			switch {
			case match && !was[m.ID]:
				joined = append(joined, model.SegmentMember{JourneyID: lj.journeyID, MemberID: m.ID, MatchedAt: now})
				ref := m.Ref()
				if ref.Key() == "" {
					continue
				}
				ev := &model.Event{Type: events.JourneyEnroll, Source: events.Engine{}.Name(), Member: ref,
					Props: map[string]any{"journey": key, "by": "segment"}, At: now, ReceivedAt: now,
					DedupeKey: fmt.Sprintf("segment:%s:%d:%d", key, now.Unix(), m.ID)}
				if lj.c.where != nil && !e.eval(lj.c.where, env{"event": eventEnv(ev), "member": memberEnv(m)}) {
					continue
				}
				fitEvent(ev)
				evs = append(evs, ev)
			case !match && was[m.ID]:
				left = append(left, m.ID)
			}
		}
		if len(left) > 0 {
			if err := db.Where("journey_id = ? AND member_id IN ?", lj.journeyID, left).Delete(&model.SegmentMember{}).Error; err != nil {
				return total, checked, fmt.Errorf("forget segment members: %w", err)
			}
		}
		if len(joined) > 0 {
			if err := model.InsertIgnore(db).Create(&joined).Error; err != nil {
				return total, checked, fmt.Errorf("record segment members: %w", err)
			}
		}
		n, err := e.storeEnrollEvents(ctx, evs, inline)
		total += n
		if err != nil {
			return total, checked, err
		}
	}
}

// testEvent is the event a test run enters the member with when it is
// given none: an empty event of the trigger's type, or for schedule and
// segment triggers the journey.enroll event they store.
func (c *Compiled) testEvent() *model.Event {
	switch c.trigger {
	case triggerSchedule, triggerSegment:
		return &model.Event{Type: events.JourneyEnroll, Source: events.Engine{}.Name(),
			Props: map[string]any{"journey": c.Def.Key, "by": c.trigger}}
	}
	typ := ""
	if len(c.triggerKeys) > 0 {
		typ = c.triggerKeys[0]
	}
	return &model.Event{Type: typ, Props: map[string]any{}}
}

// inSegment reports whether the member (in vars) matches the journey's
// segment; true for other triggers.
func (c *Compiled) inSegment(e *Engine, vars env) bool {
	s, ok := c.Segment()
	if !ok {
		return true
	}
	return e.eval(s.prog, vars)
}
