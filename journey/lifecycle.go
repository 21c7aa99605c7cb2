package journey

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/model"
)

// A journey's lifecycle (docs/journeys.md, "Lifecycle"):
//
//   - Publishing stores an immutable version and makes it the live one;
//     members stay on the version they entered, to the end.
//   - Pause stops new entries and holds the due steps of the members inside:
//     a visit that falls due while its journey is paused is not run; it
//     stays in the database, is left out of sweeps, and Resume queues it.
//   - Resume lets members in again and releases the held visits at once.
//   - Archive ends the journey: no entries, its active enrollments end
//     (exited, "archived"), and it cannot be resumed. Publishing a new
//     version (another source) starts it again, as a fresh journey.
//
// Other processes see a change within Config.IndexTTL (2 s by default):
// their trigger index, which also knows the paused journeys, is re-read.

// Who paused a journey (model.Journey.PausedReason); it decides what
// resumes it.
const (
	// PausedByOperator: paused through the API or the CLI; only Resume
	// resumes it.
	PausedByOperator = "operator"
	// PausedRemoved: its file left the journeys directory (SyncDir); putting
	// a file with its key back resumes it, as does Resume.
	PausedRemoved = "removed"
	// PausedDemo: a demo journey while demo journeys are refused
	// (RefuseDemo); allowing them resumes it.
	PausedDemo = "demo"
)

// EndReasonArchived is the end reason of enrollments ended because their
// journey was archived.
const EndReasonArchived = "archived"

// Origins of versions published other than from the journeys directory:
// SyncDir never pauses their journeys for a missing file.
const (
	// OriginAPI is the origin of versions published through the HTTP API.
	OriginAPI = "api"
	// OriginCLIPrefix prefixes the file path of versions published with
	// `wejourney journeys publish FILE`.
	OriginCLIPrefix = "cli:"
)

var (
	// ErrUnknownJourney is the error of a lifecycle call naming a key no
	// journey has.
	ErrUnknownJourney = errors.New("journey: no journey with that key")
	// ErrTransition is the error of a lifecycle call the journey's status
	// does not allow: pausing or resuming an archived journey.
	ErrTransition = errors.New("journey: not allowed in the journey's status")
)

// Status is a journey's state as the lifecycle calls (and the API and CLI)
// report it.
type Status struct {
	Key    string `json:"key"`
	Name   string `json:"name"`
	Status string `json:"status"` // model.JourneyActive, JourneyPaused or JourneyArchived
	// PausedReason is who paused a paused journey (PausedByOperator,
	// PausedRemoved, PausedDemo).
	PausedReason string `json:"paused_reason,omitempty"`
	// Version is the live version's number.
	Version int `json:"version"`
	// Active counts the members inside the journey now.
	Active int64 `json:"active"`
	// Published is set by PublishSource: whether it made a new version
	// (false: the live version has the same source).
	Published *bool `json:"published,omitempty"`
	// Ended counts the enrollments Archive ended.
	Ended int64 `json:"ended,omitempty"`
	// Released counts the held step visits Resume queued.
	Released int `json:"released,omitempty"`
}

// JourneyStatus returns the status of the journey with key.
func (e *Engine) JourneyStatus(ctx context.Context, key string) (Status, error) {
	db := e.cfg.DB.WithContext(ctx)
	var j model.Journey
	if err := db.Where(&model.Journey{Key: key}).First(&j).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return Status{}, fmt.Errorf("%w: %q", ErrUnknownJourney, key)
		}
		return Status{}, fmt.Errorf("journey: load %q: %w", key, err)
	}
	st := Status{Key: j.Key, Name: j.Name, Status: j.Status, PausedReason: j.PausedReason}
	if j.CurrentVersionID != 0 {
		var v model.JourneyVersion
		if err := db.Select("id", "version").First(&v, j.CurrentVersionID).Error; err != nil {
			return st, fmt.Errorf("journey: load version of %q: %w", key, err)
		}
		st.Version = v.Version
	}
	if err := db.Model(&model.Enrollment{}).Where("journey_id = ? AND status = ?", j.ID, model.EnrollmentActive).
		Count(&st.Active).Error; err != nil {
		return st, fmt.Errorf("journey: count members in %q: %w", key, err)
	}
	return st, nil
}

// transition changes the journey with key inside one transaction, the
// journey's row locked: change returns the fields to update (none: nothing
// changes). It returns the journey as it was.
func (e *Engine) transition(ctx context.Context, key string, change func(tx *gorm.DB, j *model.Journey, now time.Time) (map[string]any, error)) (model.Journey, bool, error) {
	var (
		j       model.Journey
		changed bool
	)
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate}).Where(&model.Journey{Key: key}).First(&j).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("%w: %q", ErrUnknownJourney, key)
		}
		if err != nil {
			return fmt.Errorf("journey: load %q: %w", key, err)
		}
		now := e.now()
		upd, err := change(tx, &j, now)
		if err != nil || len(upd) == 0 {
			return err
		}
		upd["updated_at"] = now
		if err := tx.Model(&model.Journey{}).Where("id = ?", j.ID).Updates(upd).Error; err != nil {
			return fmt.Errorf("journey: update %q: %w", key, err)
		}
		changed = true
		return nil
	})
	if changed {
		e.InvalidateIndex()
	}
	return j, changed, err
}

// Pause stops new entries into the journey with key and holds the due steps
// of the members inside until Resume. Pausing a paused journey records the
// operator as who paused it (so that putting its file back does not resume
// it). An archived journey cannot be paused (ErrTransition).
func (e *Engine) Pause(ctx context.Context, key string) (Status, error) {
	_, changed, err := e.transition(ctx, key, func(_ *gorm.DB, j *model.Journey, _ time.Time) (map[string]any, error) {
		switch {
		case j.Status == model.JourneyArchived:
			return nil, fmt.Errorf("%w: journey %q is archived: publish a new version to start it again", ErrTransition, key)
		case j.Status == model.JourneyPaused && j.PausedReason == PausedByOperator:
			return nil, nil
		}
		return map[string]any{"status": model.JourneyPaused, "paused_reason": PausedByOperator}, nil
	})
	if err != nil {
		return Status{}, err
	}
	if changed {
		e.log.Info(fmt.Sprintf("journey %s paused: no new entries; due steps are held until it is resumed", key), "journey", key)
	}
	return e.JourneyStatus(ctx, key)
}

// Resume lets members into the paused journey with key again and queues
// the steps held while it was paused (those due within Config.Horizon: the
// sweeper queues later ones as their time comes). Resuming an active
// journey changes nothing; an archived one cannot be resumed
// (ErrTransition).
func (e *Engine) Resume(ctx context.Context, key string) (Status, error) {
	j, changed, err := e.transition(ctx, key, func(_ *gorm.DB, j *model.Journey, _ time.Time) (map[string]any, error) {
		switch j.Status {
		case model.JourneyArchived:
			return nil, fmt.Errorf("%w: journey %q is archived and cannot be resumed: publish a new version to start it again", ErrTransition, key)
		case model.JourneyActive:
			return nil, nil
		}
		return map[string]any{"status": model.JourneyActive, "paused_reason": ""}, nil
	})
	if err != nil {
		return Status{}, err
	}
	released := 0
	if changed {
		released, err = e.releaseHeld(ctx, j.ID)
		if err != nil {
			e.log.Warn("queueing the steps a paused journey held failed; the sweeper runs them", "journey", key, "err", err)
		}
		e.log.Info(fmt.Sprintf("journey %s resumed", key), "journey", key, "held_steps_queued", released)
	}
	st, err := e.JourneyStatus(ctx, key)
	st.Released = released
	return st, err
}

// Archive ends the journey with key: no new entries, and every member
// inside leaves it (enrollment exited, end reason EndReasonArchived; their
// waiting visits cancelled). An archived journey cannot be resumed;
// publishing a new version (another source) starts it again. Archiving an
// archived journey changes nothing.
func (e *Engine) Archive(ctx context.Context, key string) (Status, error) {
	var ended int64
	_, changed, err := e.transition(ctx, key, func(tx *gorm.DB, j *model.Journey, now time.Time) (map[string]any, error) {
		if j.Status == model.JourneyArchived {
			return nil, nil
		}
		var err error
		if ended, err = endAll(tx, j.ID, EndReasonArchived, now); err != nil {
			return nil, err
		}
		return map[string]any{"status": model.JourneyArchived, "paused_reason": ""}, nil
	})
	if err != nil {
		return Status{}, err
	}
	if changed {
		e.log.Info(fmt.Sprintf("journey %s archived: %d members inside it left it", key, ended), "journey", key, "enrollments_ended", ended)
	}
	st, err := e.JourneyStatus(ctx, key)
	st.Ended = ended
	return st, err
}

// endAll ends every active enrollment of a journey (exited, with reason)
// and cancels their open visits, two statements whatever their number. A
// visit running now finishes its step and leads nowhere: its enrollment
// has ended.
func endAll(tx *gorm.DB, journeyID int64, reason string, now time.Time) (int64, error) {
	res := tx.Model(&model.Enrollment{}).Where("journey_id = ? AND status = ?", journeyID, model.EnrollmentActive).
		Updates(map[string]any{"status": model.EnrollmentExited, "end_reason": reason, "ended_at": now, "active_key": nil})
	if res.Error != nil {
		return 0, fmt.Errorf("journey: end enrollments: %w", res.Error)
	}
	if err := tx.Model(&model.StepVisit{}).
		Where("journey_id = ? AND status IN ?", journeyID, []string{model.VisitScheduled, model.VisitWaiting}).
		Updates(map[string]any{"status": model.VisitCancelled, "outcome": reason, "finished_at": now}).Error; err != nil {
		return 0, fmt.Errorf("journey: cancel visits: %w", err)
	}
	return res.RowsAffected, nil
}

// PublishSource validates src with the engine's checks (Engine.Parse; the
// problems name name) and publishes it (Publish) with origin. A non-empty
// key must be the journey's key. Publishing a new version of an archived
// journey starts it again; a paused journey stays paused.
func (e *Engine) PublishSource(ctx context.Context, key, name string, src []byte, origin string) (Status, error) {
	c, err := e.Parse(name, src)
	if err != nil {
		return Status{}, err
	}
	if key != "" && c.Def.Key != key {
		return Status{}, fmt.Errorf("%w:\n%s: key %q is not the journey published (%q)", ErrInvalid, name, c.Def.Key, key)
	}
	created, err := e.Publish(ctx, c, origin)
	if err != nil {
		return Status{}, err
	}
	st, err := e.JourneyStatus(ctx, c.Def.Key)
	st.Published = &created
	return st, err
}

// releaseHeld queues the open visits of a journey that were held while it
// was paused, those due within Config.Horizon: overdue ones run at once.
// Without Config.Queue (the CLI) it queues nothing: the sweepers of the
// running workers find them overdue.
func (e *Engine) releaseHeld(ctx context.Context, journeyID int64) (int, error) {
	if e.cfg.Queue == nil {
		return 0, nil
	}
	db := e.cfg.DB.WithContext(ctx)
	now := e.now()
	until := now.Add(e.cfg.Horizon)
	n := 0
	var last int64
	for {
		var visits []*model.StepVisit
		if err := db.Select("id", "due_at", "status", "version_id", "step_id").
			Where("journey_id = ? AND id > ? AND ((status IN ? AND due_at < ?) OR (status = ? AND lease_until < ?))",
				journeyID, last, []string{model.VisitScheduled, model.VisitWaiting}, until, model.VisitRunning, now).
			Order("id").Limit(sweepBatch).Find(&visits).Error; err != nil {
			return n, fmt.Errorf("journey: load held visits: %w", err)
		}
		if len(visits) == 0 {
			return n, nil
		}
		for _, v := range visits {
			if v.Status == model.VisitRunning {
				v.DueAt = now // its worker died while the journey was paused
			}
		}
		e.schedule(visits...)
		n += len(visits)
		last = visits[len(visits)-1].ID
	}
}

// pausedJourneys returns the ids of the paused journeys, from the trigger
// index (re-read every Config.IndexTTL, and at once after a lifecycle call
// in this process).
func (e *Engine) pausedJourneys(db *gorm.DB) (map[int64]bool, error) {
	idx, err := e.liveIndex(db)
	if err != nil {
		return nil, err
	}
	return idx.paused, nil
}

// pausedIDs lists the paused journeys' ids, for queries that leave their
// visits out.
func pausedIDs(paused map[int64]bool) []int64 {
	ids := make([]int64, 0, len(paused))
	for id := range paused {
		ids = append(ids, id)
	}
	return sortedIDs(ids)
}

// fileOrigin reports whether a version's origin is a file SyncDir read
// (not the API, the CLI or a test's name).
func fileOrigin(origin string) bool {
	ext := filepath.Ext(origin)
	return (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(origin, OriginCLIPrefix)
}

// settleFiles pauses the active journeys whose live version came from a
// file of the journeys directory that no longer defines them (the file
// was removed, or names another key now), and resumes the journeys it
// paused that way whose key a file defines again. A file that is still there but no longer
// parses keeps its journey's live version running (its problems are
// reported). present holds the keys the directory's valid files define;
// skip those not to resume (demos refused).
func (e *Engine) settleFiles(ctx context.Context, dir string, present, skip map[string]bool) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		e.log.Error("the journeys directory is missing: journeys published from its files are left as they are", "dir", dir)
		return nil
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("journey: %w", err)
	}
	db := e.cfg.DB.WithContext(ctx)
	var js []model.Journey
	if err := db.Where("status IN ? AND current_version_id <> 0", []string{model.JourneyActive, model.JourneyPaused}).
		Order("id").Find(&js).Error; err != nil {
		return fmt.Errorf("journey: load journeys: %w", err)
	}
	vids := make([]int64, len(js))
	for i, j := range js {
		vids[i] = j.CurrentVersionID
	}
	origins := map[int64]string{}
	if len(vids) > 0 {
		var vs []model.JourneyVersion
		if err := db.Select("id", "origin").Where("id IN ?", vids).Find(&vs).Error; err != nil {
			return fmt.Errorf("journey: load versions: %w", err)
		}
		for _, v := range vs {
			origins[v.ID] = v.Origin
		}
	}
	changed := false
	for _, j := range js {
		origin := origins[j.CurrentVersionID]
		switch {
		case j.Status == model.JourneyPaused && j.PausedReason == PausedRemoved && present[j.Key] && !skip[j.Key]:
			res := db.Model(&model.Journey{}).Where("id = ? AND status = ? AND paused_reason = ?", j.ID, model.JourneyPaused, PausedRemoved).
				Updates(map[string]any{"status": model.JourneyActive, "paused_reason": "", "updated_at": e.now()})
			if res.Error != nil {
				return fmt.Errorf("journey: resume %q: %w", j.Key, res.Error)
			}
			if res.RowsAffected == 0 {
				continue
			}
			changed = true
			e.InvalidateIndex()
			n, err := e.releaseHeld(ctx, j.ID)
			if err != nil {
				e.log.Warn("queueing the steps a paused journey held failed; the sweeper runs them", "journey", j.Key, "err", err)
			}
			e.log.Info(fmt.Sprintf("journey %s resumed: a file in %s defines it again", j.Key, dir), "journey", j.Key, "held_steps_queued", n)
		case j.Status == model.JourneyActive && !present[j.Key] && fileOrigin(origin):
			if abs, err := filepath.Abs(origin); err == nil && filepath.Dir(abs) == absDir {
				if _, err := os.Stat(origin); err == nil {
					continue // still there, but invalid: reported by the load; its live version runs on
				}
			}
			res := db.Model(&model.Journey{}).Where("id = ? AND status = ?", j.ID, model.JourneyActive).
				Updates(map[string]any{"status": model.JourneyPaused, "paused_reason": PausedRemoved, "updated_at": e.now()})
			if res.Error != nil {
				return fmt.Errorf("journey: pause %q: %w", j.Key, res.Error)
			}
			if res.RowsAffected == 0 {
				continue
			}
			changed = true
			e.log.Warn(fmt.Sprintf("journey %s paused: its file %s is no longer in %s (put it back to resume it, or archive it)", j.Key, origin, dir),
				"journey", j.Key, "file", origin)
		}
	}
	if changed {
		e.InvalidateIndex()
	}
	return nil
}
