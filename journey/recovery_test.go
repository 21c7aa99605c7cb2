package journey_test

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// quietAsynq drops asynq's own log lines (every failed try is one).
type quietAsynq struct{}

func (quietAsynq) Debug(...any) {}
func (quietAsynq) Info(...any)  {}
func (quietAsynq) Warn(...any)  {}
func (quietAsynq) Error(...any) {}
func (quietAsynq) Fatal(...any) {}

// outage makes every statement on db fail while it is down, as a database
// that refuses connections does.
type outage struct{ down atomic.Bool }

func newOutage(t *testing.T, db *gorm.DB) *outage {
	t.Helper()
	o := &outage{}
	fail := func(tx *gorm.DB) {
		if o.down.Load() {
			tx.AddError(errors.New("test: the database is down"))
		}
	}
	cb := db.Callback()
	for name, err := range map[string]error{
		"query":  cb.Query().Before("gorm:query").Register("test:outage", fail),
		"create": cb.Create().Before("gorm:create").Register("test:outage", fail),
		"update": cb.Update().Before("gorm:update").Register("test:outage", fail),
		"row":    cb.Row().Before("gorm:row").Register("test:outage", fail),
		"raw":    cb.Raw().Before("gorm:raw").Register("test:outage", fail),
	} {
		if err != nil {
			t.Fatalf("register %s callback: %v", name, err)
		}
	}
	return o
}

// testLogger sends a log to the test's log, shown on failure.
func testLogger(t *testing.T) *slog.Logger {
	lw := &testLogWriter{t: t}
	t.Cleanup(func() { lw.done.Store(true) })
	return slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// queued is an engine on the harness's database with a real asynq queue
// (an in-process Redis) and a worker running its tasks.
type queued struct {
	e    *journey.Engine
	insp *asynq.Inspector
}

func newQueued(t *testing.T, h *harness, retry asynq.RetryDelayFunc, forwardEvery time.Duration) *queued {
	t.Helper()
	mr := miniredis.RunT(t)
	opt := asynq.RedisClientOpt{Addr: mr.Addr()}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })
	e := journey.New(journey.Config{DB: h.db, Queue: client, Inspector: insp, Senders: h.rec.sender(),
		Logger: testLogger(t), SweepGrace: time.Millisecond, DBSlots: 1, BaseContext: t.Context()})
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency:              4,
		Queues:                   journey.Queues(),
		StrictPriority:           true,
		TaskCheckInterval:        20 * time.Millisecond,
		DelayedTaskCheckInterval: forwardEvery,
		RetryDelayFunc:           retry,
		Logger:                   quietAsynq{},
		LogLevel:                 asynq.FatalLevel,
		ShutdownTimeout:          time.Second,
	})
	mux := asynq.NewServeMux()
	e.Register(mux)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return &queued{e: e, insp: insp}
}

// TestWaitRunsOnTimeAfterOutage: a wait's step task fails while the
// database is down and sits in asynq's retry set (or its archive). Once
// the database is back, the wait ends within seconds, not when asynq's
// default retry delay (15 s and more) would have run it.
func TestWaitRunsOnTimeAfterOutage(t *testing.T) {
	t.Parallel()
	const src = `
key: wait
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1s, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`
	cases := []struct {
		name         string
		retry        asynq.RetryDelayFunc
		forwardEvery time.Duration // asynq's DelayedTaskCheckInterval
		sweep        bool          // run the sweeper once the database is back
		wantState    asynq.TaskState
	}{
		// The worker's retry delay alone (no sweep) is short enough.
		{"short retry delay", journey.RetryDelay, time.Second, false, asynq.TaskStateRetry},
		// A task waiting out a long retry delay is run by the sweeper.
		{"sweeper runs a retrying task now", func(int, error, *asynq.Task) time.Duration { return time.Hour }, time.Second, true, asynq.TaskStateRetry},
		// A task whose retries ran out during the outage is run again.
		{"sweeper runs an archived task", func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond }, 50 * time.Millisecond, true, asynq.TaskStateArchived},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.publish(src)
			q := newQueued(t, h, tc.retry, tc.forwardEvery)
			db := newOutage(t, h.db)
			id := h.ingest(wechatEvent("wechat.subscribe", "o1", nil))
			if err := q.e.Route(h.ctx, id); err != nil {
				t.Fatal(err)
			}
			pause := h.visitOf("pause")
			db.down.Store(true)
			taskID := journey.StepTaskID(pause.ID, pause.DueAt)
			var info *asynq.TaskInfo
			deadline := time.Now().Add(15 * time.Second)
			for {
				var err error
				info, err = q.insp.GetTaskInfo(journey.QueueReply, taskID)
				if err == nil && info.State == tc.wantState {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the wait's task never reached state %v during the outage: %+v, %v", tc.wantState, info, err)
				}
				time.Sleep(20 * time.Millisecond) // polling asynq's state
			}
			if tc.wantState == asynq.TaskStateRetry && tc.sweep && time.Until(info.NextProcessAt) < 30*time.Minute {
				t.Fatalf("the task retries at %v; the case needs a far retry", info.NextProcessAt)
			}
			db.down.Store(false)
			up := time.Now()
			if tc.sweep {
				// The sweeper as it runs in production, every so often
				// (asynq may have run the task up to a second before its
				// due time, so one sweep right now may find nothing overdue).
				go q.e.RunSweeper(h.ctx, 200*time.Millisecond)
			}
			for len(h.rec.messages()) == 0 {
				if time.Since(up) > 10*time.Second {
					t.Fatalf("no message 10 s after the database came back; task %s was %v, next try at %v", taskID, info.State, info.NextProcessAt)
				}
				time.Sleep(20 * time.Millisecond) // polling for the send
			}
			if took := time.Since(up); took > 5*time.Second {
				t.Errorf("the wait ended %v after the database came back; want within 5 s", took.Round(time.Millisecond))
			}
			if got := h.visitOf("pause").Status; got != model.VisitDone {
				t.Errorf("wait visit is %q; want done", got)
			}
			if n := len(h.rec.messages()); n != 1 {
				t.Errorf("%d messages sent; want 1", n)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	for _, typ := range []string{journey.TypeRunStep, journey.TypeRouteEvents} {
		for n, w := range want {
			if got := journey.RetryDelay(n, errors.New("down"), asynq.NewTask(typ, nil)); got != w {
				t.Errorf("RetryDelay(%d) of %s = %v; want %v", n, typ, got, w)
			}
		}
		if got := journey.RetryDelay(30, errors.New("down"), asynq.NewTask(typ, nil)); got != 8*time.Second {
			t.Errorf("RetryDelay(30) of %s = %v; want the 8 s cap", typ, got)
		}
	}
	if got := journey.RetryDelay(0, errors.New("x"), asynq.NewTask("other:task", nil)); got < 15*time.Second {
		t.Errorf("RetryDelay of another task type = %v; want asynq's default (15 s or more)", got)
	}
}
