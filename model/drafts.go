package model

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// JourneyDraft is a journey being edited in the console: its YAML, not
// live until published. A journey key has at most one draft.
type JourneyDraft struct {
	Key       string    `gorm:"primaryKey;size:128"`
	Source    string    `gorm:"type:text;not null"`
	UpdatedBy string    `gorm:"size:64;not null"`
	UpdatedAt time.Time `gorm:"not null"`
}

// TableName is journey_drafts.
func (JourneyDraft) TableName() string { return "journey_drafts" }

// ErrNoDraft is returned by GetDraft for a key without a draft.
var ErrNoDraft = errors.New("no draft")

// GetDraft returns the draft of a journey key, or ErrNoDraft.
func GetDraft(ctx context.Context, db *gorm.DB, key string) (JourneyDraft, error) {
	var d JourneyDraft
	err := db.WithContext(ctx).Where(&JourneyDraft{Key: key}).Take(&d).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return d, fmt.Errorf("journey %s: %w", key, ErrNoDraft)
	}
	if err != nil {
		return d, fmt.Errorf("read draft %s: %w", key, err)
	}
	return d, nil
}

// SaveDraft writes the draft of its key, replacing the one there was.
func SaveDraft(ctx context.Context, db *gorm.DB, d JourneyDraft) error {
	if d.UpdatedAt.IsZero() {
		d.UpdatedAt = time.Now()
	}
	d.UpdatedAt = d.UpdatedAt.UTC()
	err := db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "key"}},
		DoUpdates: clause.AssignmentColumns([]string{"source", "updated_by", "updated_at"}),
	}).Create(&d).Error
	if err != nil {
		return fmt.Errorf("save draft %s: %w", d.Key, err)
	}
	return nil
}

// DeleteDraft removes the draft of a journey key (none: nothing happens).
func DeleteDraft(ctx context.Context, db *gorm.DB, key string) error {
	if err := db.WithContext(ctx).Where(&JourneyDraft{Key: key}).Delete(&JourneyDraft{}).Error; err != nil {
		return fmt.Errorf("delete draft %s: %w", key, err)
	}
	return nil
}
