package model

import (
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The statistics migration lets the journey statistics (GET
// /api/v1/journeys/{key}/stats) answer from indexes alone, with GROUP BY
// queries that never join a million visits to their enrollments:
//
//   - step_visits and deliveries get entered_at, the entered_at of their
//     enrollment (backfilled from it), so that both are selected by the
//     date the member entered the journey.
//   - step_visits (journey_id, step_id, status, outcome, entered_at,
//     enrollment_id): a journey's visits per step, status and outcome (the
//     split arm taken) in index order, and the enrollments of a split's
//     arms, without reading a row.
//   - deliveries (journey_id, channel, status, entered_at): a journey's
//     messages per channel and status.
//   - enrollments (journey_id, status, entered_at): a journey's
//     enrollments per status, and its active ones (entry.max_active).
//
// On PostgreSQL the indexes are built CONCURRENTLY, so an upgrade does not
// block writes on big tables.
const statsID = "2026112801c_stats"

type statsStepVisit struct {
	EnteredAt *time.Time
}

func (statsStepVisit) TableName() string { return "step_visits" }

type statsDelivery struct {
	EnteredAt *time.Time
}

func (statsDelivery) TableName() string { return "deliveries" }

// statsIndex is one index the statistics migration creates, frozen as SQL.
type statsIndex struct{ name, table, columns string }

func statsCreated() []statsIndex {
	return []statsIndex{
		{"idx_visit_stats", "step_visits", "journey_id, step_id, status, outcome, entered_at, enrollment_id"},
		{"idx_delivery_stats", "deliveries", "journey_id, channel, status, entered_at"},
		{"idx_enrollments_stats", "enrollments", "journey_id, status, entered_at"},
	}
}

func migrateStats(tx *gorm.DB) error {
	m := tx.Migrator()
	for _, c := range []struct {
		model any
		table string
	}{{&statsStepVisit{}, "step_visits"}, {&statsDelivery{}, "deliveries"}} {
		if !m.HasColumn(c.model, "EnteredAt") {
			if err := m.AddColumn(c.model, "EnteredAt"); err != nil {
				return fmt.Errorf("add %s.entered_at: %w", c.table, err)
			}
		}
		if err := tx.Exec("UPDATE " + c.table + " SET entered_at = (SELECT enrollments.entered_at FROM enrollments WHERE enrollments.id = " +
			c.table + ".enrollment_id) WHERE entered_at IS NULL").Error; err != nil {
			return fmt.Errorf("backfill %s.entered_at: %w", c.table, err)
		}
	}
	dialect := tx.Dialector.Name()
	for _, i := range statsCreated() {
		var sql string
		switch dialect {
		case "mysql":
			if m.HasIndex(i.table, i.name) {
				continue
			}
			sql = fmt.Sprintf("CREATE INDEX %s ON %s (%s)", i.name, i.table, i.columns)
		case "postgres":
			sql = fmt.Sprintf("CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (%s)", i.name, i.table, i.columns)
		default:
			sql = fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", i.name, i.table, i.columns)
		}
		if err := tx.Exec(sql).Error; err != nil {
			return fmt.Errorf("create index %s: %w", i.name, err)
		}
	}
	return nil
}

func rollbackStats(tx *gorm.DB) error {
	for _, i := range statsCreated() {
		if err := dropIndex(tx, i.table, i.name); err != nil {
			return err
		}
	}
	m := tx.Migrator()
	for _, table := range []string{"step_visits", "deliveries"} {
		if m.HasColumn(table, "entered_at") {
			if err := tx.Exec("ALTER TABLE " + table + " DROP COLUMN entered_at").Error; err != nil {
				return fmt.Errorf("drop %s.entered_at: %w", table, err)
			}
		}
	}
	return nil
}
