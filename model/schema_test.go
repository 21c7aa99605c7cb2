package model

import (
	"database/sql"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite model/testdata/v1_*.txt from the current first migration")

// testDB opens a fresh database of the dialect: SQLite in a temporary file,
// or a new database on the server WEJOURNEY_TEST_DATABASE_URL (postgres://)
// or WEJOURNEY_TEST_MYSQL_URL (mysql://) names; the test skips when unset.
func testDB(t *testing.T, dialect string) *gorm.DB {
	t.Helper()
	if dialect == "sqlite" {
		db, err := Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeDB(db) })
		return db
	}
	env := map[string]string{"postgres": "WEJOURNEY_TEST_DATABASE_URL", "mysql": "WEJOURNEY_TEST_MYSQL_URL"}[dialect]
	base := os.Getenv(env)
	if base == "" && dialect == "mysql" && strings.HasPrefix(os.Getenv("WEJOURNEY_TEST_DATABASE_URL"), "mysql://") {
		base = os.Getenv("WEJOURNEY_TEST_DATABASE_URL")
	}
	if !strings.HasPrefix(base, map[string]string{"postgres": "postgres", "mysql": "mysql://"}[dialect]) {
		t.Skipf("%s: set %s to a %s server", dialect, env, dialect)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("wj_schema_%d", time.Now().UnixNano())
	var driver, adminDSN, dsn, drop string
	if dialect == "postgres" {
		driver, adminDSN, drop = "pgx", base, " WITH (FORCE)"
		u.Path = "/" + name
		dsn = u.String()
	} else {
		driver = "mysql"
		adminDSN = fmt.Sprintf("%s@tcp(%s)%s?parseTime=true", u.User.String(), u.Host, u.Path)
		dsn = fmt.Sprintf("%s@tcp(%s)/%s?parseTime=true&charset=utf8mb4&loc=UTC", u.User.String(), u.Host, name)
	}
	admin, err := sql.Open(driver, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	admin.Close()
	db, err := Open(dialect, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		closeDB(db)
		if admin, err := sql.Open(driver, adminDSN); err == nil {
			admin.Exec("DROP DATABASE IF EXISTS " + name + drop)
			admin.Close()
		}
	})
	return db
}

func closeDB(db *gorm.DB) {
	if s, err := db.DB(); err == nil {
		s.Close()
	}
}

var schemaTables = []string{"events", "members", "member_identities", "journeys", "journey_versions",
	"enrollments", "step_visits", "deliveries", "accounts", "admin_users", "api_keys", "settings"}

// describeSchema lists every table's columns (name, type, nullability,
// default) and indexes (name, columns, uniqueness), sorted, one per line.
func describeSchema(t *testing.T, db *gorm.DB, tables []string) string {
	t.Helper()
	m := db.Migrator()
	var lines []string
	for _, table := range tables {
		if !m.HasTable(table) {
			lines = append(lines, table+": missing")
			continue
		}
		cols, err := m.ColumnTypes(table)
		if err != nil {
			t.Fatalf("columns of %s: %v", table, err)
		}
		for _, c := range cols {
			null, _ := c.Nullable()
			def, _ := c.DefaultValue()
			if strings.Contains(def, "nextval(") {
				def = "serial"
			}
			typ := strings.ToLower(c.DatabaseTypeName())
			if n, ok := c.Length(); ok && n > 0 && n < 1<<16 {
				typ += fmt.Sprintf("(%d)", n)
			}
			lines = append(lines, fmt.Sprintf("%s.%s %s null=%v default=%q", table, c.Name(), typ, null, def))
		}
		idx, err := m.GetIndexes(table)
		if err != nil {
			t.Fatalf("indexes of %s: %v", table, err)
		}
		for _, i := range idx {
			unique, _ := i.Unique()
			pk, _ := i.PrimaryKey()
			if pk || i.Name() == "PRIMARY" || strings.HasSuffix(i.Name(), "_pkey") || strings.HasPrefix(i.Name(), "sqlite_autoindex") {
				continue
			}
			cols := strings.Join(i.Columns(), ",")
			if db.Dialector.Name() == "postgres" { // gorm lists them in table order, not index order
				cols = pgIndexColumns(t, db, i.Name())
			}
			line := fmt.Sprintf("%s index %s (%s) unique=%v", table, i.Name(), cols, unique)
			if where := indexPredicate(t, db, i.Name()); where != "" {
				line += " where " + where
			}
			lines = append(lines, line)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

// indexPredicate returns a partial index's WHERE clause, normalized (lower
// case, without quotes, parentheses, casts or repeated spaces), or "".
// MySQL has no partial indexes.
func indexPredicate(t *testing.T, db *gorm.DB, name string) string {
	t.Helper()
	var def string
	switch db.Dialector.Name() {
	case "sqlite":
		if err := db.Raw("SELECT COALESCE(sql, '') FROM sqlite_master WHERE type = 'index' AND name = ?", name).Scan(&def).Error; err != nil {
			t.Fatalf("definition of index %s: %v", name, err)
		}
	case "postgres":
		if err := db.Raw("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?", name).Scan(&def).Error; err != nil {
			t.Fatalf("definition of index %s: %v", name, err)
		}
	default:
		return ""
	}
	_, where, ok := strings.Cut(strings.ToLower(def), " where ")
	if !ok {
		return ""
	}
	where = strings.NewReplacer(`"`, "", "`", "", "(", "", ")", "", "::text", "", "::character varying", "").Replace(where)
	return strings.Join(strings.Fields(where), " ")
}

// pgIndexColumns returns a PostgreSQL index's columns in index order.
func pgIndexColumns(t *testing.T, db *gorm.DB, name string) string {
	t.Helper()
	var def string
	if err := db.Raw("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?", name).Scan(&def).Error; err != nil {
		t.Fatalf("definition of index %s: %v", name, err)
	}
	_, cols, _ := strings.Cut(def, " USING btree (")
	cols, _, _ = strings.Cut(cols, ")")
	return strings.ReplaceAll(strings.ReplaceAll(cols, `"`, ""), " ", "")
}

// TestFirstMigrationIsFrozen checks that v1 creates exactly the schema that
// shipped (recorded in testdata from the landed v1), whatever the live model
// structs have become since.
func TestFirstMigrationIsFrozen(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			db := testDB(t, dialect)
			m := gormigrate.New(db, migrateOptions(), Migrations())
			if err := m.MigrateTo(Migrations()[0].ID); err != nil {
				t.Fatal(err)
			}
			got := describeSchema(t, db, schemaTables)
			file := filepath.Join("testdata", "v1_"+dialect+".txt")
			if *updateGolden {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("v1 on %s creates a schema other than the one that shipped (%s):\n got:\n%s\nwant:\n%s", dialect, file, got, want)
			}
		})
	}
}

// liveTables are the live model structs, for comparing with the migrations.
func liveTables() []any {
	return []any{&Event{}, &Member{}, &MemberIdentity{}, &Journey{}, &JourneyVersion{},
		&Enrollment{}, &StepVisit{}, &Delivery{}, &Account{}, &AdminUser{}, &APIKey{}, &Setting{}, &Session{},
		&QRCode{}, &ContactWay{}, &FollowerSync{}, &SubscribeGrant{}, &SegmentMember{}, &AuditEntry{}, &JourneyDraft{}}
}

// TestMigrationsUpgradeAndMatchModel migrates a fresh database, upgrades one
// created by v1 (with rows in it), and checks both end at the same schema,
// the one the live model structs describe.
func TestMigrationsUpgradeAndMatchModel(t *testing.T) {
	tables := append(slices.Clone(schemaTables), "sessions", "qr_codes", "contact_ways", "follower_syncs", "subscribe_grants", "segment_members", "audit_log", "journey_drafts")
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			fresh := testDB(t, dialect)
			if err := Migrate(fresh); err != nil {
				t.Fatal(err)
			}
			old := testDB(t, dialect)
			m := gormigrate.New(old, migrateOptions(), Migrations())
			if err := m.MigrateTo(Migrations()[0].ID); err != nil {
				t.Fatal(err)
			}
			if err := old.Exec("INSERT INTO api_keys (name, hash, created_at) VALUES ('old', 'h1', ?)", time.Now().UTC()).Error; err != nil {
				t.Fatal(err)
			}
			if err := old.Exec("INSERT INTO accounts (kind, app_id, app_secret) VALUES ('wechat_oa', 'wxold', 'plain')").Error; err != nil {
				t.Fatal(err)
			}
			if err := Migrate(old); err != nil {
				t.Fatalf("upgrade from v1: %v", err)
			}
			if err := CheckMigrated(old); err != nil {
				t.Fatal(err)
			}
			var k APIKey
			if err := old.Where("name = ?", "old").First(&k).Error; err != nil || k.Scope != ScopeEvents {
				t.Errorf("a key from v1 after the upgrade: scope %q, err %v; want scope events", k.Scope, err)
			}
			model := testDB(t, dialect)
			if err := model.Migrator().CreateTable(liveTables()...); err != nil {
				t.Fatal(err)
			}
			want := describeSchema(t, model, tables)
			if got := describeSchema(t, fresh, tables); got != want {
				t.Errorf("fresh migration differs from the model structs:\n got:\n%s\nwant:\n%s", got, want)
			}
			if got := describeSchema(t, old, tables); got != want {
				t.Errorf("upgraded v1 differs from the model structs:\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// An upgrade that alters several columns of one table succeeds however the
// pool hands out connections: on PostgreSQL a column probe prepared on one
// pooled connection, then run there again after another connection altered
// the table, failed with "cached plan must not change result type".
func TestMigrateWithAWarmPool(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			for range 5 {
				db := testDB(t, dialect)
				var wg sync.WaitGroup
				for range 8 { // open several connections
					wg.Add(1)
					go func() {
						defer wg.Done()
						db.Exec("SELECT 1")
					}()
				}
				wg.Wait()
				if err := Migrate(db); err != nil {
					t.Fatalf("migrate: %v", err)
				}
			}
		})
	}
}
