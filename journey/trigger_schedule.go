package journey

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// scheduleTrigger enters members on a date read from one of their
// attributes, once a day at a time of day (China time):
// trigger: { schedule: { attribute: birthday, at: "09:00", every: year } }.
// every: year enters the members whose date's month and day are today's
// (birthdays), every: month those whose day of the month is today's, and
// without every those whose date is today (renewal_date). Dates are
// written "2006-01-02" or RFC 3339 (the first ten characters count).
//
// Each schedule journey runs at most once a day, at or after its at: the
// sweeper (RunSweeper) checks, and one process claims the day in the
// settings table. The members found enter through a journey.enroll event
// (by: schedule), like a manual enrollment: the entry rules hold, and the
// trigger's where, if any, is checked against the member.
type scheduleTrigger struct{}

// triggerSchedule is the name of the schedule trigger kind.
const triggerSchedule = "schedule"

// scheduleIndexKey is the one index key of every schedule journey: the
// runner lists them all.
const scheduleIndexKey = "daily"

// Schedule periods (trigger.schedule.every).
const (
	EveryYear  = "year"
	EveryMonth = "month"
)

// Schedule is a compiled schedule trigger.
type Schedule struct {
	// Attribute names the member attribute (member.attrs) holding the date.
	Attribute string
	// At is the time of day, "HH:MM" China time, the day's run starts at.
	At string
	// Every is EveryYear, EveryMonth or "" (the exact date).
	Every string

	at int // minutes after midnight
}

type scheduleSpec struct {
	Attribute string `yaml:"attribute"`
	At        string `yaml:"at"`
	Every     string `yaml:"every"`
}

// attrName is what an attribute a schedule reads may be called: it is
// written into the SQL that finds the day's members.
var attrName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

func (scheduleTrigger) Name() string { return triggerSchedule }

func (scheduleTrigger) Compile(n *yaml.Node, ck *Check) []string {
	if compileSchedule(n, ck) == nil {
		return nil
	}
	return []string{scheduleIndexKey}
}

// compileSchedule reads a schedule's YAML value, reporting problems to ck
// when it is not nil; nil when there were any.
func compileSchedule(n *yaml.Node, ck *Check) *Schedule {
	bad := func(n *yaml.Node, format string, args ...any) {
		if ck != nil {
			ck.Problemf(n, format, args...)
		}
	}
	if n == nil || n.Kind != yaml.MappingNode {
		bad(n, `schedule is a mapping: { attribute: birthday, at: "09:00", every: year }`)
		return nil
	}
	var s scheduleSpec
	if ck != nil {
		if !ck.Decode(n, &s) {
			return nil
		}
	} else if n.Decode(&s) != nil {
		return nil
	}
	ok := true
	switch {
	case s.Attribute == "":
		bad(n, "schedule.attribute is required (the member attribute holding the date, e.g. birthday)")
		ok = false
	case !attrName.MatchString(s.Attribute):
		bad(valueOf(n, "attribute"), "schedule.attribute: %q: name the attribute alone (letters, digits and _), e.g. birthday", s.Attribute)
		ok = false
	}
	sc := &Schedule{Attribute: s.Attribute, At: s.At, Every: s.Every}
	if s.At == "" {
		bad(n, `schedule.at is required (the time of day, China time, e.g. "09:00")`)
		ok = false
	} else if t, err := time.Parse("15:04", strings.TrimSpace(s.At)); err != nil {
		bad(valueOf(n, "at"), "schedule.at: %q: want a time of day HH:MM, China time (e.g. \"09:00\")", s.At)
		ok = false
	} else {
		sc.at = t.Hour()*60 + t.Minute()
	}
	switch s.Every {
	case "", EveryYear, EveryMonth:
	default:
		bad(valueOf(n, "every"), "schedule.every: %q: want year (the month and day match, e.g. birthdays), month (the day of the month matches) or nothing (the date itself)", s.Every)
		ok = false
	}
	if !ok {
		return nil
	}
	return sc
}

// Schedule returns the journey's schedule trigger; false when its trigger
// is of another kind.
func (c *Compiled) Schedule() (*Schedule, bool) {
	if c.trigger != triggerSchedule {
		return nil, false
	}
	s := compileSchedule(valueOf(&c.Def.Trigger.node, triggerSchedule), nil)
	return s, s != nil
}

// TriggerSummary describes the journey's trigger in a few words: its event
// type, "schedule birthday every year at 09:00", or an added kind's name
// and keys.
func (c *Compiled) TriggerSummary() string {
	switch c.trigger {
	case triggerEvent:
		return c.Def.Trigger.Event
	case triggerSegment:
		if s, ok := c.Segment(); ok {
			return fmt.Sprintf("segment %s every %s", s.Expr, s.Every)
		}
	case triggerSchedule:
		if s, ok := c.Schedule(); ok {
			every := "on the date"
			if s.Every != "" {
				every = "every " + s.Every
			}
			return fmt.Sprintf("schedule %s %s at %s China time", s.Attribute, every, s.At)
		}
	}
	return strings.TrimSpace(c.trigger + " " + strings.Join(c.triggerKeys, ","))
}

// scheduleLease is how long a claimed day's run may take before another
// process may run it again (events already stored are not stored twice).
const scheduleLease = 10 * time.Minute

// schedulePage is how many members one query of a schedule's run reads
// (and how many journey.enroll events one insert stores).
const schedulePage = 500

// scheduleCache remembers, per journey, until when this engine need not
// try to claim its schedule again.
type scheduleCache struct {
	day   string    // China date the run was done (by any process)
	until time.Time // or: another process holds the day's lease until then
}

// RunSchedules runs the schedule journeys that are due now and were not run
// today (China time) by this or another process: it stores a
// journey.enroll event for each member whose date attribute matches today
// and routes them before it returns. It returns how many members it stored
// an event for (entry rules may still keep some out). The sweeper
// (RunSweeper) runs it by itself, routing through the queue.
func (e *Engine) RunSchedules(ctx context.Context) (entered int, err error) {
	return e.runSchedules(ctx, true)
}

// sweepSchedules is RunSweeper's check of schedule and segment journeys
// (trigger_segment.go): the events are routed by route tasks, on any
// worker.
func (e *Engine) sweepSchedules(ctx context.Context) {
	inline := e.cfg.Queue == nil
	for _, kind := range []struct {
		name string
		run  func(context.Context, bool) (int, error)
	}{{"schedule", e.runSchedules}, {"segment", e.runSegments}} {
		n, err := kind.run(ctx, inline)
		if err != nil && ctx.Err() == nil {
			e.log.Error(kind.name+" journeys failed", "err", err)
		} else if n > 0 {
			e.log.Info(kind.name+" journeys entered members", "members", n)
		}
	}
}

func (e *Engine) runSchedules(ctx context.Context, inline bool) (int, error) {
	db := e.cfg.DB.WithContext(ctx)
	live, err := e.triggers(db, triggerSchedule, scheduleIndexKey)
	if err != nil {
		return 0, err
	}
	now := e.now()
	local := now.In(chinaTime)
	today := local.Format(time.DateOnly)
	mins := local.Hour()*60 + local.Minute()
	total := 0
	var errs []error
	for _, lj := range live {
		s, ok := lj.c.Schedule()
		if !ok || mins < s.at {
			continue
		}
		if v, ok := e.schedules.Load(lj.journeyID); ok {
			if c := v.(scheduleCache); c.day == today || now.Before(c.until) {
				continue
			}
		}
		key := lj.c.Def.Key
		won, err := claimSchedule(db, key, today, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !won {
			// Done today, or another process is at it: look again when
			// its lease runs out.
			e.schedules.Store(lj.journeyID, scheduleClaimed(db, key, today, now))
			continue
		}
		n, err := e.runSchedule(ctx, lj, s, local, inline)
		total += n
		if err != nil {
			// The lease runs out and a later check runs the day again.
			errs = append(errs, fmt.Errorf("journey %s: %w", key, err))
			continue
		}
		if err := db.Model(&model.Setting{}).Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: scheduleSetting(key)}).
			Update("value", today+"~done").Error; err != nil {
			errs = append(errs, fmt.Errorf("journey %s: mark the schedule run: %w", key, err))
		}
		e.schedules.Store(lj.journeyID, scheduleCache{day: today})
	}
	return total, errors.Join(errs...)
}

// scheduleSetting is the settings row recording a schedule journey's runs.
func scheduleSetting(key string) string {
	return model.FitKey("schedule:"+key, 64)
}

// claimSchedule claims today's run of the journey's schedule for this
// process. The settings row holds "<date>~done" once a day's run is done,
// or "<date>~<unix seconds>" while a process runs it, until then; only one
// UPDATE can move a value that is before today's (or a lease run out) to
// today's lease, whatever the number of processes.
func claimSchedule(db *gorm.DB, key, today string, now time.Time) (bool, error) {
	k := scheduleSetting(key)
	if err := model.InsertIgnore(db).Create(&model.Setting{Key: k, Value: ""}).Error; err != nil {
		return false, fmt.Errorf("journey: schedule %s: %w", key, err)
	}
	res := db.Model(&model.Setting{}).
		Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: k}).
		Where(clause.Lt{Column: clause.Column{Name: "value"}, Value: fmt.Sprintf("%s~%d", today, now.Unix())}).
		Update("value", fmt.Sprintf("%s~%d", today, now.Add(scheduleLease).Unix()))
	if res.Error != nil {
		return false, fmt.Errorf("journey: claim schedule %s: %w", key, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// scheduleClaimed says until when a day's run claimed by another process
// need not be looked at: done, or until its lease runs out.
func scheduleClaimed(db *gorm.DB, key, today string, now time.Time) scheduleCache {
	var st model.Setting
	if err := db.Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: scheduleSetting(key)}).First(&st).Error; err == nil {
		day, rest, _ := strings.Cut(st.Value, "~")
		if day == today && rest == "done" {
			return scheduleCache{day: today}
		}
		if secs, err := strconv.ParseInt(rest, 10, 64); err == nil && day == today {
			return scheduleCache{until: time.Unix(secs, 0)}
		}
	}
	return scheduleCache{until: now.Add(time.Minute)}
}

// attrExpr is the SQL reading the member attribute name (checked against
// attrName) as text on the database's dialect; NULL where attrs is not a
// JSON object.
func attrExpr(dialect, name string) string {
	var get string
	switch dialect {
	case "postgres":
		get = fmt.Sprintf("(attrs::jsonb->>'%s')", name)
	case "mysql":
		get = fmt.Sprintf(`JSON_UNQUOTE(JSON_EXTRACT(attrs, '$."%s"'))`, name)
	default:
		get = fmt.Sprintf(`json_extract(attrs, '$."%s"')`, name)
	}
	return "CASE WHEN attrs LIKE '{%' THEN " + get + " END"
}

// scheduleMatch is the SQL condition (and its arguments) selecting the
// members whose date in attr matches today's local date for every. A date
// on a day a month or year lacks (29 February, the 31st) matches on the
// last day there is.
func scheduleMatch(dialect, attr, every string, local time.Time) (string, []any) {
	v := attrExpr(dialect, attr)
	lastDay := local.AddDate(0, 0, 1).Day() == 1
	switch every {
	case EveryYear:
		days := []string{local.Format("01-02")}
		if lastDay && local.Month() == time.February && local.Day() == 28 {
			days = append(days, "02-29")
		}
		return "substr(" + v + ", 6, 5) IN ?", []any{days}
	case EveryMonth:
		days := []string{local.Format("02")}
		for d := local.Day() + 1; lastDay && d <= 31; d++ {
			days = append(days, fmt.Sprintf("%02d", d))
		}
		return "substr(" + v + ", 9, 2) IN ?", []any{days}
	}
	return "substr(" + v + ", 1, 10) = ?", []any{local.Format(time.DateOnly)}
}

// dateMatches reports whether the attribute value v is a date (or RFC 3339
// time) that the SQL matched rightly: a well-formed date, so "1990-13-45"
// or "next-11-24" is skipped.
func dateMatches(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	s = strings.TrimSpace(s)
	if len(s) < 10 {
		return false
	}
	if _, err := time.Parse(time.DateOnly, s[:10]); err != nil {
		return false
	}
	if len(s) > 10 {
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return false
		}
	}
	return true
}

// runSchedule stores a journey.enroll event for each member of today's
// date and routes them (inline: here and now; else through route tasks).
// It returns how many events were new.
func (e *Engine) runSchedule(ctx context.Context, lj liveJourney, s *Schedule, local time.Time, inline bool) (int, error) {
	db := e.cfg.DB.WithContext(ctx)
	if !attrName.MatchString(s.Attribute) {
		return 0, fmt.Errorf("journey: schedule attribute %q", s.Attribute)
	}
	cond, args := scheduleMatch(db.Dialector.Name(), s.Attribute, s.Every, local)
	key := lj.c.Def.Key
	today := local.Format(time.DateOnly)
	now := e.now()
	total := 0
	var last int64
	for {
		var ms []model.Member
		if err := db.Where("id > ? AND merged_into IS NULL AND "+cond, append([]any{last}, args...)...).
			Order("id").Limit(schedulePage).Find(&ms).Error; err != nil {
			return total, fmt.Errorf("journey: schedule %s: find members: %w", key, err)
		}
		if len(ms) == 0 {
			return total, nil
		}
		last = ms[len(ms)-1].ID
		evs := make([]*model.Event, 0, len(ms))
		for i := range ms {
			m := &ms[i]
			if !dateMatches(m.Attrs[s.Attribute]) {
				continue
			}
			ref := m.Ref()
			if ref.Key() == "" {
				continue
			}
			ev := &model.Event{Type: events.JourneyEnroll, Source: events.Engine{}.Name(), Member: ref,
				Props: map[string]any{"journey": key, "by": "schedule"}, At: now, ReceivedAt: now,
				DedupeKey: fmt.Sprintf("schedule:%s:%s:%d", key, today, m.ID)}
			if lj.c.where != nil && !e.eval(lj.c.where, env{"event": eventEnv(ev), "member": memberEnv(m)}) {
				continue
			}
			fitEvent(ev)
			evs = append(evs, ev)
		}
		n, err := e.storeEnrollEvents(ctx, evs, inline)
		total += n
		if err != nil {
			return total, fmt.Errorf("journey: schedule %s: %w", key, err)
		}
	}
}

// storeEnrollEvents stores journey.enroll events (fitted; one whose dedupe
// key is stored already is skipped) and routes the ones not routed yet: the
// new ones, and those a run that stopped half-way stored. It returns how
// many were new.
func (e *Engine) storeEnrollEvents(ctx context.Context, evs []*model.Event, inline bool) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	db := e.cfg.DB.WithContext(ctx)
	keys := make([]string, len(evs))
	for i, ev := range evs {
		keys[i] = ev.DedupeKey
	}
	res := model.InsertIgnore(db).Create(&evs)
	if res.Error != nil {
		return 0, fmt.Errorf("store events: %w", res.Error)
	}
	var ids []int64
	if err := db.Model(&model.Event{}).Where("dedupe_key IN ? AND routed_at IS NULL", keys).
		Order("id").Pluck("id", &ids).Error; err != nil {
		return int(res.RowsAffected), fmt.Errorf("find events: %w", err)
	}
	return int(res.RowsAffected), e.routeScheduled(ctx, ids, inline)
}

// routeScheduled routes a schedule's events, here or through route tasks
// (an event whose task is lost is routed by the sweeper).
func (e *Engine) routeScheduled(ctx context.Context, ids []int64, inline bool) error {
	if inline || e.cfg.Queue == nil {
		return e.Route(ctx, ids...)
	}
	for start := 0; start < len(ids); start += 100 {
		if _, err := e.cfg.Queue.EnqueueContext(ctx, NewRouteEventsTask(ids[start:min(start+100, len(ids))], QueueMarketing)); err != nil {
			e.log.Warn("enqueueing schedule events failed; the sweeper routes them", "events", len(ids)-start, "err", err)
			return nil
		}
	}
	return nil
}
