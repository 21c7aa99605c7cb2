package journey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// LoadDir parses every *.yaml and *.yml file in dir. It reports every
// invalid file (each problem naming its file and step) and returns the valid ones.
func LoadDir(dir string, opts ...ParseOption) ([]*Compiled, error) {
	return loadDir(dir, func(name string, src []byte) (*Compiled, error) { return Parse(name, src, opts...) })
}

func loadDir(dir string, parse func(string, []byte) (*Compiled, error)) ([]*Compiled, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, fmt.Errorf("journey: %w", err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	var (
		out  []*Compiled
		errs []error
		keys = map[string]string{}
	)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("journey: %w", err))
			continue
		}
		c, err := parse(f, src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := keys[c.Def.Key]; dup {
			errs = append(errs, fmt.Errorf("%w: %s: key %q is also used by %s", ErrInvalid, f, c.Def.Key, prev))
			continue
		}
		keys[c.Def.Key] = f
		c.origin = f
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// Publish stores c as a new version of its journey (creating the journey,
// active) and makes it the live version, unless the live version has the
// same source. It reports whether a new version was created. Members
// already in the journey stay on the version they entered, to its end. A
// new version of an archived journey starts it again (active); a paused
// journey stays paused until resumed. c is checked again with the engine's
// checks (Engine.Parse): a journey that sends on a channel without a
// sender, or names events or props that do not exist, is refused.
func (e *Engine) Publish(ctx context.Context, c *Compiled, origin string) (bool, error) {
	if _, err := e.Parse(origin, []byte(c.Source)); err != nil {
		return false, err
	}
	sum := sha256.Sum256([]byte(c.Source))
	hash := hex.EncodeToString(sum[:])
	created := false
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := e.now()
		var j model.Journey
		err := tx.Where(&model.Journey{Key: c.Def.Key}).First(&j).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			j = model.Journey{Key: c.Def.Key, Name: c.Def.Name, Status: model.JourneyActive, CreatedAt: now, UpdatedAt: now}
			if err := tx.Create(&j).Error; err != nil {
				return fmt.Errorf("journey: create %q: %w", c.Def.Key, err)
			}
		} else if err != nil {
			return fmt.Errorf("journey: load %q: %w", c.Def.Key, err)
		}
		var last model.JourneyVersion
		err = tx.Where("journey_id = ?", j.ID).Order("version DESC").First(&last).Error
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("journey: load versions of %q: %w", c.Def.Key, err)
		}
		if last.ID != 0 && last.Hash == hash && j.CurrentVersionID == last.ID {
			return nil
		}
		v := model.JourneyVersion{JourneyID: j.ID, Version: last.Version + 1, Source: c.Source, Hash: hash, Origin: origin, CreatedAt: now}
		if err := tx.Create(&v).Error; err != nil {
			return fmt.Errorf("journey: create version of %q: %w", c.Def.Key, err)
		}
		created = true
		upd := map[string]any{"current_version_id": v.ID, "name": c.Def.Name, "updated_at": now}
		if j.Status == model.JourneyArchived {
			upd["status"], upd["paused_reason"] = model.JourneyActive, ""
			e.log.Info(fmt.Sprintf("archived journey %s started again by version %d", c.Def.Key, v.Version), "journey", c.Def.Key)
		}
		return tx.Model(&j).Updates(upd).Error
	})
	if err != nil {
		return false, err
	}
	e.InvalidateIndex()
	return created, nil
}

// SyncOption changes what SyncDir does.
type SyncOption func(*syncOptions)

type syncOptions struct {
	refuseDemo string // why demo journeys may not run; "" allows them
}

// RefuseDemo keeps journeys marked demo: true from running (DESIGN.md:
// demo journeys are a sandbox thing). SyncDir does not publish them, and
// pauses every demo journey that is live in the database, ending the
// enrollments still inside it so no member gets the rest of a demo. why
// says what the operator can change; it is logged with each journey.
func RefuseDemo(why string) SyncOption {
	if why == "" {
		why = "demo journeys are not allowed"
	}
	return func(o *syncOptions) { o.refuseDemo = why }
}

// EndReasonDemoPaused is the end reason of enrollments ended because their
// demo journey was paused (see RefuseDemo).
const EndReasonDemoPaused = "paused:demo"

// SyncDir loads dir and publishes every valid journey in it. An invalid file
// is reported and skipped; the others are still published. Journeys marked
// demo: true are published unless RefuseDemo is given; when demos are
// allowed, a demo journey that an earlier start paused is made active again.
// A journey published from a file of dir that no file defines any more
// (the file was removed) is paused, never left live, with a warning; a
// file defining it again resumes it (only a journey paused that way: one
// an operator paused stays paused). A file still there that no longer
// parses keeps its journey's live version running.
func (e *Engine) SyncDir(ctx context.Context, dir string, opts ...SyncOption) (published []string, err error) {
	var o syncOptions
	for _, opt := range opts {
		opt(&o)
	}
	cs, loadErr := loadDir(dir, e.Parse)
	demoKeys := map[string]bool{}
	present := map[string]bool{}
	refused := map[string]bool{}
	var skipped []string
	for _, c := range cs {
		present[c.Def.Key] = true
		if c.Def.Demo {
			demoKeys[c.Def.Key] = true
			if o.refuseDemo != "" {
				skipped = append(skipped, c.Def.Key)
				refused[c.Def.Key] = true
				continue
			}
		}
		created, err := e.Publish(ctx, c, c.origin)
		if err != nil {
			return published, err
		}
		if created {
			published = append(published, c.Def.Key)
		}
	}
	if len(skipped) > 0 {
		e.log.Warn("demo journeys not loaded: "+o.refuseDemo, "dir", dir, "journeys", strings.Join(skipped, ","))
	}
	if err := e.settleDemos(ctx, demoKeys, o.refuseDemo); err != nil {
		return published, err
	}
	if err := e.settleFiles(ctx, dir, present, refused); err != nil {
		return published, err
	}
	if loadErr != nil && strings.TrimSpace(loadErr.Error()) != "" {
		return published, loadErr
	}
	return published, nil
}

// settleDemos pauses the live demo journeys when refuse is set, and
// otherwise resumes the paused ones that were paused for being demos (not
// those an operator paused, or whose file was removed). A journey is a demo when its key is
// that of a demo file in the directory (its live version may predate the
// flag) or its live version says demo: true.
func (e *Engine) settleDemos(ctx context.Context, demoKeys map[string]bool, refuse string) error {
	db := e.cfg.DB.WithContext(ctx)
	from, to := model.JourneyPaused, model.JourneyActive
	if refuse != "" {
		from, to = model.JourneyActive, model.JourneyPaused
	}
	var js []model.Journey
	if err := db.Where("status = ?", from).Order("id").Find(&js).Error; err != nil {
		return fmt.Errorf("journey: load %s journeys: %w", from, err)
	}
	changed := false
	for _, j := range js {
		if from == model.JourneyPaused && j.PausedReason != PausedDemo && j.PausedReason != "" {
			continue // paused by an operator, or for its missing file
		}
		demo := demoKeys[j.Key]
		if !demo && j.CurrentVersionID != 0 {
			c, err := e.version(db, j.CurrentVersionID)
			if err != nil {
				e.log.Error("cannot tell whether a journey is a demo", "journey", j.Key, "err", err)
				continue
			}
			demo = c.Def.Demo
		}
		if !demo {
			continue
		}
		moved, ended := false, 0
		err := db.Transaction(func(tx *gorm.DB) error {
			now := e.now()
			reason := ""
			if to == model.JourneyPaused {
				reason = PausedDemo
			}
			res := tx.Model(&model.Journey{}).Where("id = ? AND status = ?", j.ID, from).
				Updates(map[string]any{"status": to, "paused_reason": reason, "updated_at": now})
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			moved = true
			if refuse == "" {
				return nil
			}
			var ids []int64
			if err := tx.Model(&model.Enrollment{}).Where("journey_id = ? AND status = ?", j.ID, model.EnrollmentActive).
				Pluck("id", &ids).Error; err != nil {
				return fmt.Errorf("journey: load enrollments of %q: %w", j.Key, err)
			}
			for _, id := range ids {
				if err := endEnrollment(tx, id, model.EnrollmentExited, EndReasonDemoPaused, now, true); err != nil {
					return err
				}
			}
			ended = len(ids)
			return nil
		})
		if err != nil {
			return fmt.Errorf("journey: set demo journey %q %s: %w", j.Key, to, err)
		}
		if !moved {
			continue // another process did it
		}
		changed = true
		if refuse != "" {
			e.log.Warn(fmt.Sprintf("demo journey %s paused: %s", j.Key, refuse), "journey", j.Key, "enrollments_ended", ended)
		} else {
			e.log.Info(fmt.Sprintf("demo journey %s resumed: demo journeys are allowed", j.Key), "journey", j.Key)
		}
	}
	if changed {
		e.InvalidateIndex()
	}
	return nil
}
