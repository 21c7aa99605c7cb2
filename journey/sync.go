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
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// LoadDir parses every *.yaml and *.yml file in dir. It reports every
// invalid file (each problem naming its file and step) and returns the valid ones.
func LoadDir(dir string) ([]*Compiled, error) {
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
		c, err := Parse(f, src)
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

// Publish stores c as a new version of its journey (creating the journey)
// and makes it the live version, unless the live version has the same
// source. It reports whether a new version was created. Members already in
// the journey stay on the version they entered.
func (e *Engine) Publish(ctx context.Context, c *Compiled, origin string) (bool, error) {
	sum := sha256.Sum256([]byte(c.Source))
	hash := hex.EncodeToString(sum[:])
	created := false
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := time.Now().UTC()
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
		return tx.Model(&j).Updates(map[string]any{"current_version_id": v.ID, "name": c.Def.Name, "updated_at": now}).Error
	})
	if err != nil {
		return false, err
	}
	e.InvalidateIndex()
	return created, nil
}

// SyncDir loads dir and publishes every valid journey in it. An invalid file
// is reported and skipped; the others are still published.
func (e *Engine) SyncDir(ctx context.Context, dir string) (published []string, err error) {
	cs, loadErr := LoadDir(dir)
	for _, c := range cs {
		created, err := e.Publish(ctx, c, c.origin)
		if err != nil {
			return published, err
		}
		if created {
			published = append(published, c.Def.Key)
		}
	}
	if loadErr != nil && strings.TrimSpace(loadErr.Error()) != "" {
		return published, loadErr
	}
	return published, nil
}
