package model

import (
	"fmt"

	"gorm.io/gorm"
)

// The statistics migration lets the journey statistics (GET
// /api/v1/journeys/{key}/stats) answer from narrow indexes alone, with
// GROUP BY queries that never join a million visits to their enrollments:
//
//   - enrollments get entered_day, the China date of entered_at as the
//     number yyyymmdd (model.EntryDay), and step_visits and deliveries a
//     copy of their enrollment's: the statistics select by entry date
//     (whole China days), and an integer keeps the indexes small. Existing
//     rows are backfilled.
//   - step_visits (journey_id, step_id, status, outcome, entered_day): a
//     journey's visits per step, status and outcome (the split arm taken,
//     and whether its enrollment reached the goal) in index order.
//   - deliveries (journey_id, channel, status, entered_day): a journey's
//     messages per channel and status.
//   - enrollments (journey_id, status, entered_day): a journey's
//     enrollments per status, and its active ones (entry.max_active).
//
// On PostgreSQL the indexes are built CONCURRENTLY, so an upgrade does not
// block writes on big tables.
const statsID = "2026112801c_stats"

type statsEnrollment struct {
	EnteredDay int
}

func (statsEnrollment) TableName() string { return "enrollments" }

type statsStepVisit struct {
	EnteredDay int
}

func (statsStepVisit) TableName() string { return "step_visits" }

type statsDelivery struct {
	EnteredDay int
}

func (statsDelivery) TableName() string { return "deliveries" }

// statsIndex is one index the statistics migration creates, frozen as SQL.
type statsIndex struct{ name, table, columns string }

func statsCreated() []statsIndex {
	return []statsIndex{
		{"idx_visit_stats", "step_visits", "journey_id, step_id, status, outcome, entered_day"},
		{"idx_delivery_stats", "deliveries", "journey_id, channel, status, entered_day"},
		{"idx_enrollments_stats", "enrollments", "journey_id, status, entered_day"},
	}
}

// statsEnteredDay is the SQL expression of the China date of
// enrollments.entered_at (stored in UTC) as yyyymmdd, per dialect.
func statsEnteredDay(dialect string) string {
	switch dialect {
	case "postgres":
		return "CAST(to_char(entered_at AT TIME ZONE 'UTC' + INTERVAL '8 hours', 'YYYYMMDD') AS INTEGER)"
	case "mysql":
		return "CAST(DATE_FORMAT(DATE_ADD(entered_at, INTERVAL 8 HOUR), '%Y%m%d') AS UNSIGNED)"
	default: // SQLite: entered_at is text, "2006-01-02 15:04:05…" in UTC
		return "CAST(strftime('%Y%m%d', substr(entered_at, 1, 19), '+8 hours') AS INTEGER)"
	}
}

func migrateStats(tx *gorm.DB) error {
	m := tx.Migrator()
	dialect := tx.Dialector.Name()
	for _, c := range []struct {
		model    any
		table    string
		backfill string
	}{
		{&statsEnrollment{}, "enrollments", "UPDATE enrollments SET entered_day = " + statsEnteredDay(dialect) + " WHERE entered_day IS NULL"},
		{&statsStepVisit{}, "step_visits", "UPDATE step_visits SET entered_day = (SELECT enrollments.entered_day FROM enrollments " +
			"WHERE enrollments.id = step_visits.enrollment_id) WHERE entered_day IS NULL"},
		{&statsDelivery{}, "deliveries", "UPDATE deliveries SET entered_day = (SELECT enrollments.entered_day FROM enrollments " +
			"WHERE enrollments.id = deliveries.enrollment_id) WHERE entered_day IS NULL"},
	} {
		if !m.HasColumn(c.model, "EnteredDay") {
			if err := m.AddColumn(c.model, "EnteredDay"); err != nil {
				return fmt.Errorf("add %s.entered_day: %w", c.table, err)
			}
		}
		if err := tx.Exec(c.backfill).Error; err != nil {
			return fmt.Errorf("backfill %s.entered_day: %w", c.table, err)
		}
	}
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
	for _, table := range []string{"enrollments", "step_visits", "deliveries"} {
		if m.HasColumn(table, "entered_day") {
			if err := tx.Exec("ALTER TABLE " + table + " DROP COLUMN entered_day").Error; err != nil {
				return fmt.Errorf("drop %s.entered_day: %w", table, err)
			}
		}
	}
	return nil
}
