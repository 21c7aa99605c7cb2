package model

import (
	"fmt"

	"gorm.io/gorm"
)

// v3 gives every query on the per-event and per-step hot path an index that
// matches it, so the rows a follow reads do not grow with the tables:
//
//   - events (member_key, routed_at, id) WHERE routed_at IS NULL: a member's
//     earlier unrouted events (routeOne). It replaces idx_event_member_key,
//     and idx_events_routed_at, which made that query walk every unrouted
//     event of every member.
//   - events (routed_at, received_at) WHERE routed_at IS NULL AND
//     received_at IS NOT NULL: the sweeper's unrouted events received before
//     the grace period; it reads only those. received_at is never null: the
//     second condition is there so that only a query comparing received_at
//     (the sweeper's) can use this index. Otherwise, on a new database
//     without statistics, PostgreSQL found a member's earlier unrouted
//     events through it, reading every unrouted event for each event routed.
//   - enrollments (member_id, status) WHERE status = 'active': a member's
//     active enrollments. It replaces idx_enrollments_status, which made that
//     query walk every active enrollment.
//   - enrollments (journey_id, member_id, entered_at): the entry checks
//     (entry.once, entry.cooldown). It replaces idx_enrollment_member.
//
// idx_events_type is dropped: no query reads it, and every ingested event
// paid for it. MySQL and MariaDB have no partial indexes: they get the same
// columns as a plain composite index, which the queries still match (the
// predicate's column is a key column). On PostgreSQL indexes are built and
// dropped CONCURRENTLY, so an upgrade does not block writes on big tables.

const v3ID = "2026112501_hot_indexes"

// v3Index is one index v3 creates, frozen as SQL.
type v3Index struct {
	name, table, columns, where string
}

func v3Created() []v3Index {
	return []v3Index{
		{"idx_events_member_unrouted", "events", "member_key, routed_at, id", "routed_at IS NULL"},
		{"idx_events_unrouted", "events", "routed_at, received_at", "routed_at IS NULL AND received_at IS NOT NULL"},
		{"idx_enrollments_member_active", "enrollments", "member_id, status", "status = 'active'"},
		{"idx_enrollments_entry", "enrollments", "journey_id, member_id, entered_at", ""},
	}
}

// v3Dropped are the indexes v3 drops (v1 created them).
func v3Dropped() []v3Index {
	return []v3Index{
		{"idx_events_type", "events", "type", ""},
		{"idx_event_member_key", "events", "member_key", ""},
		{"idx_events_routed_at", "events", "routed_at", ""},
		{"idx_enrollments_status", "enrollments", "status", ""},
		{"idx_enrollment_member", "enrollments", "journey_id, member_id", ""},
	}
}

func migrateV3(tx *gorm.DB) error {
	dialect := tx.Dialector.Name()
	for _, i := range v3Created() {
		var sql string
		switch dialect {
		case "mysql":
			if tx.Migrator().HasIndex(i.table, i.name) {
				continue
			}
			sql = fmt.Sprintf("CREATE INDEX %s ON %s (%s)", i.name, i.table, i.columns)
		case "postgres":
			sql = fmt.Sprintf("CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (%s)", i.name, i.table, i.columns)
		default:
			sql = fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", i.name, i.table, i.columns)
		}
		if i.where != "" && dialect != "mysql" {
			sql += " WHERE " + i.where
		}
		if err := tx.Exec(sql).Error; err != nil {
			return fmt.Errorf("create index %s: %w", i.name, err)
		}
	}
	for _, d := range v3Dropped() {
		if err := dropIndex(tx, d.table, d.name); err != nil {
			return err
		}
	}
	return nil
}

func rollbackV3(tx *gorm.DB) error {
	dialect := tx.Dialector.Name()
	for _, d := range v3Dropped() {
		if dialect == "mysql" && tx.Migrator().HasIndex(d.table, d.name) {
			continue
		}
		sql := fmt.Sprintf("CREATE INDEX %s ON %s (%s)", d.name, d.table, d.columns)
		if dialect != "mysql" {
			sql = fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", d.name, d.table, d.columns)
		}
		if err := tx.Exec(sql).Error; err != nil {
			return fmt.Errorf("create index %s: %w", d.name, err)
		}
	}
	for _, i := range v3Created() {
		if err := dropIndex(tx, i.table, i.name); err != nil {
			return err
		}
	}
	return nil
}

// dropIndex drops an index if it exists, CONCURRENTLY on PostgreSQL.
func dropIndex(tx *gorm.DB, table, name string) error {
	var sql string
	switch tx.Dialector.Name() {
	case "mysql":
		if !tx.Migrator().HasIndex(table, name) {
			return nil
		}
		sql = fmt.Sprintf("DROP INDEX %s ON %s", name, table)
	case "postgres":
		sql = "DROP INDEX CONCURRENTLY IF EXISTS " + name
	default:
		sql = "DROP INDEX IF EXISTS " + name
	}
	if err := tx.Exec(sql).Error; err != nil {
		return fmt.Errorf("drop index %s: %w", name, err)
	}
	return nil
}
