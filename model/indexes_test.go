package model

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-gormigrate/gormigrate/v2"
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
				{"events index idx_events_unrouted (routed_at,received_at) unique=false", "routed_at is null"},
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
			if err := gormigrate.New(db, migrateOptions(), Migrations()).RollbackMigration(Migrations()[2]); err != nil {
				t.Fatal(err)
			}
			if got := describeSchema(t, db, tables); got != want {
				t.Errorf("after rolling v3 back:\n%s\nwant (v2):\n%s", got, want)
			}
		})
	}
}
