package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/schollz/progressbar/v3"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// birthdaysJourneyKey is the schedule journey `bench --birthdays` runs.
const birthdaysJourneyKey = "bench-birthday"

// birthdaysJourney is that journey; %s is its time of day, a minute ago.
const birthdaysJourney = `key: bench-birthday
name: 压测生日
trigger: { schedule: { attribute: birthday, at: "%s", every: year } }
steps:
  - id: gift
    update: { add_tags: [birthday_gift] }
`

// birthdaysBatch is how many members one INSERT of the birthdays bench
// creates (6 parameters a row, within SQLite's 32,766).
const birthdaysBatch = 4000

// runBirthdaysBench loads o.birthdays members with random birthdays
// directly into the database, publishes a schedule journey due a minute ago
// (China time), and times Engine.RunSchedules until today's birthday
// members are all enrolled.
func runBirthdaysBench(ctx context.Context, o benchOpts, stdout, stderr io.Writer) error {
	st, err := openScenarioStore(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	db, dialect, desc := st.db, st.dialect, st.desc
	e := st.engine(ctx, nil)

	now := time.Now()
	local := now.In(model.ChinaTime)
	fmt.Fprintf(stdout, "wejourney bench --birthdays — %s %s, %d CPUs (GOMAXPROCS %d), %s (China time %s)\n",
		dialect, desc, runtime.NumCPU(), runtime.GOMAXPROCS(0), now.UTC().Format(time.RFC3339), local.Format("2006-01-02 15:04"))
	today, took, err := loadBirthdays(ctx, db, o.birthdays, local, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loaded: %d members with random birthdays in %s (%.0f members/s); %d of them born on %s\n",
		o.birthdays, took.Round(10*time.Millisecond), float64(o.birthdays)/max(took.Seconds(), 1e-9), today, local.Format("01-02"))
	if ok, err := analyzeBenchTables(ctx, db); err != nil {
		return err
	} else if ok {
		fmt.Fprintln(stdout, "  then VACUUM (ANALYZE) of wejourney's tables")
	}

	at := local.Add(-time.Minute)
	if at.Day() != local.Day() {
		at = time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, model.ChinaTime)
	}
	// A run earlier today on this database claimed the day: forget it
	// (--reset keeps the settings table).
	src := fmt.Sprintf(birthdaysJourney, at.Format("15:04"))
	j, err := publishBenchJourney(ctx, e, db, "schedule:", birthdaysJourneyKey, "bench-birthday.yaml", src)
	if err != nil {
		return err
	}

	start := time.Now()
	entered, runs := 0, 0
	var enrolled int64
	for {
		n, err := e.RunSchedules(ctx)
		runs++
		entered += n
		if err != nil {
			return fmt.Errorf("RunSchedules: %w", err)
		}
		if err := db.Model(&model.Enrollment{}).Where("journey_id = ?", j.ID).Count(&enrolled).Error; err != nil {
			return err
		}
		// RunSchedules routes what it stored before it returns: a second
		// call that enters nobody means nobody else will.
		if enrolled >= int64(today) || (n == 0 && runs > 1) || time.Since(start) > 5*time.Minute {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	took = time.Since(start)
	var completed int64
	db.Model(&model.Enrollment{}).Where("journey_id = ? AND status = ?", j.ID, model.EnrollmentCompleted).Count(&completed)
	// Another process (a second engine on the same database) finds the day
	// claimed.
	e2 := st.engine(ctx, nil)
	again := time.Now()
	n, err := e2.RunSchedules(ctx)
	if err != nil {
		return fmt.Errorf("RunSchedules again: %w", err)
	}
	fmt.Fprintf(stdout, "schedule %s (every year, at %s China time): %d RunSchedules call(s)\n", birthdaysJourneyKey, at.Format("15:04"), runs)
	fmt.Fprintf(stdout, "  members scanned    %d\n", o.birthdays)
	fmt.Fprintf(stdout, "  entered            %d   (want %d; enrollments %d, completed %d)\n", entered, today, enrolled, completed)
	fmt.Fprintf(stdout, "  seconds            %.2f   (claim, one query over members.attrs, %d journey.enroll events stored, routed and their update step run)\n", took.Seconds(), entered)
	fmt.Fprintf(stdout, "  run again          %d entered in %s (by a second engine: the day is claimed)\n", n, time.Since(again).Round(time.Millisecond))
	if enrolled != int64(today) {
		return fmt.Errorf("birthdays: %d enrolled; want %d", enrolled, today)
	}
	return nil
}

// loadBirthdays inserts n members with their openid identity and a random
// birthday ("2006-01-02", years 1960 to 2005, on a day of a non-leap year),
// in batches, and returns how many were born on local's month and day.
func loadBirthdays(ctx context.Context, db *gorm.DB, n int, local time.Time, progress io.Writer) (int, time.Duration, error) {
	start := time.Now()
	db = db.WithContext(ctx)
	prefix := "obd_" + randomHex(4) + "_"
	appID := "wxbench000000001"
	md := local.Format("01-02")
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 1))
	ts := time.Now().UTC()
	bar := progressbar.NewOptions(n, progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("loading members with birthdays"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("members"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
	today := 0
	for lo := 0; lo < n; lo += birthdaysBatch {
		hi := min(lo+birthdaysBatch, n)
		var sb strings.Builder
		sb.WriteString("INSERT INTO members (app_id, open_id, attrs, subscribed, created_at, updated_at) VALUES ")
		args := make([]any, 0, 6*(hi-lo))
		for i := lo; i < hi; i++ {
			if i > lo {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?, ?, ?)")
			day := time.Date(1960+rng.IntN(46), 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(365))
			if day.Month() == time.February && day.Day() == 29 {
				day = day.AddDate(0, 0, 1)
			}
			b := day.Format(time.DateOnly)
			if b[5:] == md {
				today++
			}
			args = append(args, appID, fmt.Sprintf("%s%d", prefix, i), `{"birthday":"`+b+`"}`, true, ts, ts)
		}
		if err := insertBenchMembers(db, sb.String(), args); err != nil {
			return 0, 0, fmt.Errorf("--birthdays: batch from %d: %w", lo, err)
		}
		bar.Add(hi - lo)
	}
	bar.Finish()
	return today, time.Since(start), nil
}

// scenarioStore is the database and queue a scenario run (--birthdays,
// --segments) drives journey engines on, in the bench's process.
type scenarioStore struct {
	db      *gorm.DB
	dialect string
	// desc says which database it is, for the report's first line.
	desc    string
	queue   *asynq.Client
	logger  *slog.Logger
	closers []func()
}

// openScenarioStore opens --database-url (emptied first with --reset) or a
// temporary SQLite file, migrated, and --redis-url (flushed with --reset)
// or an in-process Redis.
func openScenarioStore(ctx context.Context, o benchOpts, stderr io.Writer) (_ *scenarioStore, err error) {
	st := &scenarioStore{}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	dbURL := o.databaseURL
	if dbURL == "" {
		dir, err := os.MkdirTemp("", "wejourney-bench")
		if err != nil {
			return nil, err
		}
		st.closers = append(st.closers, func() { os.RemoveAll(dir) })
		dbURL = "sqlite:" + filepath.Join(dir, "bench.db")
		st.desc = "a temporary SQLite file"
	} else {
		did, err := prepareBenchStore(ctx, dbURL, o.reset)
		if err != nil {
			return nil, err
		}
		st.desc = fmt.Sprintf("%s (%s)", redact.String(dbURL), did)
	}
	dialect, dsn, err := config.ParseDatabaseURL(dbURL)
	if err != nil {
		return nil, fmt.Errorf("--database-url: %w", err)
	}
	st.dialect = dialect
	if st.db, err = model.Open(dialect, dsn); err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() {
		if s, err := st.db.DB(); err == nil {
			s.Close()
		}
	})
	if err := model.Migrate(st.db); err != nil {
		return nil, err
	}
	var redisOpt asynq.RedisConnOpt
	if o.redisURL != "" {
		if o.reset {
			if err := flushBenchRedis(ctx, o.redisURL); err != nil {
				return nil, err
			}
		}
		if redisOpt, err = parseRedisURL(o.redisURL); err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
	} else {
		mr, err := miniredis.Run()
		if err != nil {
			return nil, err
		}
		st.closers = append(st.closers, mr.Close)
		redisOpt = asynq.RedisClientOpt{Addr: mr.Addr()}
	}
	st.queue = asynq.NewClient(redisOpt)
	st.closers = append(st.closers, func() { st.queue.Close() })
	st.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return st, nil
}

// engine returns a journey engine on the store telling time by clk (nil:
// the real clock).
func (st *scenarioStore) engine(ctx context.Context, clk clock.Clock) *journey.Engine {
	slots := 0
	if st.dialect == "sqlite" {
		slots = 1
	}
	return journey.New(journey.Config{DB: st.db, Queue: st.queue, Logger: st.logger, DBSlots: slots, BaseContext: ctx, Clock: clk})
}

// Close closes what openScenarioStore opened, last first.
func (st *scenarioStore) Close() {
	for i := len(st.closers) - 1; i >= 0; i-- {
		st.closers[i]()
	}
}

// insertBenchMembers runs one batch's INSERT of members (insert, args) and
// gives each new member its openid identity, in one transaction.
func insertBenchMembers(db *gorm.DB, insert string, args []any) error {
	concat := "app_id || '/' || open_id"
	if db.Dialector.Name() == "mysql" {
		concat = "CONCAT(app_id, '/', open_id)"
	}
	return db.Transaction(func(tx *gorm.DB) error {
		var floor int64
		if err := tx.Table("members").Select("COALESCE(MAX(id), 0)").Scan(&floor).Error; err != nil {
			return err
		}
		if err := tx.Exec(insert, args...).Error; err != nil {
			return fmt.Errorf("members: %w", err)
		}
		if err := tx.Exec("INSERT INTO member_identities (kind, value, member_id) SELECT ?, "+concat+", id FROM members WHERE id > ?",
			model.IdentityOpenID, floor).Error; err != nil {
			return fmt.Errorf("member identities: %w", err)
		}
		return nil
	})
}

// publishBenchJourney forgets the trigger's last claim (the settings row
// claim+key, so a rerun evaluates again), publishes src as a new version
// and returns the journey.
func publishBenchJourney(ctx context.Context, e *journey.Engine, db *gorm.DB, claim, key, file, src string) (model.Journey, error) {
	var j model.Journey
	if err := db.Where(&model.Setting{Key: claim + key}).Delete(&model.Setting{}).Error; err != nil {
		return j, err
	}
	c, err := e.Parse(file, []byte(src))
	if err != nil {
		return j, err
	}
	if _, err := e.Publish(ctx, c, "bench"); err != nil {
		return j, err
	}
	err = db.Where(&model.Journey{Key: key}).First(&j).Error
	return j, err
}
