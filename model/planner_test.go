package model

import (
	"errors"
	"fmt"
	"testing"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// wejourney's PostgreSQL connections plan with random_page_cost 1.1 and a
// custom plan per execution, unless the URL chooses otherwise.
func TestWithPlannerSettings(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"postgres://u@h:5432/db", "postgres://u@h:5432/db?random_page_cost=1.1&plan_cache_mode=force_custom_plan"},
		{"postgres://u@h/db?sslmode=disable", "postgres://u@h/db?sslmode=disable&random_page_cost=1.1&plan_cache_mode=force_custom_plan"},
		{"postgres://u@h/db?random_page_cost=4", "postgres://u@h/db?random_page_cost=4&plan_cache_mode=force_custom_plan"},
		{"host=h dbname=db plan_cache_mode=auto", "host=h dbname=db plan_cache_mode=auto random_page_cost=1.1"},
	} {
		if got := withPlannerSettings(tt.in); got != tt.want {
			t.Errorf("withPlannerSettings(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// A new PostgreSQL database's hot table is analyzed once it holds rows: the
// planner then knows an identity lookup reads a handful of rows, not the
// kind's whole share of the table. Tables still nearly empty wait.
func TestAnalyzeFresh(t *testing.T) {
	t.Parallel()
	db := testDB(t, "postgres")
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	ids := make([]MemberIdentity, 500)
	for i := range ids {
		ids[i] = MemberIdentity{Kind: IdentityOpenID, Value: fmt.Sprintf("wx/o%d", i), MemberID: int64(i + 1)}
	}
	if err := db.CreateInBatches(ids, 100).Error; err != nil {
		t.Fatal(err)
	}
	db.Exec("SELECT pg_stat_force_next_flush()") // the row counts AnalyzeFresh reads
	analyzed := func(table string) bool {
		var n int64
		db.Raw("SELECT count(*) FROM pg_stat_user_tables WHERE relname = ? AND last_analyze IS NOT NULL", table).Scan(&n)
		return n == 1
	}
	pending, err := AnalyzeFresh(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if !pending || !analyzed("member_identities") || analyzed("events") {
		t.Errorf("pending %v, member_identities analyzed %v, events analyzed %v; want true, true, false (events is empty)",
			pending, analyzed("member_identities"), analyzed("events"))
	}
}

// A deadlock or serialization failure, however wrapped, may be run again;
// other errors may not.
func TestRetryable(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("journey: enroll: %w", &pgconn.PgError{Code: "40P01"}), true},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{fmt.Errorf("x: %w", &mysqldriver.MySQLError{Number: 1213}), true},
		{&mysqldriver.MySQLError{Number: 1062}, false},
		{errors.New("deadlock"), false},
	} {
		if got := Retryable(tt.err); got != tt.want {
			t.Errorf("Retryable(%v) = %v; want %v", tt.err, got, tt.want)
		}
	}
}
