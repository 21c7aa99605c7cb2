package model

import (
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The drafts migration creates journey_drafts: the console's journey
// editor keeps one draft per journey key there, not live until published.
const draftsID = "2026112802b_drafts"

type draftsJourneyDraft struct {
	Key       string    `gorm:"primaryKey;size:128"`
	Source    string    `gorm:"type:text;not null"`
	UpdatedBy string    `gorm:"size:64;not null"`
	UpdatedAt time.Time `gorm:"not null"`
}

func (draftsJourneyDraft) TableName() string { return "journey_drafts" }

func migrateDrafts(tx *gorm.DB) error {
	if err := tx.Migrator().CreateTable(&draftsJourneyDraft{}); err != nil {
		return fmt.Errorf("create journey_drafts: %w", err)
	}
	return nil
}

func rollbackDrafts(tx *gorm.DB) error {
	return tx.Migrator().DropTable(&draftsJourneyDraft{})
}
