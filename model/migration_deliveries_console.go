package model

import (
	"fmt"

	"gorm.io/gorm"
)

// The deliveries console migration serves the console's Deliveries page
// and Dashboard without scanning the big tables:
//
//   - deliveries get (status, id) and (channel, id), so a list filtered by
//     status or channel pages newest first from an index, and (created_at,
//     channel, status), so the dashboard counts a day's or a week's
//     deliveries by channel and status from a range of the index alone;
//   - events get (type, at, scene, member_id) for follows and unfollows
//     only (a partial index where the database has them: the other events,
//     most of them, pay nothing for it), so the dashboard counts a week's
//     follows by scene from a range of the index alone. Queries that use
//     it spell the types out as literals.
//
// On PostgreSQL the indexes are built CONCURRENTLY, like v3's.
const deliveriesConsoleID = "2026112802d_deliveries_console"

// followsWhere is idx_events_follows' predicate.
const followsWhere = "type = 'wechat.subscribe' OR type = 'wechat.unsubscribe'"

func deliveriesConsoleIndexes() []v3Index {
	return []v3Index{
		{"idx_deliveries_status", "deliveries", "status, id", ""},
		{"idx_deliveries_channel", "deliveries", "channel, id", ""},
		{"idx_deliveries_created", "deliveries", "created_at, channel, status", ""},
		{"idx_events_follows", "events", "type, at, scene, member_id", followsWhere},
	}
}

func migrateDeliveriesConsole(tx *gorm.DB) error {
	dialect := tx.Dialector.Name()
	for _, i := range deliveriesConsoleIndexes() {
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
	return nil
}

func rollbackDeliveriesConsole(tx *gorm.DB) error {
	for _, i := range deliveriesConsoleIndexes() {
		if err := dropIndex(tx, i.table, i.name); err != nil {
			return err
		}
	}
	return nil
}
