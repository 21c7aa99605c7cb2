package journey

import (
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"

	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/model"
)

// The sweeper's daily check stores the day's journey.enroll events and
// leaves their routing to route tasks on the marketing queue, so a large
// day does not hold up sweeping.
func TestSweeperQueuesScheduleEvents(t *testing.T) {
	t.Parallel()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		t.Cleanup(func() { sqlDB.Close() })
	}
	mr := miniredis.RunT(t)
	opt := asynq.RedisClientOpt{Addr: mr.Addr()}
	q, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { q.Close(); insp.Close() })
	clk := clock.NewSimulated(time.Date(2026, 3, 10, 9, 30, 0, 0, chinaTime))
	e := New(Config{DB: db, Queue: q, Inspector: insp, Clock: clk, BaseContext: t.Context(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c, err := Parse("b.yaml", []byte("key: b\ntrigger: { schedule: { attribute: birthday, at: \"09:00\", every: year } }\nsteps:\n  - { id: w, wait: 1h }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Publish(t.Context(), c, "test"); err != nil {
		t.Fatal(err)
	}
	for _, openid := range []string{"o1", "o2"} {
		if err := db.Create(&model.Member{AppID: "wx1", OpenID: openid, Attrs: map[string]any{"birthday": "1999-03-10"}}).Error; err != nil {
			t.Fatal(err)
		}
	}
	e.sweepSchedules(t.Context())
	tasks, err := insp.ListPendingTasks(QueueMarketing)
	if err != nil || len(tasks) != 1 || tasks[0].Type != TypeRouteEvents {
		t.Fatalf("marketing queue: %v, %v; want one route task", tasks, err)
	}
	var p routePayload
	if err := json.Unmarshal(tasks[0].Payload, &p); err != nil || len(p.IDs) != 2 {
		t.Errorf("route task payload %s: want the 2 events", tasks[0].Payload)
	}
	var unrouted, enrolled int64
	db.Model(&model.Event{}).Where("routed_at IS NULL").Count(&unrouted)
	db.Model(&model.Enrollment{}).Count(&enrolled)
	if unrouted != 2 || enrolled != 0 {
		t.Errorf("%d unrouted events, %d enrollments; want 2 and 0 until the task runs", unrouted, enrolled)
	}
}
