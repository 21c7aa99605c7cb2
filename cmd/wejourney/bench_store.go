package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/schollz/progressbar/v3"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/model"
)

// benchTables are wejourney's tables a bench run fills and --reset empties.
// Accounts, admin users, API keys, sessions and settings are kept: the
// bench seeds its own account and they hold nothing a run measures.
var benchTables = []string{"events", "members", "member_identities", "enrollments",
	"step_visits", "deliveries", "journeys", "journey_versions", "segment_members"}

// benchSecretKey encrypts the bench account's secrets when
// WEJOURNEY_SECRET_KEY is not set: fixed, so that runs after the first open
// the account the first one stored.
const benchSecretKey = "d2Vqb3VybmV5LWJlbmNoLWtleS1ub3Qtc2VjcmV0ISE="

// preloadJourney holds the preloaded members: they wait 30 days, and a new
// follow never enters it (its scene is not "preload").
const preloadJourney = `key: bench-longwait
name: 压测长等待
trigger: { event: wechat.subscribe, where: 'event.scene == "preload"' }
steps:
  - id: wait
    wait: 30d
    next: bye
  - id: bye
    send: { channel: wechat.text, text: "三十天后见" }
`

// preloadWait is the wait of preloadJourney, and preloadWaitText says it.
const (
	preloadWait     = 30 * 24 * time.Hour
	preloadWaitText = "30 days"
)

// benchStores points cfg at o's database and Redis, readied (see
// prepareBenchStore; --reset also flushes the Redis database), and
// describes them for the report's first line.
func benchStores(ctx context.Context, cfg *config.Config, o benchOpts, stdout io.Writer) (string, error) {
	if o.secretKey != "" {
		cfg.SecretKey = o.secretKey
	}
	dbDesc := "a temporary SQLite file"
	if o.databaseURL != "" {
		did, err := prepareBenchStore(ctx, o.databaseURL, o.reset)
		if err != nil {
			return "", err
		}
		dialect, _, _ := config.ParseDatabaseURL(o.databaseURL) // parsed by prepareBenchStore
		cfg.DatabaseURL = o.databaseURL
		if dialect != "sqlite" && cfg.SecretKey == "" {
			cfg.SecretKey = benchSecretKey
			fmt.Fprintln(stdout, "WEJOURNEY_SECRET_KEY is not set: the bench encrypts its account's secrets with a fixed bench key (not for production data)")
		}
		dbDesc = fmt.Sprintf("%s %s (%s)", dialect, redact.String(o.databaseURL), did)
	}
	redisDesc := "in-process Redis"
	if o.redisURL != "" {
		cfg.RedisURL = o.redisURL
		redisDesc = "Redis " + redact.String(o.redisURL)
		if o.reset {
			if err := flushBenchRedis(ctx, o.redisURL); err != nil {
				return "", err
			}
			redisDesc += " (flushed, --reset)"
		}
	}
	return dbDesc + ", " + redisDesc, nil
}

// preloadBatch is how many members one INSERT … SELECT creates in the bench.
const preloadBatch = 5000

// prepareBenchStore readies the database an embedded bench runs on: it
// refuses a database that already holds events unless reset is set, in
// which case it empties wejourney's tables, then migrates. It returns what
// it did, for the report.
func prepareBenchStore(ctx context.Context, databaseURL string, reset bool) (string, error) {
	dialect, dsn, err := config.ParseDatabaseURL(databaseURL)
	if err != nil {
		return "", fmt.Errorf("--database-url: %w", err)
	}
	db, err := model.Open(dialect, dsn)
	if err != nil {
		return "", fmt.Errorf("--database-url: %w", err)
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	}()
	db = db.WithContext(ctx)
	did := "fresh database"
	if db.Migrator().HasTable("events") {
		var ids []int64
		if err := db.Table("events").Limit(1).Pluck("id", &ids).Error; err != nil {
			return "", fmt.Errorf("--database-url: look for events: %w", err)
		}
		switch {
		case len(ids) > 0 && !reset:
			return "", fmt.Errorf("--database-url: %s already holds events; the bench needs a database of its own (pass --reset to empty wejourney's tables %s and flush the Redis database)",
				redact.String(databaseURL), strings.Join(benchTables, ", "))
		case reset:
			if err := truncateBenchTables(db, dialect); err != nil {
				return "", err
			}
			did = "tables emptied (--reset)"
		}
	}
	if err := model.Migrate(db); err != nil {
		return "", fmt.Errorf("--database-url: %w", err)
	}
	return did, nil
}

// truncateBenchTables empties benchTables and restarts their ids.
func truncateBenchTables(db *gorm.DB, dialect string) error {
	m := db.Migrator()
	var stmts []string
	switch dialect {
	case "postgres":
		var present []string
		for _, t := range benchTables {
			if m.HasTable(t) {
				present = append(present, t)
			}
		}
		if len(present) > 0 {
			stmts = append(stmts, "TRUNCATE "+strings.Join(present, ", ")+" RESTART IDENTITY")
		}
	case "mysql":
		for _, t := range benchTables {
			if m.HasTable(t) {
				stmts = append(stmts, "TRUNCATE TABLE "+t)
			}
		}
	default:
		for _, t := range benchTables {
			if m.HasTable(t) {
				stmts = append(stmts, "DELETE FROM "+t)
			}
		}
	}
	for _, s := range stmts {
		if err := db.Exec(s).Error; err != nil {
			return fmt.Errorf("--reset: %s: %w", s, err)
		}
	}
	return nil
}

// flushBenchRedis empties the Redis database of redisURL.
func flushBenchRedis(ctx context.Context, redisURL string) error {
	opt, err := parseRedisURL(redisURL)
	if err != nil {
		return fmt.Errorf("--redis-url: %w", err)
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("--redis-url: unexpected client type")
	}
	defer rdb.Close()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("--reset: flush Redis: %w", err)
	}
	return nil
}

// preloadResult says what preload created.
type preloadResult struct {
	members   int
	journeyID int64
	took      time.Duration
	vacuumed  time.Duration // how long VACUUM (ANALYZE) took after, on PostgreSQL
}

// preload creates n members, each with its openid identity, enrolled in
// the published journey bench-longwait and waiting in its wait step,
// directly in the database: per batch of batch members, one INSERT …
// SELECT over a number series per table, in one transaction. No asynq task is enqueued for the
// waits: the database holds them (the sweeper finds them when due).
func preload(ctx context.Context, db *gorm.DB, appID string, n, batch int, progress io.Writer) (preloadResult, error) {
	start := time.Now()
	db = db.WithContext(ctx)
	var j model.Journey
	if err := db.Where(&model.Journey{Key: "bench-longwait"}).First(&j).Error; err != nil {
		return preloadResult{}, fmt.Errorf("--preload: the journey bench-longwait was not published: %w", err)
	}
	if j.CurrentVersionID == 0 {
		return preloadResult{}, errors.New("--preload: the journey bench-longwait has no live version")
	}
	dialect := db.Dialector.Name()
	run := randomHex(4)
	prefix := "opl_" + run + "_"
	now := time.Now().UTC()
	due := now.Add(preloadWait)
	event := `{"type":"wechat.subscribe","scene":"preload"}`
	concat := func(parts ...string) string {
		if dialect == "mysql" {
			return "CONCAT(" + strings.Join(parts, ", ") + ")"
		}
		return "(" + strings.Join(parts, " || ") + ")"
	}
	text := func(col string) string {
		if dialect == "mysql" {
			return col // CONCAT converts
		}
		return "CAST(" + col + " AS TEXT)"
	}

	// typed marks a parameter's type where PostgreSQL cannot infer it (a
	// parameter in a SELECT list is text there).
	typed := func(sqlType string) string {
		if dialect == "postgres" {
			return "CAST(? AS " + sqlType + ")"
		}
		return "?"
	}
	ts, b, i8 := typed("timestamptz"), typed("boolean"), typed("bigint")
	bar := progressbar.NewOptions(n, progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("preloading members mid-journey"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("members"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n) - 1
		err := db.Transaction(func(tx *gorm.DB) error {
			if dialect == "mysql" {
				// The series below recurses once per row; MySQL stops at 1,000
				// by default, MariaDB at 1,000 too under its own variable. Each
				// server refuses the other's name: that error is expected.
				tx.Exec("SET SESSION cte_max_recursion_depth = ?", batch+1)
				tx.Exec("SET SESSION max_recursive_iterations = ?", batch+1)
			}
			var memberFloor, enrollmentFloor int64
			if err := tx.Table("members").Select("COALESCE(MAX(id), 0)").Scan(&memberFloor).Error; err != nil {
				return fmt.Errorf("members: %w", err)
			}
			if err := tx.Table("enrollments").Select("COALESCE(MAX(id), 0)").Scan(&enrollmentFloor).Error; err != nil {
				return fmt.Errorf("enrollments: %w", err)
			}
			series, args := seriesCTE(dialect, lo, hi)
			members := insertWith(dialect, series,
				"INSERT INTO members (app_id, open_id, subscribed, subscribed_at, first_scene, last_scene, last_interaction_at, created_at, updated_at)",
				"SELECT ?, "+concat("CAST(? AS "+textType(dialect)+")", text("i"))+", "+b+", "+ts+", 'preload', 'preload', "+ts+", "+ts+", "+ts+" FROM s")
			if err := tx.Exec(members, append(args, appID, prefix, true, now, now, now, now)...).Error; err != nil {
				return fmt.Errorf("members: %w", err)
			}
			batch := "FROM members WHERE id > ? AND open_id LIKE ?"
			if err := tx.Exec("INSERT INTO member_identities (kind, value, member_id) SELECT ?, "+concat("app_id", "'/'", "open_id")+", id "+batch,
				model.IdentityOpenID, memberFloor, prefix+"%").Error; err != nil {
				return fmt.Errorf("member identities: %w", err)
			}
			if err := tx.Exec("INSERT INTO enrollments (journey_id, version_id, member_id, status, active_key, step_id, trigger_event_id, event, entered_at, entered_day) "+
				"SELECT "+i8+", "+i8+", id, ?, "+concat("'"+strconv.FormatInt(j.ID, 10)+":'", text("id"))+", 'wait', 0, ?, "+ts+", "+i8+" "+batch,
				j.ID, j.CurrentVersionID, model.EnrollmentActive, event, now, model.EntryDay(now), memberFloor, prefix+"%").Error; err != nil {
				return fmt.Errorf("enrollments: %w", err)
			}
			if err := tx.Exec("INSERT INTO step_visits (enrollment_id, seq, journey_id, version_id, step_id, member_id, status, due_at, attempts, created_at, entered_day) "+
				"SELECT id, 1, journey_id, version_id, step_id, member_id, ?, "+ts+", 0, "+ts+", entered_day FROM enrollments WHERE id > ? AND journey_id = ?",
				model.VisitWaiting, due, now, enrollmentFloor, j.ID).Error; err != nil {
				return fmt.Errorf("step visits: %w", err)
			}
			return nil
		})
		if err != nil {
			return preloadResult{}, fmt.Errorf("--preload: batch from %d: %w", lo, err)
		}
		bar.Add(hi - lo + 1)
	}
	bar.Finish()
	return preloadResult{members: n, journeyID: j.ID, took: time.Since(start)}, nil
}

// textType is the type to cast to for text in dialect.
func textType(dialect string) string {
	if dialect == "mysql" {
		return "CHAR"
	}
	return "TEXT"
}

// seriesCTE is a common table expression s(i) of the integers lo..hi in
// dialect, and its arguments.
func seriesCTE(dialect string, lo, hi int) (string, []any) {
	if dialect == "postgres" {
		return "WITH s(i) AS (SELECT generate_series(CAST(? AS BIGINT), CAST(? AS BIGINT)))", []any{lo, hi}
	}
	return "WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?)", []any{lo, hi}
}

// insertWith joins a CTE, an INSERT INTO … (columns) and its SELECT in the
// order dialect wants: MySQL puts the WITH after the INSERT, the others before.
func insertWith(dialect, cte, insert, sel string) string {
	if dialect == "mysql" {
		return insert + " " + cte + " " + sel
	}
	return cte + " " + insert + " " + sel
}

// rowsRead is what PostgreSQL read from each of wejourney's tables so far:
// rows of sequential scans plus rows fetched through indexes.
type rowsRead map[string]int64

// since returns the rows read per follow since before, in total and per
// table, the tables that read most first.
func (r rowsRead) since(before rowsRead, follows int) (total float64, tables string) {
	type table struct {
		name string
		n    int64
	}
	var ts []table
	var sum int64
	for name, n := range r {
		if d := n - before[name]; d > 0 {
			ts = append(ts, table{name, d})
			sum += d
		}
	}
	slices.SortFunc(ts, func(a, b table) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.name, b.name)) })
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		parts = append(parts, fmt.Sprintf("%s %.1f", t.name, float64(t.n)/float64(follows)))
	}
	return float64(sum) / float64(follows), strings.Join(parts, ", ")
}

// pgRowsRead is the rows PostgreSQL read from wejourney's tables so far,
// or ok false on other databases. It first closes the pool's idle
// connections (a backend flushes its statistics when it ends) and waits
// until the figures settle, so that the work of the run just finished is
// counted.
func pgRowsRead(ctx context.Context, db *gorm.DB) (rowsRead, bool) {
	if db.Dialector.Name() != "postgres" {
		return nil, false
	}
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.SetMaxIdleConns(0)
		sqlDB.SetMaxIdleConns(32)
	}
	read := func() (rowsRead, int64, error) {
		var rows []struct {
			Relname string
			N       int64
		}
		err := db.WithContext(ctx).Connection(func(c *gorm.DB) error {
			c.Exec("SELECT pg_stat_force_next_flush()") // PostgreSQL 15+; older ones flush on their own
			if err := c.Exec("SELECT pg_stat_clear_snapshot()").Error; err != nil {
				return err
			}
			return c.Raw("SELECT relname, COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) AS n FROM pg_stat_user_tables WHERE relname IN ?",
				benchTables).Scan(&rows).Error
		})
		r, sum := rowsRead{}, int64(0)
		for _, row := range rows {
			r[row.Relname] += row.N
			sum += row.N
		}
		return r, sum, err
	}
	last, lastSum, err := read()
	if err != nil {
		return nil, false
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return last, true
		case <-time.After(300 * time.Millisecond): // statistics arrive asynchronously
		}
		r, sum, err := read()
		if err != nil {
			return nil, false
		}
		if sum == lastSum {
			return r, true
		}
		last, lastSum = r, sum
	}
	return last, true
}

// analyzeBenchTables vacuums and analyzes the tables after a bulk load on
// PostgreSQL, as autovacuum would within a minute or so: without it the
// runs are planned for empty tables (an enrollments lookup then read every
// preloaded enrollment, 20,000 rows per follow at 20,000 members), and
// autovacuum works through the new rows during the measurement.
// It reports whether it did (only on PostgreSQL).
func analyzeBenchTables(ctx context.Context, db *gorm.DB) (bool, error) {
	if db.Dialector.Name() != "postgres" {
		return false, nil
	}
	if err := db.WithContext(ctx).Exec("VACUUM (ANALYZE) " + strings.Join(benchTables, ", ")).Error; err != nil {
		return false, fmt.Errorf("--preload: vacuum: %w", err)
	}
	return true, nil
}

// redisState is what Redis holds: its memory and asynq's keys.
type redisState struct {
	memory string // used_memory_human, or "" when INFO memory says nothing (the in-process Redis)
	keys   int64  // keys of asynq's namespace
}

func (s redisState) String() string {
	mem := "n/a (in-process Redis)"
	if s.memory != "" {
		mem = s.memory
	}
	return fmt.Sprintf("used_memory %s, asynq keys %d", mem, s.keys)
}

// readRedisState reads INFO memory and counts the keys under asynq: (SCAN).
func readRedisState(ctx context.Context, rdb redis.UniversalClient) redisState {
	var s redisState
	if info, err := rdb.Info(ctx, "memory").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory_human:"); ok {
				s.memory = v
			}
		}
	}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "asynq:*", 1000).Result()
		if err != nil {
			break
		}
		s.keys += int64(len(keys))
		if cursor = next; cursor == 0 {
			break
		}
	}
	return s
}
