package model

import (
	"fmt"

	"gorm.io/gorm"
)

// The statistics rollup migration keeps, on SQLite only, running counts of
// what the journey statistics (GET /api/v1/journeys/{key}/stats) read:
// stats_counts holds, per journey, entry day (entered_day) and kind, the
// number of enrollments per status (kind "e"), of step visits per step,
// status and outcome ("v"), and of deliveries per channel and status
// ("d"). Triggers on enrollments, step_visits and deliveries keep it
// exact in the same transaction as every insert, update and delete,
// whichever code path makes them; existing rows are counted once here.
//
// A month of a journey is then a few hundred rows instead of a million
// visits: SQLite scans an index at a fraction of PostgreSQL's speed, and
// one writer at a time leaves nothing to contend for the counters. On
// PostgreSQL and MySQL the statistics keep reading the narrow indexes of
// the statistics migration: concurrent writers of one journey would queue
// on the same counter rows there.
const rollupID = "2026112802a_stats_rollup"

// rollupSource is one table the rollup counts: its kind and the three
// key columns (SQL expressions over NEW. or OLD.).
type rollupSource struct {
	table, kind string
	keys        [3]string
}

func rollupSources() []rollupSource {
	return []rollupSource{
		{"enrollments", "e", [3]string{"status", "''", "''"}},
		{"step_visits", "v", [3]string{"step_id", "status", "outcome"}},
		{"deliveries", "d", [3]string{"channel", "status", "''"}},
	}
}

// key is the source's i-th key over row (NEW, OLD, or "" for the table's
// own columns), never NULL.
func (s rollupSource) key(row string, i int) string {
	k := s.keys[i]
	if k == "''" {
		return k
	}
	if row != "" {
		k = row + "." + k
	}
	return "COALESCE(" + k + ", '')"
}

func (s rollupSource) col(row, c string) string {
	if row != "" {
		c = row + "." + c
	}
	return "COALESCE(" + c + ", 0)"
}

// add is the statement that adds one to row's counter.
func (s rollupSource) add(row string) string {
	return fmt.Sprintf("INSERT INTO stats_counts (journey_id, kind, entered_day, k1, k2, k3, n) "+
		"SELECT %s, '%s', %s.entered_day, %s, %s, %s, 1 WHERE %s.entered_day IS NOT NULL "+
		"ON CONFLICT (journey_id, kind, entered_day, k1, k2, k3) DO UPDATE SET n = n + 1;",
		s.col(row, "journey_id"), s.kind, row, s.key(row, 0), s.key(row, 1), s.key(row, 2), row)
}

// sub is the statement that takes one from row's counter.
func (s rollupSource) sub(row string) string {
	return fmt.Sprintf("UPDATE stats_counts SET n = n - 1 WHERE journey_id = %s AND kind = '%s' AND entered_day = %s.entered_day "+
		"AND k1 = %s AND k2 = %s AND k3 = %s;",
		s.col(row, "journey_id"), s.kind, row, s.key(row, 0), s.key(row, 1), s.key(row, 2))
}

// changed is the condition under which an update moves a row from one
// counter to another.
func (s rollupSource) changed() string {
	cond := "OLD.journey_id IS NOT NEW.journey_id OR OLD.entered_day IS NOT NEW.entered_day"
	for _, k := range s.keys {
		if k != "''" {
			cond += fmt.Sprintf(" OR OLD.%s IS NOT NEW.%s", k, k)
		}
	}
	return cond
}

func migrateRollup(tx *gorm.DB) error {
	if tx.Dialector.Name() != "sqlite" {
		return nil
	}
	stmts := []string{`CREATE TABLE stats_counts (
	journey_id INTEGER NOT NULL,
	kind TEXT NOT NULL,
	entered_day INTEGER NOT NULL,
	k1 TEXT NOT NULL,
	k2 TEXT NOT NULL,
	k3 TEXT NOT NULL,
	n INTEGER NOT NULL,
	PRIMARY KEY (journey_id, kind, entered_day, k1, k2, k3)
) WITHOUT ROWID`}
	for _, s := range rollupSources() {
		stmts = append(stmts,
			fmt.Sprintf("INSERT INTO stats_counts (journey_id, kind, entered_day, k1, k2, k3, n) "+
				"SELECT %s, '%s', entered_day, %s, %s, %s, COUNT(*) FROM %s WHERE entered_day IS NOT NULL GROUP BY 1, 3, 4, 5, 6",
				s.col("", "journey_id"), s.kind, s.key("", 0), s.key("", 1), s.key("", 2), s.table),
			fmt.Sprintf("CREATE TRIGGER stats_counts_%s_insert AFTER INSERT ON %s BEGIN %s END", s.table, s.table, s.add("NEW")),
			fmt.Sprintf("CREATE TRIGGER stats_counts_%s_update AFTER UPDATE ON %s WHEN %s BEGIN %s %s END",
				s.table, s.table, s.changed(), s.sub("OLD"), s.add("NEW")),
			fmt.Sprintf("CREATE TRIGGER stats_counts_%s_delete AFTER DELETE ON %s BEGIN %s END", s.table, s.table, s.sub("OLD")),
		)
	}
	for _, sql := range stmts {
		if err := tx.Exec(sql).Error; err != nil {
			return fmt.Errorf("statistics rollup: %w", err)
		}
	}
	return nil
}

func rollbackRollup(tx *gorm.DB) error {
	if tx.Dialector.Name() != "sqlite" {
		return nil
	}
	for _, s := range rollupSources() {
		for _, op := range []string{"insert", "update", "delete"} {
			if err := tx.Exec(fmt.Sprintf("DROP TRIGGER IF EXISTS stats_counts_%s_%s", s.table, op)).Error; err != nil {
				return fmt.Errorf("drop statistics trigger: %w", err)
			}
		}
	}
	if err := tx.Exec("DROP TABLE IF EXISTS stats_counts").Error; err != nil {
		return fmt.Errorf("drop stats_counts: %w", err)
	}
	return nil
}
