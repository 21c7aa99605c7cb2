package model

import (
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The segments migration serves segment triggers
// (trigger: { segment: …, every: … }):
//
//   - segment_members records, per journey, the members that matched its
//     segment at the last evaluation (they entered then, and enter again
//     only after leaving the segment and coming back).
//   - members get an index on updated_at: each evaluation reads only the
//     members changed since the previous one.
const segmentsID = "2026112801d_segments"

type segmentsSegmentMember struct {
	JourneyID int64 `gorm:"primaryKey;autoIncrement:false"`
	MemberID  int64 `gorm:"primaryKey;autoIncrement:false"`
	MatchedAt time.Time
}

func (segmentsSegmentMember) TableName() string { return "segment_members" }

type segmentsMember struct {
	UpdatedAt time.Time `gorm:"index:idx_members_updated_at"`
}

func (segmentsMember) TableName() string { return "members" }

func migrateSegments(tx *gorm.DB) error {
	m := tx.Migrator()
	if err := m.CreateTable(&segmentsSegmentMember{}); err != nil {
		return fmt.Errorf("create segment_members: %w", err)
	}
	if !m.HasIndex(&segmentsMember{}, "idx_members_updated_at") {
		if err := m.CreateIndex(&segmentsMember{}, "idx_members_updated_at"); err != nil {
			return fmt.Errorf("index members.updated_at: %w", err)
		}
	}
	return nil
}

func rollbackSegments(tx *gorm.DB) error {
	m := tx.Migrator()
	if err := m.DropIndex(&segmentsMember{}, "idx_members_updated_at"); err != nil {
		return err
	}
	return m.DropTable(&segmentsSegmentMember{})
}
