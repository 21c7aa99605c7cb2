package model

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
)

// TestHotIndexes checks the indexes the hot queries rely on after every
// migration: partial where the database has partial indexes (only
// unrouted events, only active enrollments), the same columns elsewhere;
// and that the indexes v3 replaced are gone.
func TestHotIndexes(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := testDB(t, dialect)
			if err := Migrate(db); err != nil {
				t.Fatal(err)
			}
			got := describeSchema(t, db, []string{"events", "enrollments"})
			partial := dialect != "mysql"
			for _, tc := range []struct{ index, where string }{
				{"events index idx_events_member_unrouted (member_key,routed_at,id) unique=false", "routed_at is null"},
				{"events index idx_events_unrouted (routed_at,received_at) unique=false", "routed_at is null and received_at is not null"},
				{"enrollments index idx_enrollments_member_active (member_id,status) unique=false", "status = '" + EnrollmentActive + "'"},
				{"enrollments index idx_enrollments_entry (journey_id,member_id,entered_at) unique=false", ""},
			} {
				want := tc.index
				if partial && tc.where != "" {
					want += " where " + tc.where
				}
				if !slices.Contains(strings.Split(got, "\n"), want) {
					t.Errorf("no index line %q in:\n%s", want, got)
				}
			}
			for _, gone := range []string{"idx_events_type", "idx_event_member_key", "idx_events_routed_at", "idx_enrollments_status", "idx_enrollment_member "} {
				if strings.Contains(got, " "+gone) {
					t.Errorf("index %s is still there:\n%s", gone, got)
				}
			}
		})
	}
}

// TestRollbackV3 checks that rolling v3 back restores the indexes v2 had.
// Rolling back v4 and v3 returns the schema to v2's.
func TestRollbackV3(t *testing.T) {
	t.Parallel()
	tables := []string{"events", "enrollments"}
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			v2 := testDB(t, dialect)
			if err := gormigrate.New(v2, migrateOptions(), Migrations()).MigrateTo("2026112401_hardening"); err != nil {
				t.Fatal(err)
			}
			want := describeSchema(t, v2, tables)
			db := testDB(t, dialect)
			if err := Migrate(db); err != nil {
				t.Fatal(err)
			}
			if err := gormigrate.New(db, migrateOptions(), Migrations()).RollbackTo("2026112401_hardening"); err != nil {
				t.Fatal(err)
			}
			if got := describeSchema(t, db, tables); got != want {
				t.Errorf("after rolling v3 back:\n%s\nwant (v2):\n%s", got, want)
			}
		})
	}
}

// On a new PostgreSQL database, a member's earlier unrouted events are
// found through idx_events_member_unrouted from the first burst on, not
// through the sweeper's idx_events_unrouted (which reads every unrouted
// event): without statistics the planner rated both the same and took the
// sweeper's, until autovacuum's first ANALYZE. The sweeper's index now
// serves only queries that compare received_at.
func TestNewDatabasePlansMemberQueryOnItsIndex(t *testing.T) {
	t.Parallel()
	db := testDB(t, "postgres")
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	// A burst's worth of unrouted events, with no ANALYZE since.
	if err := db.Exec(`INSERT INTO events (dedupe_key, type, source, member_key, at, received_at)
		SELECT 'k' || g, 'wechat.subscribe', 'wechat', 'openid:wx/o' || g, now(), now() FROM generate_series(1, 3000) g`).Error; err != nil {
		t.Fatal(err)
	}
	var plan []string
	err := db.Connection(func(c *gorm.DB) error {
		for _, q := range []string{
			"SET plan_cache_mode = force_generic_plan",
			`PREPARE earlier(text, bigint) AS SELECT * FROM events WHERE member_key = $1 AND routed_at IS NULL AND id < $2 ORDER BY id`,
		} {
			if err := c.Exec(q).Error; err != nil {
				return err
			}
		}
		return c.Raw("EXPLAIN EXECUTE earlier('openid:wx/o5', 9)").Scan(&plan).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan, "\n"); !strings.Contains(got, "idx_events_member_unrouted") {
		t.Errorf("earlier-events query on a new database planned as:\n%s\nwant idx_events_member_unrouted", got)
	}
}
