package model

import (
	"fmt"

	"gorm.io/gorm"
)

// The lifecycle migration gives journeys paused_reason: who paused a
// paused journey ("operator", "removed", "demo"), which decides what
// resumes it. Journeys paused before it (demo journeys refused) have none,
// which reads as "demo".
const lifecycleID = "2026112801b_journey_lifecycle"

type lifecycleJourney struct {
	PausedReason string `gorm:"size:32"`
}

func (lifecycleJourney) TableName() string { return "journeys" }

func migrateLifecycle(tx *gorm.DB) error {
	m := tx.Migrator()
	if !m.HasColumn(&lifecycleJourney{}, "PausedReason") {
		if err := m.AddColumn(&lifecycleJourney{}, "PausedReason"); err != nil {
			return fmt.Errorf("add journeys.paused_reason: %w", err)
		}
	}
	return nil
}

func rollbackLifecycle(tx *gorm.DB) error {
	if tx.Migrator().HasColumn("journeys", "paused_reason") {
		if err := tx.Exec("ALTER TABLE journeys DROP COLUMN paused_reason").Error; err != nil {
			return fmt.Errorf("drop journeys.paused_reason: %w", err)
		}
	}
	return nil
}
