package journey_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// bigRows is how many rows each hot table gets before plans are checked:
// enough that a database scans when no index matches a query.
const bigRows = 20000

// bigTables are the tables that grow with the members and their events.
var bigTables = []string{"events", "members", "member_identities", "enrollments", "step_visits", "deliveries"}

// seqTable is a derived table of n from 1 to count, for INSERT … SELECT.
func seqTable(dialect string, count int) string {
	if dialect == "postgres" {
		return fmt.Sprintf("generate_series(1, %d) AS s(n)", count)
	}
	d := "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " +
		"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	num := "a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 1"
	return fmt.Sprintf("(SELECT %s AS n FROM %s a, %s b, %s c, %s e, %s f WHERE %s <= %d) s", num, d, d, d, d, d, num, count)
}

// fillBig fills the hot tables the way a busy installation has them:
// bigRows members (ids 1…bigRows) each with an openid identity, a routed
// subscribe event, an active enrollment of journey jid (version vid) waiting
// at step "wait" (visit seq 1) with a scheduled visit after it (seq 2), and
// a completed enrollment with a done visit and a sent delivery; and bigRows
// unrouted events, received now, over bigRows/4 other members.
// Enrollment ids: active 1…bigRows, completed bigRows+1…2*bigRows; visit
// ids: waiting 1…bigRows; event ids: routed 1…bigRows, unrouted after.
func fillBig(t *testing.T, db *gorm.DB, jid, vid int64, now time.Time) {
	t.Helper()
	dialect := db.Dialector.Name()
	seq := seqTable(dialect, bigRows)
	day := now.Add(24 * time.Hour)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO members (app_id, open_id, subscribed, created_at, updated_at) SELECT 'wxbig', CONCAT('o', n), true, ?, ? FROM " + seq, []any{now, now}},
		{"INSERT INTO member_identities (kind, value, member_id) SELECT 'openid', CONCAT('wxbig/o', n), n FROM " + seq, nil},
		{"INSERT INTO events (dedupe_key, type, source, member, member_key, props, at, received_at, member_id, routed_at, attempts) " +
			"SELECT CONCAT('r', n), 'wechat.subscribe', 'wechat', '{}', CONCAT('openid:wxbig/o', n), '{}', ?, ?, n, ?, 0 FROM " + seq, []any{now, now, now}},
		{"INSERT INTO events (dedupe_key, type, source, member, member_key, props, at, received_at, attempts) " +
			fmt.Sprintf("SELECT CONCAT('u', n), 'wechat.subscribe', 'wechat', '{}', CONCAT('openid:wxbig/u', n %% %d), '{}', ?, ?, 0 FROM ", bigRows/4) + seq, []any{now, now}},
		{"INSERT INTO enrollments (journey_id, version_id, member_id, status, active_key, step_id, trigger_event_id, event, entered_at) " +
			fmt.Sprintf("SELECT ?, ?, n, 'active', CONCAT('%d:', n), 'wait', n, '{}', ? FROM ", jid) + seq, []any{jid, vid, now}},
		{"INSERT INTO enrollments (journey_id, version_id, member_id, status, step_id, trigger_event_id, event, entered_at, ended_at, end_reason) " +
			"SELECT ?, ?, n, 'completed', 'wait', n, '{}', ?, ?, 'completed' FROM " + seq, []any{jid, vid, now.Add(-48 * time.Hour), now}},
		{"INSERT INTO step_visits (enrollment_id, seq, journey_id, version_id, step_id, member_id, status, due_at, attempts, created_at) " +
			"SELECT n, 1, ?, ?, 'wait', n, 'waiting', ?, 0, ? FROM " + seq, []any{jid, vid, day, now}},
		{"INSERT INTO step_visits (enrollment_id, seq, journey_id, version_id, step_id, member_id, status, due_at, attempts, created_at) " +
			"SELECT n, 2, ?, ?, 'after', n, 'scheduled', ?, 0, ? FROM " + seq, []any{jid, vid, day.Add(time.Hour), now}},
		{"INSERT INTO step_visits (enrollment_id, seq, journey_id, version_id, step_id, member_id, status, due_at, attempts, created_at, finished_at, outcome) " +
			fmt.Sprintf("SELECT n + %d, 1, ?, ?, 'wait', n, 'done', ?, 1, ?, ?, 'done' FROM ", bigRows) + seq, []any{jid, vid, now.Add(-48 * time.Hour), now, now}},
		{"INSERT INTO deliveries (step_visit_id, channel, enrollment_id, journey_id, member_id, " + quoteCol(dialect, "to") + ", status, created_at) " +
			fmt.Sprintf("SELECT n + %d, 'wechat.text', n + %d, ?, n, CONCAT('o', n), 'sent', ? FROM ", 2*bigRows, bigRows) + seq, []any{jid, now}},
	} {
		if err := db.Exec(q.sql, q.args...).Error; err != nil {
			t.Fatalf("fill: %v\n%s", err, q.sql)
		}
	}
	analyze := "ANALYZE"
	if dialect == "mysql" {
		analyze = "ANALYZE TABLE " + strings.Join(bigTables, ", ")
	}
	if err := db.Exec(analyze).Error; err != nil {
		t.Fatalf("analyze: %v", err)
	}
}

func quoteCol(dialect, c string) string {
	if dialect == "mysql" {
		return "`" + c + "`"
	}
	return `"` + c + `"`
}

// hotQuery is one query the engine runs per event or per step, built the
// way the named function builds it (keep them in step with the code).
type hotQuery struct {
	name  string // the function that runs it, and what for
	index string // the index it must use; "" for the primary key
	// maxRows bounds the estimated rows its scans read, whatever the table
	// sizes; for a sweep query (sweep true) the rows it returns: it reads
	// an index in the order it asks for, up to its LIMIT.
	maxRows float64
	build   func(tx *gorm.DB) *gorm.DB
	// sweep marks a query the sweeper runs once per interval, not per event.
	// Only its custom plan is checked: PostgreSQL keeps planning it with the
	// parameters' values, since a generic plan, which does not know them,
	// costs more than the custom plans did.
	sweep bool
}

// hotQueries are the per-event and per-step queries, on the rows fillBig
// made (member 10, its active enrollment 10 and waiting visit 10, ...).
func hotQueries(jid int64, now time.Time) []hotQuery {
	var ids []int64
	var n int64
	active, open := model.EnrollmentActive, []string{model.VisitScheduled, model.VisitWaiting}
	unrouted := int64(bigRows + 10) // an unrouted event of member key openid:wxbig/u10
	return []hotQuery{
		{"Ingestor: dedupe lookup", "idx_events_dedupe_key", 10, func(tx *gorm.DB) *gorm.DB {
			return tx.Where("dedupe_key IN ?", []string{"r10", "r11", "new"}).Find(&[]model.Event{})
		}, false},
		{"routeOne: load the event", "", 1, func(tx *gorm.DB) *gorm.DB { return tx.First(&model.Event{}, unrouted) }, false},
		{"routeOne: the member's earlier unrouted events", "idx_events_member_unrouted", 50, func(tx *gorm.DB) *gorm.DB {
			return tx.Where("member_key = ? AND routed_at IS NULL AND id < ?", "openid:wxbig/u10", unrouted+bigRows/2).
				Order("id").Find(&[]model.Event{})
		}, false},
		{"resolveMember: identity", "", 1, func(tx *gorm.DB) *gorm.DB {
			return tx.Where("kind = ? AND value = ?", model.IdentityOpenID, "wxbig/o10").Limit(1).Find(&[]model.MemberIdentity{})
		}, false},
		{"resolveMember: load the member", "", 1, func(tx *gorm.DB) *gorm.DB { return tx.First(&model.Member{}, 10) }, false},
		{"routeEvent: mark the event routed", "", 1, func(tx *gorm.DB) *gorm.DB {
			return tx.Model(&model.Event{}).Where("id = ? AND routed_at IS NULL", unrouted).
				Updates(map[string]any{"routed_at": now, "member_id": 10})
		}, false},
		{"routeToEnrollments: the member's active enrollments", "idx_enrollments_member_active", 10, func(tx *gorm.DB) *gorm.DB {
			return tx.Where("member_id = ? AND status = '"+active+"'", 10).Find(&[]model.Enrollment{})
		}, false},
		{"routeToEnrollments: the waiting visit", "idx_visit_seq", 10, func(tx *gorm.DB) *gorm.DB {
			return tx.Where("enrollment_id = ? AND step_id = ? AND status = ?", 10, "wait", model.VisitWaiting).
				Order("seq DESC").First(&model.StepVisit{})
		}, false},
		{"enroll: entry check (once, cooldown)", "idx_enrollments_entry", 10, func(tx *gorm.DB) *gorm.DB {
			return tx.Model(&model.Enrollment{}).Where("journey_id = ? AND member_id = ?", jid, 10).
				Where("entered_at > ?", now.Add(-time.Hour)).Count(&n)
		}, false},
		{"endEnrollment: end it", "", 1, func(tx *gorm.DB) *gorm.DB {
			return tx.Model(&model.Enrollment{}).Where("id = ? AND status = ?", 10, active).
				Updates(map[string]any{"status": model.EnrollmentExited, "end_reason": "x", "ended_at": now, "active_key": nil})
		}, false},
		{"endEnrollment: cancel its visits", "idx_visit_seq", 10, func(tx *gorm.DB) *gorm.DB {
			return tx.Model(&model.StepVisit{}).Where("enrollment_id = ? AND status IN ?", 10, open).
				Updates(map[string]any{"status": model.VisitCancelled, "outcome": "x", "finished_at": now})
		}, false},
		{"claim: lease the visit", "", 1, func(tx *gorm.DB) *gorm.DB {
			return tx.Model(&model.StepVisit{}).
				Where("id = ? AND ((status IN ? AND due_at <= ?) OR (status = ? AND lease_until < ?))", 10, open, now, model.VisitRunning, now).
				Updates(map[string]any{"status": model.VisitRunning, "lease_until": now, "attempts": gorm.Expr("attempts + 1")})
		}, false},
		{"send: the delivery of a visit and channel", "idx_delivery_visit", 1, func(tx *gorm.DB) *gorm.DB {
			return tx.Where("step_visit_id = ? AND channel = ?", 2*bigRows+10, "wechat.text").First(&model.Delivery{})
		}, false},
		{"Sweep: unrouted events past the grace", "idx_events_unrouted", 1000, func(tx *gorm.DB) *gorm.DB {
			return tx.Model(&model.Event{}).Where("routed_at IS NULL AND received_at < ?", now.Add(-time.Minute)).
				Order("id").Limit(1000).Pluck("id", &ids)
		}, true},
		{"Sweep: overdue scheduled visits", "idx_visit_due", 1000, func(tx *gorm.DB) *gorm.DB {
			return tx.Select("id", "due_at", "status").Where("status = ? AND due_at < ?", model.VisitScheduled, now).
				Order("due_at").Limit(1000).Find(&[]model.StepVisit{})
		}, true},
		{"Sweep: overdue waiting visits", "idx_visit_due", 1000, func(tx *gorm.DB) *gorm.DB {
			return tx.Select("id", "due_at", "status").Where("status = ? AND due_at < ?", model.VisitWaiting, now).
				Order("due_at").Limit(1000).Find(&[]model.StepVisit{})
		}, true},
		{"Sweep: running visits past their lease", "idx_visit_due", 1000, func(tx *gorm.DB) *gorm.DB {
			return tx.Select("id", "due_at", "status").Where("status = ? AND lease_until < ?", model.VisitRunning, now).
				Order("due_at").Limit(1000).Find(&[]model.StepVisit{})
		}, true},
		{"runSegment: the members changed since the last evaluation", "idx_members_updated_at", 1000, func(tx *gorm.DB) *gorm.DB {
			return tx.Model(&model.Member{}).Where("updated_at > ?", now.Add(time.Minute)).Pluck("id", &ids)
		}, true},
		{"runSegment: a page of them", "", 500, func(tx *gorm.DB) *gorm.DB {
			return tx.Where("id IN ?", []int64{10, 11, 12}).Find(&[]model.Member{})
		}, true},
	}
}

// scan is one table access of a plan.
type scan struct {
	table, access, index string
	rows                 float64
}

// pgScans lists the table accesses of a PostgreSQL EXPLAIN (FORMAT JSON).
func pgScans(t *testing.T, out string) []scan {
	t.Helper()
	var plans []struct{ Plan map[string]any }
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) == 0 {
		t.Fatalf("plan %s: %v", out, err)
	}
	var scans []scan
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if rel, ok := n["Relation Name"].(string); ok {
			idx, _ := n["Index Name"].(string)
			rows, _ := n["Plan Rows"].(float64)
			scans = append(scans, scan{rel, n["Node Type"].(string), idx, rows})
		} else if idx, ok := n["Index Name"].(string); ok { // Bitmap Index Scan: its heap scan names the table
			rows, _ := n["Plan Rows"].(float64)
			scans = append(scans, scan{"", n["Node Type"].(string), idx, rows})
		}
		children, _ := n["Plans"].([]any)
		for _, c := range children {
			walk(c.(map[string]any))
		}
	}
	walk(plans[0].Plan)
	return scans
}

// mysqlScans lists the table accesses of a MySQL or MariaDB EXPLAIN FORMAT=JSON.
func mysqlScans(t *testing.T, out string) []scan {
	t.Helper()
	var root any
	if err := json.Unmarshal([]byte(out), &root); err != nil {
		t.Fatalf("plan %s: %v", out, err)
	}
	var scans []scan
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if name, ok := v["table_name"].(string); ok {
				s := scan{table: name}
				s.access, _ = v["access_type"].(string)
				s.index, _ = v["key"].(string)
				for _, k := range []string{"rows", "rows_examined_per_scan"} {
					switch r := v[k].(type) {
					case float64:
						s.rows = r
					case string:
						fmt.Sscan(r, &s.rows)
					}
				}
				scans = append(scans, s)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(root)
	return scans
}

// checkPlan fails unless the plan reads the big tables through q's index
// and estimates no more than q.maxRows rows.
func checkPlan(t *testing.T, q hotQuery, dialect, sqlText string, scans []scan, out string) {
	t.Helper()
	if q.sweep && dialect == "postgres" {
		var top []struct{ Plan map[string]any }
		if err := json.Unmarshal([]byte(out), &top); err != nil || len(top) == 0 {
			t.Fatalf("plan %s: %v", out, err)
		}
		if rows, _ := top[0].Plan["Plan Rows"].(float64); rows > q.maxRows {
			t.Errorf("%s: returns %.0f rows; want at most %.0f:\n%s", q.name, rows, q.maxRows, sqlText)
		}
	}
	var used []string
	for _, s := range scans {
		full := s.access == "Seq Scan" || s.access == "ALL" || s.access == "index"
		if full && (s.table == "" || slices.Contains(bigTables, s.table)) {
			t.Errorf("%s: a full scan of %s (%s):\n%s\nscans: %+v", q.name, s.table, s.access, sqlText, scans)
		}
		if s.index != "" {
			used = append(used, s.index)
		}
		if s.rows > q.maxRows && !q.sweep {
			t.Errorf("%s: %s of %s estimates %.0f rows; want at most %.0f whatever the table sizes:\n%s\nscans: %+v",
				q.name, s.access, s.table, s.rows, q.maxRows, sqlText, scans)
		}
	}
	want := q.index
	if want == "" {
		want = map[string]string{"postgres": "_pkey", "mysql": "PRIMARY"}[dialect]
	}
	if !slices.ContainsFunc(used, func(u string) bool { return u == want || (q.index == "" && strings.HasSuffix(u, want)) }) {
		// MariaDB answers a primary-key lookup of a row it already read with no table access at all.
		if !(dialect == "mysql" && len(scans) == 0 && strings.Contains(out, "const")) {
			t.Errorf("%s: uses indexes %v; want %s:\n%s\nscans: %+v", q.name, used, want, sqlText, scans)
		}
	}
}

// explainDB returns a single connection to db's database that prepares
// nothing by itself, for EXPLAIN and PREPARE.
func explainDB(t *testing.T, db *gorm.DB) *sql.DB {
	t.Helper()
	var driver, dsn string
	switch d := db.Dialector.(type) {
	case *postgres.Dialector:
		driver, dsn = "pgx", d.Config.DSN
	case *mysql.Dialector:
		driver, dsn = "mysql", d.Config.DSN
	default:
		t.Fatalf("explain on %s", db.Dialector.Name())
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	t.Cleanup(func() { raw.Close() })
	return raw
}

// TestHotQueriesUseIndexes fills the hot tables (PostgreSQL, MySQL/MariaDB;
// skipped without them) and checks that every per-event and per-step query
// reads them through an index that matches it, estimating a bounded number
// of rows: the work of an event does not grow with the data. On PostgreSQL
// it checks the generic plan of the prepared statement too (the engine
// prepares its statements; after five executions PostgreSQL may switch to
// a plan that cannot see the parameters' values).
func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := openTestDB(t, dialect)
			now := time.Now().UTC().Truncate(time.Microsecond)
			fillBig(t, db, 1, 1, now)
			raw := explainDB(t, db)
			explain := map[string]string{"postgres": "EXPLAIN (FORMAT JSON) ", "mysql": "EXPLAIN FORMAT=JSON "}[dialect]
			for _, q := range hotQueries(1, now) {
				stmt := q.build(db.Session(&gorm.Session{DryRun: true})).Statement
				literal := db.Dialector.Explain(stmt.SQL.String(), stmt.Vars...)
				var out string
				if err := raw.QueryRow(explain + literal).Scan(&out); err != nil {
					t.Fatalf("%s: explain %s: %v", q.name, literal, err)
				}
				scans := pgScans
				if dialect == "mysql" {
					scans = mysqlScans
				}
				checkPlan(t, q, dialect, literal, scans(t, out), out)
				if dialect != "postgres" || q.sweep {
					continue
				}
				generic := genericPlan(t, raw, stmt.SQL.String(), stmt.Vars, db)
				checkPlan(t, q, dialect, "generic plan of "+stmt.SQL.String(), pgScans(t, generic), generic)
			}
		})
	}
}

// genericPlan returns PostgreSQL's generic plan of a prepared statement.
func genericPlan(t *testing.T, raw *sql.DB, text string, vars []any, db *gorm.DB) string {
	t.Helper()
	args := make([]string, len(vars))
	for i, v := range vars {
		args[i] = db.Dialector.Explain("$1", v)
	}
	for _, s := range []string{"SET plan_cache_mode = force_generic_plan", "PREPARE hot AS " + text} {
		if _, err := raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	defer raw.Exec("DEALLOCATE hot")
	exec := "EXPLAIN (FORMAT JSON) EXECUTE hot"
	if len(args) > 0 {
		exec += "(" + strings.Join(args, ", ") + ")"
	}
	var out string
	if err := raw.QueryRow(exec).Scan(&out); err != nil {
		t.Fatalf("%s: %v", exec, err)
	}
	return out
}

// TestFollowReadsFewRows routes follows on PostgreSQL (skipped without it)
// with big tables present and counts the rows PostgreSQL read for each:
// entries of every index scanned plus rows of every table scanned. A follow
// that enters a one-step journey reads a few dozen rows, whether the member
// is new or already mid-journey, however many other members there are.
func TestFollowReadsFewRows(t *testing.T) {
	t.Parallel()
	const maxRowsPerFollow = 50
	db := openTestDB(t, "postgres")
	h := pgHarness(t, db)
	h.publish(`
key: big
trigger: { event: wechat.scan }
steps:
  - { id: wait, wait: 24h }
`)
	var big model.Journey
	if err := h.db.Where("key = ?", "big").First(&big).Error; err != nil {
		t.Fatal(err)
	}
	fillBig(t, db, big.ID, big.CurrentVersionID, h.clk.Now())
	h.publish(`
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`)
	follow := func(openid string) int64 {
		t.Helper()
		ev := wechatEvent("wechat.subscribe", openid, nil)
		ev.Member.AppID = "wxbig"
		before := pgRowsRead(t, h.db)
		h.route(ev) // the ingestion, the routing and the step, as a worker does them
		return pgRowsRead(t, h.db) - before
	}
	follow("warm") // loads the journeys into the engine's caches
	for _, tc := range []struct{ name, openid string }{
		{"a new member", "newcomer"},
		{"a member mid-journey", "o10"},
	} {
		rows := follow(tc.openid)
		t.Logf("a follow by %s read %d rows", tc.name, rows)
		if rows > maxRowsPerFollow {
			t.Errorf("a follow by %s read %d rows; want at most %d whatever the table sizes", tc.name, rows, maxRowsPerFollow)
		}
	}
	if got := len(h.rec.messages()); got != 3 {
		t.Errorf("%d messages sent; want 3 (one per follow)", got)
	}
	// For comparison, the same follows with the indexes v3 replaced.
	if err := model.Migrations()[2].Rollback(db); err != nil {
		t.Fatalf("roll back %s: %v", model.Migrations()[2].ID, err)
	}
	if err := db.Exec("ANALYZE").Error; err != nil {
		t.Fatal(err)
	}
	t.Logf("without migration %s: a follow by a new member read %d rows, by a member mid-journey %d",
		model.Migrations()[2].ID, follow("newcomer2"), follow("o11"))
	var n int64
	if err := h.db.Model(&model.Enrollment{}).Where("member_id = ? AND status = ?", 10, model.EnrollmentActive).Count(&n).Error; err != nil || n != 1 {
		t.Errorf("member o10 has %d active enrollments (%v); want 1: still waiting in big (welcome completed)", n, err)
	}
}

// pgRowsRead is how many rows PostgreSQL has read from this database's
// tables so far: index entries of index scans plus rows of sequential
// scans. It flushes this backend's statistics first, so db must be the
// single connection the work ran on.
func pgRowsRead(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	for _, s := range []string{"SELECT pg_stat_force_next_flush()", "SELECT pg_stat_clear_snapshot()"} {
		if err := db.Exec(s).Error; err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	var n int64
	if err := db.Raw(`SELECT
		(SELECT COALESCE(SUM(seq_tup_read), 0) FROM pg_stat_user_tables) +
		(SELECT COALESCE(SUM(idx_tup_read), 0) FROM pg_stat_user_indexes)`).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// pgHarness is a harness whose engine and ingestor share one connection to
// db's PostgreSQL database, so the statistics of their work can be flushed
// and read on it.
func pgHarness(t *testing.T, db *gorm.DB) *harness {
	t.Helper()
	one, err := model.Open("postgres", db.Dialector.(*postgres.Dialector).Config.DSN)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := one.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1)
	t.Cleanup(func() { sqlDB.Close() })
	lw := &testLogWriter{t: t}
	t.Cleanup(func() { lw.done.Store(true) })
	logger := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	q, insp := newTestQueue(t)
	clk := clock.NewSimulated(time.Now().UTC().Truncate(time.Microsecond))
	h := &harness{t: t, ctx: t.Context(), db: one, rec: &sendRecorder{}, clk: clk, insp: insp,
		ing: journey.NewIngestor(journey.IngestorConfig{DB: one, Logger: logger, Clock: clk})}
	h.e = journey.New(journey.Config{DB: one, Queue: q, Inspector: insp, Senders: h.rec.sender(), Logger: logger,
		SweepGrace: time.Nanosecond, DBSlots: 1, BaseContext: t.Context(), Clock: clk})
	t.Cleanup(h.ing.Close)
	return h
}
