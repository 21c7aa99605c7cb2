package journey_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// openids returns n openids with prefix.
func openids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

// followAll ingests and routes a follow of each openid, in batches of 200
// as the worker routes a burst, the clock a millisecond later for each.
func (h *harness) followAll(ids []string) {
	h.t.Helper()
	for start := 0; start < len(ids); start += 200 {
		var evs []*model.Event
		for _, o := range ids[start:min(start+200, len(ids))] {
			h.n++
			ev := wechatEvent("wechat.subscribe", o, nil)
			ev.DedupeKey = fmt.Sprintf("test-%d", h.n)
			evs = append(evs, ev)
		}
		if acc, _, err := h.ing.Ingest(h.ctx, evs...); err != nil || acc != len(evs) {
			h.t.Fatalf("Ingest: %d accepted of %d, %v", acc, len(evs), err)
		}
		evIDs := make([]int64, len(evs))
		for i, ev := range evs {
			evIDs[i] = ev.ID
		}
		if err := h.e.Route(h.ctx, evIDs...); err != nil {
			h.t.Fatalf("Route: %v", err)
		}
		h.clk.Advance(time.Millisecond) // each batch's waits end a little later
	}
}

// runStepTasks does what an asynq worker does with the step tasks in the
// queue: takes each out and runs it (HandleRunStepTask), side by side as
// a worker's slots do, so that they gather into batches. Scheduled tasks
// are run too: asynq forwards them on wall time, while the harness's clock
// decides whether their visit is due. It returns how many it ran.
func (h *harness) runStepTasks() int {
	h.t.Helper()
	type task struct {
		queue string
		info  *asynq.TaskInfo
	}
	var tasks []task
	for q := range journey.Queues() {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){h.insp.ListPendingTasks, h.insp.ListScheduledTasks} {
			for page := 1; ; page++ {
				infos, err := list(q, asynq.PageSize(1000), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					h.t.Fatalf("list tasks: %v", err)
				}
				for _, ti := range infos {
					if ti.Type == journey.TypeRunStep {
						tasks = append(tasks, task{q, ti})
					}
				}
				if len(infos) < 1000 {
					break
				}
			}
		}
	}
	for _, tk := range tasks {
		if err := h.insp.DeleteTask(tk.queue, tk.info.ID); err != nil {
			h.t.Fatalf("delete step task %s: %v", tk.info.ID, err)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	work := make(chan task)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tk := range work {
				if err := h.e.HandleRunStepTask(h.ctx, asynq.NewTask(tk.info.Type, tk.info.Payload)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, tk := range tasks {
		work <- tk
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.t.Fatalf("step tasks: %v", err)
	}
	return len(tasks)
}

// sweepOnly sweeps without running anything.
func (h *harness) sweepOnly() journey.SweepResult {
	h.t.Helper()
	r, err := h.e.Sweep(h.ctx)
	if err != nil {
		h.t.Fatalf("Sweep: %v", err)
	}
	return r
}

// countVisits counts the visits of step in status.
func (h *harness) countVisits(step, status string) int64 {
	h.t.Helper()
	var n int64
	if err := h.db.Model(&model.StepVisit{}).Where("step_id = ? AND status = ?", step, status).Count(&n).Error; err != nil {
		h.t.Fatal(err)
	}
	return n
}

// enrollmentsByVersion counts enrollments by version number and status.
func (h *harness) enrollmentsByVersion() map[string]int {
	h.t.Helper()
	var rows []struct {
		Version int
		Status  string
		N       int
	}
	if err := h.db.Table("enrollments").Select("journey_versions.version, enrollments.status, count(*) AS n").
		Joins("JOIN journey_versions ON journey_versions.id = enrollments.version_id").
		Group("journey_versions.version, enrollments.status").Scan(&rows).Error; err != nil {
		h.t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[fmt.Sprintf("v%d %s", r.Version, r.Status)] = r.N
	}
	return out
}

// TestLifecycleAtScale: 1,000 members wait in version 1 of a journey when
// version 2 is published (10 more enter that one). Paused past the end of
// their wait, the worker runs the step tasks already queued and sends
// nothing, and the sweeper queues nothing again; resumed, every member
// gets their own version's message, once.
func TestLifecycleAtScale(t *testing.T) {
	t.Parallel()
	const n = 1000
	const src = `
key: lifecycle
name: %s
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1h, next: hello }
  - { id: hello, send: { channel: wechat.text, text: %q } }
`
	h := newHarness(t)
	h.publish(fmt.Sprintf(src, "first", "from v1"))
	first := openids("a", n)
	h.followAll(first)
	h.publish(fmt.Sprintf(src, "second", "from v2"))
	second := openids("b", 10)
	h.followAll(second)
	if diff := cmp.Diff(map[string]int{"v1 active": n, "v2 active": 10}, h.enrollmentsByVersion()); diff != "" {
		t.Fatalf("enrollments by version after publishing version 2 (-want +got):\n%s", diff)
	}

	// Shortly before the waits end, the sweeper queues their step tasks
	// (1,000 a sweep).
	due := h.visitOf("pause").DueAt // the last one's
	h.clk.Set(due.Add(-30 * time.Second))
	h.sweepOnly()
	h.sweepOnly()
	st, err := h.e.Pause(h.ctx, "lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(journey.Status{Key: "lifecycle", Name: "second", Status: model.JourneyPaused, PausedReason: journey.PausedByOperator,
		Version: 2, Active: n + 10}, st); diff != "" {
		t.Errorf("Pause (-want +got):\n%s", diff)
	}
	h.followAll([]string{"late"}) // no entry while paused

	h.clk.Set(due.Add(time.Minute))
	if ran := h.runStepTasks(); ran != n+10 {
		t.Errorf("the worker ran %d step tasks; want the %d queued before the pause", ran, n+10)
	}
	if got := len(h.rec.messages()); got != 0 {
		t.Fatalf("%d messages sent while the journey was paused; want none", got)
	}
	if got := h.countVisits("pause", model.VisitWaiting); got != n+10 {
		t.Errorf("%d waits still waiting while paused; want %d", got, n+10)
	}
	for i := range 3 { // nothing busy-loops while paused
		r := h.sweepOnly()
		if r.Visits+r.Upcoming != 0 {
			t.Errorf("sweep %d while paused queued %d overdue and %d upcoming visits; want none", i+1, r.Visits, r.Upcoming)
		}
		if ran := h.runStepTasks(); ran != 0 {
			t.Errorf("sweep %d while paused: %d step tasks ran; want none", i+1, ran)
		}
	}

	st, err = h.e.Resume(h.ctx, "lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != model.JourneyActive || st.PausedReason != "" || st.Released != n+10 {
		t.Errorf("Resume = %+v; want active with %d held visits released", st, n+10)
	}
	if ran := h.runStepTasks(); ran != n+10 {
		t.Errorf("after the resume the worker ran %d step tasks; want %d", ran, n+10)
	}
	h.sweepOnly()
	h.runStepTasks()

	texts := map[string]int{}
	perMember := map[string]string{}
	for _, m := range h.rec.messages() {
		texts[m.Text]++
		if prev, dup := perMember[m.To.OpenID]; dup {
			t.Fatalf("member %s got two messages: %q and %q", m.To.OpenID, prev, m.Text)
		}
		perMember[m.To.OpenID] = m.Text
	}
	if diff := cmp.Diff(map[string]int{"from v1": n, "from v2": 10}, texts); diff != "" {
		t.Errorf("messages after the resume (-want +got):\n%s", diff)
	}
	if perMember[first[n-1]] != "from v1" || perMember[second[0]] != "from v2" {
		t.Errorf("a member got another version's message: %q, %q", perMember[first[n-1]], perMember[second[0]])
	}
	if diff := cmp.Diff(map[string]int{"v1 completed": n, "v2 completed": 10}, h.enrollmentsByVersion()); diff != "" {
		t.Errorf("enrollments by version at the end (-want +got):\n%s", diff)
	}
}

// TestPauseHoldsTheStepAnEventReleases: while the journey is paused, an
// event a wait_for waits for still reaches the member, but the step after
// it is held; resuming runs it.
func TestPauseHoldsTheStepAnEventReleases(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: ask
trigger: { event: wechat.subscribe }
steps:
  - { id: ask, wait_for: { event: form.submitted, timeout: 1h }, next: thanks }
  - { id: thanks, send: { channel: wechat.text, text: thanks } }
`)
	h.subscribe("o1", "")
	if _, err := h.e.Pause(h.ctx, "ask"); err != nil {
		t.Fatal(err)
	}
	h.apiEvent("form.submitted", "o1", nil)
	h.runStepTasks()
	h.sweepOnly()
	h.runStepTasks()
	if got := len(h.rec.messages()); got != 0 {
		t.Fatalf("%d messages sent while paused; want none", got)
	}
	if diff := cmp.Diff([]visit{{"ask", model.VisitDone, "matched"}, {"thanks", model.VisitScheduled, ""}}, h.visits()); diff != "" {
		t.Errorf("visits while paused (-want +got):\n%s", diff)
	}
	if v := h.visitOf("thanks"); v.Attempts != 0 {
		t.Errorf("the held visit counts %d attempts; want 0 (holding is no failure)", v.Attempts)
	}
	st, err := h.e.Resume(h.ctx, "ask")
	if err != nil || st.Released != 1 {
		t.Fatalf("Resume = %+v, %v; want 1 held visit released", st, err)
	}
	h.runStepTasks()
	if diff := cmp.Diff([]sent{{Channel: "wechat.text", OpenID: "o1", Text: "thanks"}}, h.rec.sent()); diff != "" {
		t.Errorf("sent after the resume (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentCompleted, "thanks", journey.ReasonCompleted}}, h.enrollments()); diff != "" {
		t.Errorf("enrollments (-want +got):\n%s", diff)
	}
}

// TestArchiveEndsTheJourney: archiving ends every enrollment (exited,
// "archived"), nothing is sent when their waits would have ended, nobody
// enters, and the journey cannot be resumed or paused; publishing the same
// source changes nothing, a changed one starts it again.
func TestArchiveEndsTheJourney(t *testing.T) {
	t.Parallel()
	const src = `
key: promo
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1h, next: hello }
  - { id: hello, send: { channel: wechat.text, text: %q } }
`
	h := newHarness(t)
	h.publish(fmt.Sprintf(src, "v1"))
	h.followAll(openids("a", 20))
	st, err := h.e.Archive(h.ctx, "promo")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(journey.Status{Key: "promo", Status: model.JourneyArchived, Version: 1, Ended: 20}, st); diff != "" {
		t.Errorf("Archive (-want +got):\n%s", diff)
	}
	var ends []struct {
		Status, EndReason string
		N                 int
	}
	if err := h.db.Model(&model.Enrollment{}).Select("status, end_reason, count(*) AS n").Group("status, end_reason").Scan(&ends).Error; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]struct {
		Status, EndReason string
		N                 int
	}{{model.EnrollmentExited, journey.EndReasonArchived, 20}}, ends); diff != "" {
		t.Errorf("enrollments after the archive (-want +got):\n%s", diff)
	}
	if got := h.countVisits("pause", model.VisitCancelled); got != 20 {
		t.Errorf("%d waits cancelled; want 20", got)
	}
	for name, call := range map[string]func() (journey.Status, error){
		"resume": func() (journey.Status, error) { return h.e.Resume(h.ctx, "promo") },
		"pause":  func() (journey.Status, error) { return h.e.Pause(h.ctx, "promo") },
	} {
		if _, err := call(); !errors.Is(err, journey.ErrTransition) {
			t.Errorf("%s of an archived journey: %v; want ErrTransition", name, err)
		}
	}
	if st, err := h.e.Archive(h.ctx, "promo"); err != nil || st.Status != model.JourneyArchived || st.Ended != 0 {
		t.Errorf("archiving again = %+v, %v; want archived, nothing ended", st, err)
	}
	h.followAll([]string{"late"})
	h.clk.Advance(2 * time.Hour)
	h.sweepOnly()
	h.runStepTasks()
	if got := len(h.rec.messages()); got != 0 {
		t.Errorf("%d messages sent by an archived journey; want none", got)
	}
	if got := h.count(&model.Enrollment{}); got != 20 {
		t.Errorf("%d enrollments; want the 20 from before the archive (nobody enters an archived journey)", got)
	}
	for _, tc := range []struct {
		src         string
		wantCreated bool
		wantStatus  string
	}{
		{fmt.Sprintf(src, "v1"), false, model.JourneyArchived},
		{fmt.Sprintf(src, "v2"), true, model.JourneyActive},
	} {
		st, err := h.e.PublishSource(h.ctx, "promo", "promo.yaml", []byte(tc.src), journey.OriginAPI)
		if err != nil || st.Published == nil || *st.Published != tc.wantCreated || st.Status != tc.wantStatus {
			t.Errorf("publishing %q to the archived journey = %+v, %v; want published %v, %s", tc.src, st, err, tc.wantCreated, tc.wantStatus)
		}
	}
	h.followAll([]string{"new"})
	if got := h.count(&model.Enrollment{}); got != 21 {
		t.Errorf("%d enrollments; want a new member in the journey published again", got)
	}
	for name, call := range map[string]func() (journey.Status, error){
		"status": func() (journey.Status, error) { return h.e.JourneyStatus(h.ctx, "nope") },
		"pause":  func() (journey.Status, error) { return h.e.Pause(h.ctx, "nope") },
		"resume": func() (journey.Status, error) { return h.e.Resume(h.ctx, "nope") },
	} {
		if _, err := call(); !errors.Is(err, journey.ErrUnknownJourney) {
			t.Errorf("%s of an unknown key: %v; want ErrUnknownJourney", name, err)
		}
	}
}

// lockedBuffer is a log destination tests read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRemovedFilePausesItsJourney: a journey whose file left the journeys
// directory is paused at the next sync, with a warning, and its members'
// steps are held; putting the file back resumes it. A file that no longer
// parses keeps its journey live; journeys not from files are left alone;
// one an operator paused is not resumed by its file.
func TestRemovedFilePausesItsJourney(t *testing.T) {
	t.Parallel()
	const src = `
key: %s
trigger: { event: %s }
steps:
  - { id: pause-%[1]s, wait: 1h, next: hello-%[1]s }
  - { id: hello-%[1]s, send: { channel: wechat.text, text: %[1]s } }
`
	var logs lockedBuffer
	h := newHarnessWith(t, func(c *journey.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	dir := t.TempDir()
	alpha, beta := filepath.Join(dir, "alpha.yaml"), filepath.Join(dir, "beta.yml")
	write := func(file, content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(alpha, fmt.Sprintf(src, "alpha", "wechat.subscribe"))
	write(beta, fmt.Sprintf(src, "beta", "wechat.scan"))
	h.publish(fmt.Sprintf(src, "gamma", "wechat.menu_click")) // not from the directory
	sync := func() error {
		t.Helper()
		_, err := h.e.SyncDir(h.ctx, dir)
		return err
	}
	statuses := func() map[string]string {
		t.Helper()
		var js []model.Journey
		if err := h.db.Find(&js).Error; err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, j := range js {
			out[j.Key] = j.Status
			if j.PausedReason != "" {
				out[j.Key] += " (" + j.PausedReason + ")"
			}
		}
		return out
	}
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	h.subscribe("o1", "")

	os.Remove(alpha)
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alpha": "paused (removed)", "beta": "active", "gamma": "active"}
	if diff := cmp.Diff(want, statuses()); diff != "" {
		t.Errorf("after removing alpha.yaml (-want +got):\n%s", diff)
	}
	if line := "journey alpha paused: its file " + alpha + " is no longer in " + dir; !strings.Contains(logs.String(), line) {
		t.Errorf("log lacks %q:\n%s", line, logs.String())
	}
	h.subscribe("o2", "") // enters nothing
	h.clk.Advance(2 * time.Hour)
	h.sweepOnly()
	h.runStepTasks()
	if got := len(h.rec.messages()); got != 0 {
		t.Errorf("%d messages sent by the journey whose file was removed; want none", got)
	}

	// A file that no longer parses keeps its journey live.
	write(beta, "key: beta\nsteps: []\n")
	if err := sync(); !errors.Is(err, journey.ErrInvalid) {
		t.Errorf("sync with a broken file: %v; want ErrInvalid", err)
	}
	if diff := cmp.Diff(want, statuses()); diff != "" {
		t.Errorf("after breaking beta.yml (-want +got):\n%s", diff)
	}

	// The file is back: the journey resumes, and the held wait ends.
	write(alpha, fmt.Sprintf(src, "alpha", "wechat.subscribe"))
	write(beta, fmt.Sprintf(src, "beta", "wechat.scan"))
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	want["alpha"] = "active"
	if diff := cmp.Diff(want, statuses()); diff != "" {
		t.Errorf("after putting alpha.yaml back (-want +got):\n%s", diff)
	}
	h.runStepTasks()
	if diff := cmp.Diff([]sent{{Channel: "wechat.text", OpenID: "o1", Text: "alpha"}}, h.rec.sent()); diff != "" {
		t.Errorf("sent after alpha resumed (-want +got):\n%s", diff)
	}

	// Paused by an operator: its file coming and going changes nothing.
	if _, err := h.e.Pause(h.ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	os.Remove(alpha)
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	write(alpha, fmt.Sprintf(src, "alpha", "wechat.subscribe"))
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	want["alpha"] = "paused (operator)"
	if diff := cmp.Diff(want, statuses()); diff != "" {
		t.Errorf("paused by an operator, its file removed and put back (-want +got):\n%s", diff)
	}
}

// TestLoopsMustWait: a loop of steps that goes through no wait or wait_for
// is refused, the problem naming its steps; a loop through a wait is a
// journey like any other.
func TestLoopsMustWait(t *testing.T) {
	t.Parallel()
	const head = "key: loop\ntrigger: { event: wechat.subscribe }\nsteps:\n"
	for _, tc := range []struct {
		name, steps string
		want        []string // problems; none: accepted
	}{
		{"next and branch", `
  - { id: a, update: { add_tags: [x] }, next: b }
  - id: b
    branch:
      - { when: '"y" in member.tags', next: c }
      - next: a
  - { id: c, send: { channel: wechat.text, text: hi } }
`, []string{`test.yaml:4: step "a": loop "a" → "b" → "a" has no wait or wait_for step`}},
		{"a branch arm to its own step", `
  - { id: a, update: { add_tags: [x] }, next: b }
  - id: b
    branch:
      - next: b
`, []string{`step "b": loop "b" → "b" has no wait or wait_for step`}},
		{"split arms", `
  - { id: s, split: [ { weight: 50, next: t }, { weight: 50, next: u } ] }
  - { id: t, update: { add_tags: [t] }, next: s }
  - { id: u, update: { add_tags: [u] } }
`, []string{`step "s": loop "s" → "t" → "s"`}},
		{"send fallback", `
  - { id: hello, send: { channel: wechat.text, text: hi, fallback: retry } }
  - { id: retry, update: { add_tags: [r] }, next: hello }
`, []string{`step "hello": loop "hello" → "retry" → "hello"`}},
		{"through a wait", `
  - { id: remind, send: { channel: wechat.text, text: hi }, next: pause }
  - { id: pause, wait: 1d, next: check }
  - id: check
    branch:
      - { when: '"done" in member.tags', next: end }
      - next: remind
  - { id: end, update: { add_tags: [finished] } }
`, nil},
		{"through a wait_for timeout", `
  - { id: ask, wait_for: { event: form.submitted, timeout: 1d }, on_timeout: nag }
  - { id: nag, send: { channel: wechat.text, text: "still there?" }, next: ask }
`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := journey.Parse("test.yaml", []byte(head+strings.TrimPrefix(tc.steps, "\n")))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v; want it accepted", err)
				}
				return
			}
			if !errors.Is(err, journey.ErrInvalid) {
				t.Fatalf("Parse: %v; want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "loop "); n != 1 {
				t.Errorf("the loop is reported %d times; want once:\n%v", n, err)
			}
		})
	}
}

// TestPauseAndResumeOnAWorker: the same on a running asynq worker and the
// sweeper, on the wall clock. Waits of one second end while the journey
// is paused: their step tasks run and hold them, nothing is sent, and the
// worker then runs nothing more while paused (no task goes round and
// round). Resumed, every held step runs at once (within seconds), once.
func TestPauseAndResumeOnAWorker(t *testing.T) {
	t.Parallel()
	const n = 50
	h := newHarness(t)
	h.publish(`
key: quick
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1s, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`)
	q := newQueued(t, h, journey.RetryDelay, 50*time.Millisecond)
	var ids []int64
	for _, o := range openids("w", n) {
		ids = append(ids, h.ingest(wechatEvent("wechat.subscribe", o, nil)))
	}
	if err := q.e.Route(h.ctx, ids...); err != nil {
		t.Fatal(err)
	}
	if _, err := q.e.Pause(h.ctx, "quick"); err != nil {
		t.Fatal(err)
	}
	go q.e.RunSweeper(h.ctx, 100*time.Millisecond)
	due := h.visitOf("pause").DueAt
	processed := func() int {
		info, err := q.insp.GetQueueInfo(journey.QueueReply)
		if err != nil {
			t.Fatalf("queue info: %v", err)
		}
		return info.Processed
	}
	// Polling the wall clock: the worker runs the waits' tasks once due.
	for time.Now().Before(due.Add(time.Second)) || processed() < n {
		if time.Now().After(due.Add(10 * time.Second)) {
			t.Fatalf("the worker ran %d of the %d step tasks due", processed(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := processed()
	time.Sleep(time.Second) // a second of sweeps while paused
	if after := processed(); after != before {
		t.Errorf("while paused the worker ran %d more step tasks in a second; want none", after-before)
	}
	if got := len(h.rec.messages()); got != 0 {
		t.Fatalf("%d messages sent while paused; want none", got)
	}
	if got := h.countVisits("pause", model.VisitWaiting); got != n {
		t.Errorf("%d waits held; want %d", got, n)
	}
	resumed := time.Now()
	if _, err := q.e.Resume(h.ctx, "quick"); err != nil {
		t.Fatal(err)
	}
	for len(h.rec.messages()) < n {
		if time.Since(resumed) > 10*time.Second {
			t.Fatalf("%d of %d messages 10 s after the resume", len(h.rec.messages()), n)
		}
		time.Sleep(20 * time.Millisecond) // polling for the sends
	}
	// Typically well under a second; the bound leaves room for a loaded
	// machine (the race detector), as TestWaitRunsOnTimeAfterOutage does.
	if took := time.Since(resumed); took > 5*time.Second {
		t.Errorf("the held steps ran %v after the resume; want within seconds", took.Round(time.Millisecond))
	}
	time.Sleep(300 * time.Millisecond) // a few more sweeps: nothing is sent twice
	if got := len(h.rec.messages()); got != n {
		t.Errorf("%d messages; want %d, one each", got, n)
	}
}
