package journey

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// Stats is what GET /api/v1/journeys/{key}/stats answers: how the
// enrollments that entered a journey within a date range fared, per
// enrollment status, per step, per split arm and per channel.
type Stats struct {
	Journey string `json:"journey"`
	EnrollmentCounts
	// Steps are the current version's steps in its order, then steps only
	// older versions have, by id.
	Steps []StepStats `json:"steps"`
	// Splits are the current version's split steps, in its order.
	Splits []SplitStats `json:"splits"`
	// Channels are the channels messages went out on, by name.
	Channels []ChannelStats `json:"channels"`
}

// EnrollmentCounts counts enrollments: Entered all of them; Active,
// Completed, Goal, Exited and Failed split them by status
// (model.Enrollment*).
type EnrollmentCounts struct {
	Entered   int64 `json:"entered"`
	Active    int64 `json:"active"`
	Completed int64 `json:"completed"`
	Goal      int64 `json:"goal"`
	Exited    int64 `json:"exited"`
	Failed    int64 `json:"failed"`
}

// Add counts n enrollments of status.
func (c *EnrollmentCounts) Add(status string, n int64) {
	c.Entered += n
	switch status {
	case model.EnrollmentActive:
		c.Active += n
	case model.EnrollmentCompleted:
		c.Completed += n
	case model.EnrollmentGoal:
		c.Goal += n
	case model.EnrollmentExited:
		c.Exited += n
	case model.EnrollmentFailed:
		c.Failed += n
	}
}

// StepStats counts the visits of one step: Reached all of them, Passed
// those that finished and moved on (or completed the journey), Waiting
// those scheduled, running or waiting now, Failed those that failed
// (including a send that found the member unreachable and had no
// fallback). A visit cancelled by an exit or the goal is only reached.
type StepStats struct {
	ID      string `json:"id"`
	Reached int64  `json:"reached"`
	Passed  int64  `json:"passed"`
	Waiting int64  `json:"waiting"`
	Failed  int64  `json:"failed"`
}

// SplitStats is one split step and its arms.
type SplitStats struct {
	Step string     `json:"step"`
	Arms []ArmStats `json:"arms"`
}

// ArmStats is one arm of a split: the step it leads to, how many
// enrollments took it, and how many of those reached the journey's goal.
type ArmStats struct {
	Next    string `json:"next"`
	Entered int64  `json:"entered"`
	Goal    int64  `json:"goal"`
}

// ChannelStats counts the messages of one channel: Sent those the provider
// took (sent, or recorded in the sandbox), Failed those it refused or
// that could not reach the member.
type ChannelStats struct {
	Channel string `json:"channel"`
	Sent    int64  `json:"sent"`
	Failed  int64  `json:"failed"`
}

// ErrNoJourney is returned for a journey key that names no journey.
var ErrNoJourney = errors.New("journey: no such journey")

// StatsDays is the default date range of StatsRange: the last 30 days,
// today included.
const StatsDays = 30

// StatsRange turns the dates of a stats request ("2026-11-01", China
// time; to inclusive) into the instants [from, to) that select enrollments
// by entry. An empty to is today (China time, by now); an empty from is
// StatsDays days up to to. An error says which date is wrong.
func StatsRange(from, to string, now time.Time) (time.Time, time.Time, error) {
	day := func(name, v string) (time.Time, error) {
		t, err := time.ParseInLocation(time.DateOnly, v, chinaTime)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: want a date like 2026-11-30, got %q", name, v)
		}
		return t, nil
	}
	local := now.In(chinaTime)
	end := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, chinaTime)
	if to != "" {
		t, err := day("to", to)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		end = t
	}
	end = end.AddDate(0, 0, 1)
	start := end.AddDate(0, 0, -StatsDays)
	if from != "" {
		t, err := day("from", from)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		start = t
	}
	if !start.Before(end) {
		return time.Time{}, time.Time{}, fmt.Errorf("from %s is after to %s", start.Format(time.DateOnly), end.AddDate(0, 0, -1).Format(time.DateOnly))
	}
	return start.UTC(), end.UTC(), nil
}

// JourneyStats counts, for the journey key, the enrollments that entered
// it in [from, to), in whole China days (from's day through the day before
// to; StatsRange gives such instants), and their visits and messages. It
// reads three kinds of counts by entry day (model.EntryDay; see
// statsCounts): no row is read one by one and nothing is joined. opts are
// the parse options of extra step kinds (WithStepKinds), to read the current version
// with; a version that does not parse lists its steps as the visits name
// them, by id. ErrNoJourney: no such journey.
func JourneyStats(ctx context.Context, db *gorm.DB, key string, from, to time.Time, opts ...ParseOption) (*Stats, error) {
	if key == "" {
		return nil, ErrNoJourney
	}
	db = db.WithContext(ctx)
	var j model.Journey
	if err := db.Where(&model.Journey{Key: key}).Limit(1).Find(&j).Error; err != nil {
		return nil, fmt.Errorf("journey: load journey %q: %w", key, err)
	}
	if j.ID == 0 {
		return nil, ErrNoJourney
	}
	var c *Compiled
	if j.CurrentVersionID != 0 {
		var v model.JourneyVersion
		if err := db.First(&v, j.CurrentVersionID).Error; err != nil {
			return nil, fmt.Errorf("journey: load version %d: %w", j.CurrentVersionID, err)
		}
		c, _ = Parse(v.Origin, []byte(v.Source), append(slices.Clone(opts), storedVersion)...)
	}
	st := &Stats{Journey: j.Key, Steps: []StepStats{}, Splits: []SplitStats{}, Channels: []ChannelStats{}}
	first, last := model.EntryDay(from), model.EntryDay(to.Add(-time.Nanosecond))

	// Enrollments by status.
	enrs, err := statsCounts(db, statsEnrollments, j.ID, first, last)
	if err != nil {
		return nil, fmt.Errorf("journey: count enrollments: %w", err)
	}
	for _, r := range enrs {
		st.Add(r.K1, r.N)
	}

	// Visits by step, status and outcome (the arm a split took, and
	// whether its enrollment reached the goal).
	visits, err := statsCounts(db, statsVisits, j.ID, first, last)
	if err != nil {
		return nil, fmt.Errorf("journey: count visits: %w", err)
	}
	steps := map[string]*StepStats{}
	var order []string
	if c != nil {
		for _, s := range c.Def.Steps {
			if steps[s.ID] == nil {
				steps[s.ID] = &StepStats{ID: s.ID}
				order = append(order, s.ID)
			}
		}
	}
	known := len(order)
	arms := map[string]map[string]int64{} // split step -> outcome -> visits
	for _, r := range visits {
		s := steps[r.K1]
		if s == nil {
			s = &StepStats{ID: r.K1}
			steps[r.K1] = s
			order = append(order, r.K1)
		}
		outcome := r.k3()
		s.Reached += r.N
		switch r.K2 {
		case model.VisitDone:
			if outcome == ReasonUnreachable {
				s.Failed += r.N // the member left here, unreachable
			} else {
				s.Passed += r.N
			}
			if strings.HasPrefix(outcome, "arm:") || strings.HasPrefix(outcome, "split:") || strings.HasPrefix(outcome, goalArm) {
				if arms[r.K1] == nil {
					arms[r.K1] = map[string]int64{}
				}
				arms[r.K1][outcome] += r.N
			}
		case model.VisitScheduled, model.VisitRunning, model.VisitWaiting:
			s.Waiting += r.N
		case model.VisitFailed:
			s.Failed += r.N
		}
	}
	slices.Sort(order[known:])
	for _, id := range order {
		st.Steps = append(st.Steps, *steps[id])
	}

	// Split arms, and the goals of the enrollments down each.
	if c != nil {
		for i := range c.Def.Steps {
			step := &c.Def.Steps[i]
			if sp, ok := step.Body.(*Split); ok {
				st.Splits = append(st.Splits, splitStats(step.ID, sp, arms[step.ID]))
			}
		}
	}

	// Messages by channel and status.
	dels, err := statsCounts(db, statsDeliveries, j.ID, first, last)
	if err != nil {
		return nil, fmt.Errorf("journey: count deliveries: %w", err)
	}
	chans := map[string]*ChannelStats{}
	var names []string
	for _, r := range dels {
		ch := chans[r.K1]
		if ch == nil {
			ch = &ChannelStats{Channel: r.K1}
			chans[r.K1] = ch
			names = append(names, r.K1)
		}
		switch r.K2 {
		case model.DeliverySent, model.DeliverySandbox:
			ch.Sent += r.N
		case model.DeliveryFailed:
			ch.Failed += r.N
		}
	}
	slices.Sort(names)
	for _, n := range names {
		st.Channels = append(st.Channels, *chans[n])
	}
	return st, nil
}

// statsKind is one of the three counts the statistics read: its kind in
// the SQLite rollup (stats_counts) and its GROUP BY query elsewhere.
type statsKind struct {
	kind, query string
}

var (
	statsEnrollments = statsKind{"e", "SELECT status AS k1, '' AS k2, NULL AS k3, COUNT(*) AS n FROM enrollments " +
		"WHERE journey_id = ? AND entered_day >= ? AND entered_day <= ? GROUP BY status"}
	statsVisits = statsKind{"v", "SELECT step_id AS k1, status AS k2, outcome AS k3, COUNT(*) AS n FROM step_visits " +
		"WHERE journey_id = ? AND entered_day >= ? AND entered_day <= ? GROUP BY step_id, status, outcome"}
	statsDeliveries = statsKind{"d", "SELECT channel AS k1, status AS k2, NULL AS k3, COUNT(*) AS n FROM deliveries " +
		"WHERE journey_id = ? AND entered_day >= ? AND entered_day <= ? GROUP BY channel, status"}
)

// statsRow is one count: K1..K3 are the kind's keys (status; step,
// status, outcome; channel, status).
type statsRow struct {
	K1, K2 string
	K3     *string
	N      int64
}

func (r statsRow) k3() string {
	if r.K3 == nil {
		return ""
	}
	return *r.K3
}

// statsCounts reads one kind of counts of journey id for the entry days
// first..last. On SQLite it sums the rollup's day rows (migration
// 2026112802a_stats_rollup): a month is a few hundred rows. Elsewhere it
// groups the rows themselves, from the narrow indexes of migration
// 2026112801c_stats (idx_enrollments_stats, idx_visit_stats,
// idx_delivery_stats), with nothing joined.
func statsCounts(db *gorm.DB, k statsKind, id int64, first, last int) ([]statsRow, error) {
	var rows []statsRow
	var err error
	if db.Dialector.Name() == "sqlite" {
		err = db.Raw("SELECT k1, k2, k3, SUM(n) AS n FROM stats_counts WHERE journey_id = ? AND kind = ? AND entered_day >= ? AND entered_day <= ? "+
			"GROUP BY k1, k2, k3 HAVING SUM(n) <> 0", id, k.kind, first, last).Scan(&rows).Error
	} else {
		err = db.Raw(k.query, id, first, last).Scan(&rows).Error
	}
	return rows, err
}

// splitStats is one split's arms as the current version has them, from
// the outcomes of the split's visits (outcome -> visits): "arm:NEXT", or
// "goal/arm:NEXT" once the enrollment reached the goal. Visits recorded
// "split:N" (before arms were recorded by step) count for the current
// version's arm N. An arm only an older version had comes last.
func splitStats(id string, sp *Split, visits map[string]int64) SplitStats {
	out := SplitStats{Step: id, Arms: []ArmStats{}}
	seen := map[string]bool{}
	for i, a := range sp.Arms {
		if seen[a.Next] {
			continue // two arms to one step are one arm here
		}
		seen[a.Next] = true
		key, legacy := ArmOutcome(a.Next), "split:"+strconv.Itoa(i)
		goal := visits[goalArm+key] + visits[goalArm+legacy]
		out.Arms = append(out.Arms, ArmStats{Next: a.Next, Entered: visits[key] + visits[legacy] + goal, Goal: goal})
		for _, k := range []string{key, legacy} {
			seen[k], seen[goalArm+k] = true, true
		}
	}
	rest := map[string]*ArmStats{}
	var names []string
	for outcome, n := range visits {
		goal := strings.HasPrefix(outcome, goalArm)
		name, ok := strings.CutPrefix(strings.TrimPrefix(outcome, goalArm), "arm:")
		if seen[outcome] || !ok {
			continue
		}
		a := rest[name]
		if a == nil {
			a = &ArmStats{Next: name}
			rest[name] = a
			names = append(names, name)
		}
		a.Entered += n
		if goal {
			a.Goal += n
		}
	}
	slices.Sort(names)
	for _, name := range names {
		out.Arms = append(out.Arms, *rest[name])
	}
	return out
}
