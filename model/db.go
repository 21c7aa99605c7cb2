package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/go-gormigrate/gormigrate/v2"
	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// Open connects to the database named by dialect ("sqlite", "postgres",
// "mysql") and dsn, as config.ParseDatabaseURL returns them. SQLite files get
// their directory created, WAL journaling, and a single connection: SQLite
// has one writer, and one connection keeps writers from failing with
// SQLITE_BUSY under load.
func Open(dialect, dsn string) (*gorm.DB, error) {
	var d gorm.Dialector
	switch dialect {
	case "sqlite":
		if dsn != ":memory:" {
			if err := os.MkdirAll(filepath.Dir(dsn), 0o755); err != nil {
				return nil, fmt.Errorf("model: %w", err)
			}
		}
		d = sqlite.Open(dsn + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate")
	case "postgres":
		d = postgres.Open(withPlannerSettings(dsn))
	case "mysql":
		d = mysql.Open(dsn)
	default:
		return nil, fmt.Errorf("model: unknown dialect %q", dialect)
	}
	db, err := gorm.Open(d, &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
		TranslateError:         true,
		// gorm's prepared statements are re-prepared on the transaction's
		// connection and closed at its commit: three round trips for every
		// statement in a transaction. pgx caches prepared statements per
		// connection by itself, so PostgreSQL goes without them. SQLite
		// goes without them too: on its one connection, gorm's statement
		// cache deadlocks — a statement being prepared outside a
		// transaction waits for the connection, while the transaction
		// holding it waits for that statement to be prepared (seen as a
		// server that stopped answering under a burst).
		PrepareStmt: dialect == "mysql",
	})
	if err != nil {
		return nil, fmt.Errorf("model: open %s: %w", dialect, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if dialect == "sqlite" {
		sqlDB.SetMaxOpenConns(1)
	} else {
		sqlDB.SetMaxOpenConns(32)
		sqlDB.SetMaxIdleConns(32)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	return db, nil
}

// plannerSettings are the PostgreSQL settings wejourney's connections run
// with unless the database URL sets them (name=value pairs):
//
//   - random_page_cost 1.1, the usual setting for data on SSDs or in memory
//     (PostgreSQL's default 4 models spinning disks): with 4, a batch's
//     lookup of 64 identities by key is planned as a scan of the whole
//     table until it holds some 20,000 rows.
//   - plan_cache_mode force_custom_plan: pgx prepares each statement once
//     per connection, and PostgreSQL would soon reuse one generic plan for
//     it, chosen while the table was small (a sequential scan of a
//     deliveries table that later holds millions of rows) and kept until
//     the next ANALYZE. Planning each execution with its values and the
//     table's current size costs a few microseconds.
var plannerSettings = [...][2]string{{"random_page_cost", "1.1"}, {"plan_cache_mode", "force_custom_plan"}}

// withPlannerSettings adds plannerSettings to a PostgreSQL URL or key=value
// DSN that does not set them (pgx passes unknown parameters on as settings).
func withPlannerSettings(dsn string) string {
	for _, kv := range plannerSettings {
		param := kv[0] + "=" + kv[1]
		switch {
		case strings.Contains(dsn, kv[0]+"="):
		case strings.Contains(dsn, "://") && strings.Contains(dsn, "?"):
			dsn += "&" + param
		case strings.Contains(dsn, "://"):
			dsn += "?" + param
		default:
			dsn += " " + param
		}
	}
	return dsn
}

// Migrate brings the schema to the newest version, recording each applied
// version in the schema_migrations table.
func Migrate(db *gorm.DB) error {
	mdb, closeDB, err := migrationDB(db)
	if err != nil {
		return err
	}
	defer closeDB()
	m := gormigrate.New(mdb, migrateOptions(), Migrations())
	if err := m.Migrate(); err != nil {
		return fmt.Errorf("model: migrate: %w", err)
	}
	return nil
}

// migrationDB returns the handle schema changes run on. On PostgreSQL that
// is a connection of its own that caches no statements: gorm probes a
// table's columns with `SELECT * FROM t LIMIT 1`, and a probe prepared on a
// pooled connection before an ALTER TABLE fails after it ("cached plan
// must not change result type"), so an upgrade that alters several columns
// of one table failed whenever the pool handed the probe the same
// connection twice. Other databases use db itself.
func migrationDB(db *gorm.DB) (*gorm.DB, func(), error) {
	pd, ok := db.Dialector.(*postgres.Dialector)
	if !ok || pd.Config == nil || pd.Config.DSN == "" {
		return db, func() {}, nil
	}
	mdb, err := gorm.Open(postgres.New(postgres.Config{DSN: pd.Config.DSN, PreferSimpleProtocol: true}), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
		TranslateError:         true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("model: open postgres for migrations: %w", err)
	}
	sqlDB, err := mdb.DB()
	if err != nil {
		return nil, nil, fmt.Errorf("model: %w", err)
	}
	sqlDB.SetMaxOpenConns(1)
	return mdb.WithContext(db.Statement.Context), func() { sqlDB.Close() }, nil
}

func migrateOptions() *gormigrate.Options {
	return &gormigrate.Options{TableName: "schema_migrations", IDColumnName: "id", IDColumnSize: 64, UseTransaction: false}
}

// ErrNotMigrated is returned by CheckMigrated when the schema is behind.
var ErrNotMigrated = errors.New("model: the database schema is not up to date; run `wejourney migrate`")

// CheckMigrated reports whether every migration has been applied.
func CheckMigrated(db *gorm.DB) error {
	var applied []string
	if err := db.Table("schema_migrations").Pluck("id", &applied).Error; err != nil {
		return fmt.Errorf("%w (%v)", ErrNotMigrated, err)
	}
	for _, m := range Migrations() {
		if !slices.Contains(applied, m.ID) {
			return fmt.Errorf("%w: missing %s", ErrNotMigrated, m.ID)
		}
	}
	return nil
}

// InsertIgnore makes the next Create skip rows that collide with a unique
// key, with RowsAffected counting only the rows inserted, on every dialect:
// MySQL's INSERT IGNORE (gorm's ON CONFLICT DO NOTHING there becomes ON
// DUPLICATE KEY UPDATE, whose affected-row count MariaDB reports as 1),
// ON CONFLICT DO NOTHING elsewhere.
func InsertIgnore(db *gorm.DB) *gorm.DB {
	if db.Dialector.Name() == "mysql" {
		return db.Clauses(clause.Insert{Modifier: "IGNORE"})
	}
	return db.Clauses(clause.OnConflict{DoNothing: true})
}

// Retryable reports whether err is a transaction that lost a lock conflict
// and may simply be run again: a deadlock or a serialization failure
// (PostgreSQL 40P01, 40001; MySQL and MariaDB 1213, and 1205 for a lock wait
// that timed out).
func Retryable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40P01" || pg.Code == "40001"
	}
	var my *mysqldriver.MySQLError
	if errors.As(err, &my) {
		return my.Number == 1213 || my.Number == 1205
	}
	return false
}
