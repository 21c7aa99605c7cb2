package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// statsJourney is the journey bench --stats loads visits of: a welcome, a
// pause, an A/B split into two coupons, the goal a paid order.
const statsJourney = `key: bench-stats
name: 压测统计
trigger: { event: wechat.subscribe }
goal: { event: order.paid }
exit: [ { event: wechat.unsubscribe } ]
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: pause }
  - { id: pause, wait: 1h, next: vip }
  - id: vip
    split:
      - { weight: 50, next: coupon_a }
      - { weight: 50, next: coupon_b }
  - { id: coupon_a, send: { channel: wechat.template, template_id: A } }
  - { id: coupon_b, send: { channel: wechat.template, template_id: B } }
`

// statsRequests is how many times bench --stats asks for the statistics.
const statsRequests = 20

// checkStats refuses --stats values the statistics run cannot take.
func (o benchOpts) checkStats() error {
	switch {
	case o.stats < 0:
		return fmt.Errorf("--stats: want 0 (off) or more step visits, got %d", o.stats)
	case o.stats > 0 && o.target != "":
		return errors.New("--stats loads visits into the bench's own database: drop --target (and pass --database-url)")
	}
	return nil
}

// runStatsBench loads about n step visits of one journey directly into the
// database (--database-url, or a temporary SQLite file), spread over the
// last 30 days, then times GET /api/v1/journeys/bench-stats/stats over
// HTTP statsRequests times and reports p50 and p99.
func runStatsBench(ctx context.Context, o benchOpts, stdout io.Writer) error {
	dialect, dsn := "sqlite", ""
	desc := "a temporary SQLite file"
	if o.databaseURL != "" {
		did, err := prepareBenchStore(ctx, o.databaseURL, o.reset)
		if err != nil {
			return err
		}
		if dialect, dsn, err = config.ParseDatabaseURL(o.databaseURL); err != nil {
			return err
		}
		desc = fmt.Sprintf("%s (%s)", dialect, did)
	} else {
		dir, err := os.MkdirTemp("", "wejourney-bench-stats")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dsn = filepath.Join(dir, "stats.db")
	}
	db, err := model.Open(dialect, dsn)
	if err != nil {
		return err
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	}()
	db = db.WithContext(ctx)
	if err := model.Migrate(db); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wejourney bench --stats — %s, %d step visits of one journey, %s\n", desc, o.stats, time.Now().UTC().Format(time.RFC3339))
	start := time.Now()
	visits, enrollments, err := loadStatsVisits(db, o.stats)
	if err != nil {
		return fmt.Errorf("--stats: load: %w", err)
	}
	fmt.Fprintf(stdout, "loaded %d step visits of %d enrollments in %s\n", visits, enrollments, time.Since(start).Round(time.Millisecond))
	analyze := "ANALYZE"
	if dialect == "postgres" {
		analyze = "VACUUM ANALYZE" // what autovacuum does soon after such a load
	}
	if dialect != "mysql" {
		if err := db.Exec(analyze).Error; err != nil {
			return fmt.Errorf("--stats: %s: %w", analyze, err)
		}
	}

	key := "bench-stats-" + randomHex(8)
	if err := db.Create(&model.APIKey{Name: "bench stats", Hash: handler.HashAPIKey(key), Scope: model.ScopeAdmin, Prefix: key[:8]}).Error; err != nil {
		return err
	}
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db})
	defer ing.Close()
	admin := handler.NewAdmin(handler.AdminConfig{DB: db, Secret: []byte(randomHex(16))})
	defer admin.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler.New(handler.Config{DB: db, Ingestor: ing, Accounts: model.NewAccounts(db, nil), Admin: admin}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/api/v1/journeys/bench-stats/stats"
	var took []time.Duration
	var body []byte
	for range statsRequests {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		took = append(took, time.Since(t0))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
		}
	}
	fmt.Fprintf(stdout, "GET /api/v1/journeys/bench-stats/stats ×%d (last 30 days): p50 %s  p99 %s  max %s\n",
		statsRequests, pct(took, 50), pct(took, 99), pct(took, 100))
	fmt.Fprintf(stdout, "answer: %s\n", body)
	return nil
}

// loadStatsVisits creates the journey bench-stats and about n step visits
// of it, with their enrollments and deliveries, in batches, and returns
// how many visits and enrollments it created. Each enrollment, entered at
// a moment of the last 30 days, takes one of these paths: failed at hello
// (1 in 10), waiting in the pause (1 in 10), exited in the pause (1 in
// 10), reached the goal in the pause (1 in 10), or through the split and
// a coupon, where 1 in 4 reach the goal.
func loadStatsVisits(db *gorm.DB, n int) (visits, enrollments int, err error) {
	now := time.Now().UTC()
	j := model.Journey{Key: "bench-stats", Name: "压测统计", Status: model.JourneyActive, CreatedAt: now, UpdatedAt: now}
	if err := db.Where(&model.Journey{Key: j.Key}).FirstOrCreate(&j).Error; err != nil {
		return 0, 0, err
	}
	var last int
	db.Model(&model.JourneyVersion{}).Where("journey_id = ?", j.ID).Select("COALESCE(MAX(version), 0)").Scan(&last)
	v := model.JourneyVersion{JourneyID: j.ID, Version: last + 1, Source: statsJourney, Hash: randomHex(16), Origin: "bench", CreatedAt: now}
	if err := db.Create(&v).Error; err != nil {
		return 0, 0, err
	}
	if err := db.Model(&j).Update("current_version_id", v.ID).Error; err != nil {
		return 0, 0, err
	}
	const batch = 500 // enrollments a transaction
	for k := 0; visits < n; {
		err := db.Transaction(func(tx *gorm.DB) error {
			enrs := make([]*model.Enrollment, 0, batch)
			for i := 0; i < batch; i++ {
				at := now.Add(-time.Duration((k+i)%(30*24*60)) * time.Minute)
				status := model.EnrollmentCompleted
				switch (k + i) % 10 {
				case 0:
					status = model.EnrollmentFailed
				case 1:
					status = model.EnrollmentActive
				case 2:
					status = model.EnrollmentExited
				case 3:
					status = model.EnrollmentGoal
				default:
					if (k+i)%4 == 0 {
						status = model.EnrollmentGoal
					}
				}
				enrs = append(enrs, &model.Enrollment{JourneyID: j.ID, VersionID: v.ID, MemberID: int64(k + i + 1), Status: status,
					StepID: "hello", EnteredAt: at, EnteredDay: model.EntryDay(at), Event: map[string]any{"type": "wechat.subscribe"}})
			}
			if err := tx.Create(&enrs).Error; err != nil {
				return err
			}
			var vs []*model.StepVisit
			var ds []*model.Delivery
			for i, e := range enrs {
				at := e.EnteredAt
				visit := func(step, status, outcome string) *model.StepVisit {
					sv := &model.StepVisit{EnrollmentID: e.ID, Seq: 0, JourneyID: j.ID, VersionID: v.ID, StepID: step, MemberID: e.MemberID,
						Status: status, Outcome: outcome, DueAt: at, CreatedAt: at, EnteredDay: e.EnteredDay}
					vs = append(vs, sv)
					sv.Seq = len(vs)
					return sv
				}
				first := len(vs)
				switch (k + i) % 10 {
				case 0:
					visit("hello", model.VisitFailed, "failed")
				case 1:
					visit("hello", model.VisitDone, "sent")
					visit("pause", model.VisitWaiting, "")
				case 2:
					visit("hello", model.VisitDone, "sent")
					visit("pause", model.VisitCancelled, "exit:wechat.unsubscribe")
				case 3:
					visit("hello", model.VisitDone, "sent")
					visit("pause", model.VisitCancelled, "goal:order.paid")
				default:
					coupon := "coupon_a"
					if (k+i)%3 == 0 {
						coupon = "coupon_b"
					}
					visit("hello", model.VisitDone, "sent")
					visit("pause", model.VisitDone, "waited")
					arm := journey.ArmOutcome(coupon)
					if e.Status == model.EnrollmentGoal {
						arm = journey.GoalArmOutcome(coupon)
					}
					visit("vip", model.VisitDone, arm)
					visit(coupon, model.VisitDone, "sent")
				}
				for s, sv := range vs[first:] {
					sv.Seq = s + 1
				}
			}
			if err := tx.CreateInBatches(&vs, 1000).Error; err != nil {
				return err
			}
			for _, sv := range vs {
				if sv.StepID != "hello" && sv.StepID != "coupon_a" && sv.StepID != "coupon_b" {
					continue
				}
				ch, status := "wechat.text", model.DeliverySent
				if sv.StepID != "hello" {
					ch = "wechat.template"
				}
				if sv.Status == model.VisitFailed {
					status = model.DeliveryFailed
				}
				ds = append(ds, &model.Delivery{StepVisitID: sv.ID, Channel: ch, EnrollmentID: sv.EnrollmentID, JourneyID: j.ID,
					MemberID: sv.MemberID, Status: status, CreatedAt: sv.CreatedAt, EnteredDay: sv.EnteredDay, Category: model.CategoryMarketing})
			}
			if err := tx.CreateInBatches(&ds, 1000).Error; err != nil {
				return err
			}
			visits += len(vs)
			enrollments += len(enrs)
			return nil
		})
		if err != nil {
			return visits, enrollments, err
		}
		k += batch
	}
	if visits == 0 {
		return 0, 0, errors.New("no visits loaded")
	}
	return visits, enrollments, nil
}
