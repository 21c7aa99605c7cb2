package model

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// hotTables are the tables every event reads and writes.
var hotTables = []string{"events", "members", "member_identities", "enrollments", "step_visits", "deliveries"}

// AnalyzeRows is how many rows a never-analyzed hot table holds before
// AnalyzeFresh analyzes it.
const AnalyzeRows = 200

// AnalyzeFresh analyzes, on PostgreSQL, the hot tables never analyzed yet
// that hold AnalyzeRows rows or more, and reports whether some are still
// waiting for their first analysis. Without statistics PostgreSQL guesses
// that any condition matches few rows: a batch's lookup of a few identities
// is then planned as a read of every identity of the kind (an openid
// lookup reading the whole table), until autovacuum's first ANALYZE, a
// minute or more into a new database. Other databases: nothing to do.
func AnalyzeFresh(ctx context.Context, db *gorm.DB) (pending bool, err error) {
	if db.Dialector.Name() != "postgres" {
		return false, nil
	}
	var rows []struct {
		Relname  string
		NLiveTup int64
	}
	if err := db.WithContext(ctx).Raw(`SELECT relname, n_live_tup FROM pg_stat_user_tables
		WHERE relname IN ? AND last_analyze IS NULL AND last_autoanalyze IS NULL`, hotTables).Scan(&rows).Error; err != nil {
		return true, fmt.Errorf("model: find tables to analyze: %w", err)
	}
	for _, r := range rows {
		if r.NLiveTup < AnalyzeRows {
			pending = true
			continue
		}
		if err := db.WithContext(ctx).Exec("ANALYZE " + r.Relname).Error; err != nil {
			return true, fmt.Errorf("model: analyze %s: %w", r.Relname, err)
		}
	}
	return pending, nil
}
