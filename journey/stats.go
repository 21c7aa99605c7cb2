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
	// Entered counts the enrollments; Active, Completed, Goal, Exited and
	// Failed split them by status (model.Enrollment*).
	Entered   int64 `json:"entered"`
	Active    int64 `json:"active"`
	Completed int64 `json:"completed"`
	Goal      int64 `json:"goal"`
	Exited    int64 `json:"exited"`
	Failed    int64 `json:"failed"`
	// Steps are the current version's steps in its order, then steps only
	// older versions have, by id.
	Steps []StepStats `json:"steps"`
	// Splits are the current version's split steps, in its order.
	Splits []SplitStats `json:"splits"`
	// Channels are the channels messages went out on, by name.
	Channels []ChannelStats `json:"channels"`
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
// reads with three GROUP BY queries from narrow indexes
// (idx_enrollments_stats, idx_visit_stats, idx_delivery_stats, on the
// entry day model.EntryDay): no row is read one by one and nothing is
// joined. opts are the parse
// options of extra step kinds (WithStepKinds), to read the current version
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
	// The day is compared row by row in the index's entries of the
	// journey: SQLite, whose statistics see few journeys, would otherwise
	// skip-scan the index by the day alone.
	day := "entered_day"
	if db.Dialector.Name() == "sqlite" {
		day = "+entered_day"
	}
	inRange := " AND " + day + " >= ? AND " + day + " <= ?"

	// Enrollments by status.
	var enrs []struct {
		Status string
		N      int64
	}
	if err := db.Raw("SELECT status, COUNT(*) AS n FROM enrollments WHERE journey_id = ?"+inRange+" GROUP BY status",
		j.ID, first, last).Scan(&enrs).Error; err != nil {
		return nil, fmt.Errorf("journey: count enrollments: %w", err)
	}
	for _, r := range enrs {
		st.Entered += r.N
		switch r.Status {
		case model.EnrollmentActive:
			st.Active += r.N
		case model.EnrollmentCompleted:
			st.Completed += r.N
		case model.EnrollmentGoal:
			st.Goal += r.N
		case model.EnrollmentExited:
			st.Exited += r.N
		case model.EnrollmentFailed:
			st.Failed += r.N
		}
	}

	// Visits by step, status and outcome (the arm a split took, and
	// whether its enrollment reached the goal), in the index's order.
	var visits []struct {
		StepID  string
		Status  string
		Outcome *string
		N       int64
	}
	if err := db.Raw("SELECT step_id, status, outcome, COUNT(*) AS n FROM step_visits "+
		"WHERE journey_id = ?"+inRange+" GROUP BY step_id, status, outcome",
		j.ID, first, last).Scan(&visits).Error; err != nil {
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
		s := steps[r.StepID]
		if s == nil {
			s = &StepStats{ID: r.StepID}
			steps[r.StepID] = s
			order = append(order, r.StepID)
		}
		outcome := ""
		if r.Outcome != nil {
			outcome = *r.Outcome
		}
		s.Reached += r.N
		switch r.Status {
		case model.VisitDone:
			if outcome == ReasonUnreachable {
				s.Failed += r.N // the member left here, unreachable
			} else {
				s.Passed += r.N
			}
			if strings.HasPrefix(outcome, "arm:") || strings.HasPrefix(outcome, "split:") || strings.HasPrefix(outcome, goalArm) {
				if arms[r.StepID] == nil {
					arms[r.StepID] = map[string]int64{}
				}
				arms[r.StepID][outcome] += r.N
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
	var dels []struct {
		Channel string
		Status  string
		N       int64
	}
	if err := db.Raw("SELECT channel, status, COUNT(*) AS n FROM deliveries WHERE journey_id = ?"+inRange+" GROUP BY channel, status",
		j.ID, first, last).Scan(&dels).Error; err != nil {
		return nil, fmt.Errorf("journey: count deliveries: %w", err)
	}
	chans := map[string]*ChannelStats{}
	var names []string
	for _, r := range dels {
		ch := chans[r.Channel]
		if ch == nil {
			ch = &ChannelStats{Channel: r.Channel}
			chans[r.Channel] = ch
			names = append(names, r.Channel)
		}
		switch r.Status {
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
