package model

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"
)

// Rows written before the statistics migrations get their China entry
// day (an enrollment entered at 00:30 China time counts on that day, not
// the UTC day before), on every dialect; on SQLite the rollup then counts
// them, and keeps counting exactly as rows are added, change status and
// are deleted.
func TestStatsBackfillAndRollup(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := testDB(t, dialect)
			if err := gormigrate.New(db, migrateOptions(), Migrations()).MigrateTo(lifecycleID); err != nil {
				t.Fatal(err)
			}
			// 16:30 UTC on the 24th is 00:30 on the 25th in China.
			late := time.Date(2026, 11, 24, 16, 30, 0, 0, time.UTC)
			early := time.Date(2026, 11, 24, 1, 0, 0, 0, time.UTC)
			for i, e := range []struct {
				at     time.Time
				status string
			}{{late, EnrollmentActive}, {late, EnrollmentGoal}, {early, EnrollmentCompleted}} {
				id := int64(i + 1)
				exec(t, db, "INSERT INTO enrollments (id, journey_id, version_id, member_id, status, trigger_event_id, entered_at) VALUES (?, 7, 1, ?, ?, 0, ?)",
					id, id, e.status, e.at)
				exec(t, db, "INSERT INTO step_visits (id, enrollment_id, seq, journey_id, version_id, step_id, member_id, status, due_at, outcome, attempts, created_at) "+
					"VALUES (?, ?, 1, 7, 1, 'hello', ?, 'done', ?, 'sent', 0, ?)", id, id, id, e.at, e.at)
				exec(t, db, "INSERT INTO deliveries (step_visit_id, channel, enrollment_id, journey_id, member_id, status, created_at) VALUES (?, 'wechat.text', ?, 7, ?, 'sent', ?)",
					id, id, id, e.at)
			}
			if err := Migrate(db); err != nil {
				t.Fatal(err)
			}
			for _, table := range []string{"enrollments", "step_visits", "deliveries"} {
				var days []int
				col := "enrollment_id"
				if table == "enrollments" {
					col = "id"
				}
				if err := db.Raw("SELECT entered_day FROM " + table + " ORDER BY " + col).Scan(&days).Error; err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff([]int{20261125, 20261125, 20261124}, days); diff != "" {
					t.Errorf("%s.entered_day after the migration (-want +got):\n%s", table, diff)
				}
			}
			if dialect != "sqlite" {
				return
			}
			checkRollup(t, db, "after the backfill")
			exec(t, db, "UPDATE step_visits SET status = 'failed', outcome = NULL WHERE id = 1")
			exec(t, db, "UPDATE enrollments SET status = 'failed' WHERE id = 1")
			exec(t, db, "UPDATE step_visits SET attempts = 2") // no counted column changed
			exec(t, db, "INSERT INTO step_visits (enrollment_id, seq, journey_id, version_id, step_id, member_id, status, due_at, attempts, created_at, entered_day) "+
				"VALUES (2, 2, 7, 1, 'pause', 2, 'waiting', ?, 0, ?, 20261125)", late, late)
			exec(t, db, "INSERT INTO step_visits (enrollment_id, seq, journey_id, version_id, step_id, member_id, status, due_at, attempts, created_at) "+
				"VALUES (3, 2, 7, 1, 'pause', 3, 'waiting', ?, 0, ?)", early, early) // no entry day: not counted
			exec(t, db, "UPDATE deliveries SET status = 'failed' WHERE enrollment_id = 3")
			exec(t, db, "DELETE FROM step_visits WHERE enrollment_id = 3")
			exec(t, db, "DELETE FROM enrollments WHERE id = 3")
			checkRollup(t, db, "after updates, inserts and deletes")
		})
	}
}

func exec(t *testing.T, db *gorm.DB, sql string, args ...any) {
	t.Helper()
	if err := db.Exec(sql, args...).Error; err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// checkRollup compares the rollup with the rows it counts.
func checkRollup(t *testing.T, db *gorm.DB, when string) {
	t.Helper()
	type count struct {
		Kind, Key string
		N         int64
	}
	var got, want []count
	if err := db.Raw("SELECT kind, journey_id || '/' || entered_day || '/' || k1 || '/' || k2 || '/' || k3 AS key, n FROM stats_counts WHERE n <> 0 ORDER BY 1, 2").
		Scan(&got).Error; err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ kind, keys, table string }{
		{"e", "status || '//'", "enrollments"},
		{"v", "step_id || '/' || status || '/' || COALESCE(outcome, '')", "step_visits"},
		{"d", "channel || '/' || status || '/'", "deliveries"},
	} {
		var rows []count
		sql := fmt.Sprintf("SELECT '%s' AS kind, journey_id || '/' || entered_day || '/' || %s AS key, COUNT(*) AS n FROM %s WHERE entered_day IS NOT NULL GROUP BY 2 ORDER BY 2",
			q.kind, q.keys, q.table)
		if err := db.Raw(sql).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		want = append(want, rows...)
	}
	slices.SortFunc(want, func(a, b count) int { return strings.Compare(a.Kind+a.Key, b.Kind+b.Key) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats_counts %s (-rows +rollup):\n%s", when, diff)
	}
	if len(want) == 0 {
		t.Errorf("nothing counted %s", when)
	}
}
