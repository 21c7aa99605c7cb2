package journey_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// A goal ends the enrollment as goal, an exit rule (by event or by an
// expression over the member) as exited: never one for the other.
func TestGoalAndExits(t *testing.T) {
	t.Parallel()
	const src = `
key: goal
trigger: { event: wechat.subscribe }
goal: %s
exit:
  - event: wechat.unsubscribe
  - when: 'member.attrs.vip == true'
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: pause }
  - { id: pause, wait: 1h }
`
	const paid = `{ event: order.paid, where: 'event.amount > 0' }`
	const bound = `{ when: 'member.attrs.bound == true' }`
	tests := []struct {
		name  string
		goal  string
		event func(h *harness)
		want  enrollment
		pause string // the pause visit's status
	}{
		{"the goal event", paid, func(h *harness) { h.apiEvent("order.paid", "o1", map[string]any{"amount": 99}) },
			enrollment{"o1", model.EnrollmentGoal, "pause", "goal:order.paid"}, model.VisitCancelled},
		{"the goal event whose where does not hold", paid, func(h *harness) { h.apiEvent("order.paid", "o1", map[string]any{"amount": 0}) },
			enrollment{"o1", model.EnrollmentActive, "pause", ""}, model.VisitWaiting},
		{"an exit event is no goal", paid, func(h *harness) { h.unsubscribe("o1") },
			enrollment{"o1", model.EnrollmentExited, "pause", "exit:wechat.unsubscribe"}, model.VisitCancelled},
		{"an exit expression", paid, func(h *harness) { h.apiEvent("member.updated", "o1", map[string]any{"vip": true}) },
			enrollment{"o1", model.EnrollmentExited, "pause", "exit:when"}, model.VisitCancelled},
		{"an exit expression that does not hold", paid, func(h *harness) { h.apiEvent("member.updated", "o1", map[string]any{"vip": false}) },
			enrollment{"o1", model.EnrollmentActive, "pause", ""}, model.VisitWaiting},
		{"a goal expression", bound, func(h *harness) { h.apiEvent("member.updated", "o1", map[string]any{"bound": true}) },
			enrollment{"o1", model.EnrollmentGoal, "pause", "goal:when"}, model.VisitCancelled},
		{"the goal before an exit the same event meets", bound, func(h *harness) {
			h.apiEvent("member.updated", "o1", map[string]any{"bound": true, "vip": true})
		}, enrollment{"o1", model.EnrollmentGoal, "pause", "goal:when"}, model.VisitCancelled},
		{"another member's goal", paid, func(h *harness) { h.apiEvent("order.paid", "o2", map[string]any{"amount": 99}) },
			enrollment{"o1", model.EnrollmentActive, "pause", ""}, model.VisitWaiting},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.publish(fmt.Sprintf(src, tc.goal))
			h.subscribe("o1", "store_1")
			h.drain()
			tc.event(h)
			got := h.enrollments()
			if len(got) == 0 {
				t.Fatal("no enrollment")
			}
			if diff := cmp.Diff(tc.want, got[0]); diff != "" {
				t.Errorf("enrollment mismatch (-want +got):\n%s", diff)
			}
			if v := h.visitOf("pause"); v.Status != tc.pause {
				t.Errorf("pause visit %s (%s); want %s", v.Status, v.Outcome, tc.pause)
			}
		})
	}
}

// entry.max_active refuses the entry that would make one member more than
// it allows, whether the events are routed one by one or as one batch; a
// member leaving makes room.
func TestMaxActive(t *testing.T) {
	t.Parallel()
	const src = `
key: capped
trigger: { event: wechat.subscribe }
entry: { max_active: 2 }
exit: [ { event: wechat.unsubscribe } ]
steps:
  - { id: hold, wait: 1h }
`
	statuses := func(h *harness) map[string]string {
		out := map[string]string{}
		for _, e := range h.enrollments() {
			out[e.Member] = e.Status
		}
		return out
	}
	t.Run("one by one", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.publish(src)
		for _, o := range []string{"o1", "o2", "o3"} {
			h.subscribe(o, "")
		}
		want := map[string]string{"o1": model.EnrollmentActive, "o2": model.EnrollmentActive}
		if diff := cmp.Diff(want, statuses(h)); diff != "" {
			t.Fatalf("enrollments after three follows (-want +got):\n%s", diff)
		}
		h.unsubscribe("o1")
		h.subscribe("o3", "")
		h.subscribe("o4", "")
		want = map[string]string{"o1": model.EnrollmentExited, "o2": model.EnrollmentActive, "o3": model.EnrollmentActive}
		if diff := cmp.Diff(want, statuses(h)); diff != "" {
			t.Errorf("enrollments after o1 left and o3, o4 followed (-want +got):\n%s", diff)
		}
	})
	t.Run("one batch", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.publish(src)
		var ids []int64
		for _, o := range []string{"o1", "o2", "o3", "o4"} {
			ids = append(ids, h.ingest(wechatEvent("wechat.subscribe", o, nil)))
		}
		if err := h.e.Route(h.ctx, ids...); err != nil {
			t.Fatal(err)
		}
		if n := len(statuses(h)); n != 2 {
			t.Errorf("a batch of four follows entered %d members (%v); want 2", n, statuses(h))
		}
	})
}

// The statistics count what the visits, enrollments and deliveries
// record: members entering, waiting, splitting, reaching the goal,
// exiting and failing.
func TestJourneyStats(t *testing.T) {
	t.Parallel()
	const src = `
key: stats
trigger: { event: wechat.subscribe }
goal: { event: order.paid, where: 'event.amount > 0' }
exit: [ { event: wechat.unsubscribe } ]
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: pause }
  - { id: pause, wait: 1h, next: vip }
  - id: vip
    split:
      - { weight: 50, next: coupon_a }
      - { weight: 50, next: coupon_b }
  - { id: coupon_a, send: { channel: wechat.template, template_id: A }, next: tail }
  - { id: coupon_b, send: { channel: wechat.template, template_id: B }, next: tail }
  - { id: tail, wait: 24h }
`
	h := newHarness(t)
	h.publish(src)
	h.rec.fail(channels.WeChatText+"/o5", &channels.Error{Class: channels.ErrPermanent, Code: 40008, Msg: "invalid message type"})
	for _, o := range []string{"o1", "o2", "o3", "o4", "o5", "o6"} {
		h.subscribe(o, "")
	}
	h.drain()
	// o2 reaches the goal and o6 exits during the pause.
	h.apiEvent("order.paid", "o2", map[string]any{"amount": 10})
	h.unsubscribe("o6")
	// o1, o3, o4: the split, a coupon, then the tail; there o1 reaches the
	// goal, and o3's order of nothing is none.
	h.clk.Advance(time.Hour + time.Second)
	h.drain()
	h.apiEvent("order.paid", "o1", map[string]any{"amount": 10})
	h.apiEvent("order.paid", "o3", map[string]any{"amount": 0})
	h.clk.Advance(24*time.Hour + time.Second)
	h.drain() // o3, o4 complete
	h.subscribe("o8", "")
	h.drain() // o8 waits in the pause

	// Which coupon each member got, as its visits show.
	arm := map[string]string{}
	for _, v := range h.visitRows() {
		if v.StepID == "coupon_a" || v.StepID == "coupon_b" {
			var m model.Member
			h.db.First(&m, v.MemberID)
			arm[m.OpenID] = v.StepID
		}
	}
	if len(arm) != 3 {
		t.Fatalf("coupons went to %v; want o1, o3 and o4", arm)
	}
	arms := []journey.ArmStats{{Next: "coupon_a"}, {Next: "coupon_b"}}
	for _, o := range []string{"o1", "o3", "o4"} {
		i := slices.IndexFunc(arms, func(a journey.ArmStats) bool { return a.Next == arm[o] })
		arms[i].Entered++
		if o == "o1" {
			arms[i].Goal++
		}
	}
	want := &journey.Stats{
		Journey:          "stats",
		EnrollmentCounts: journey.EnrollmentCounts{Entered: 7, Active: 1, Completed: 2, Goal: 2, Exited: 1, Failed: 1},
		Steps: []journey.StepStats{
			{ID: "hello", Reached: 7, Passed: 6, Failed: 1},
			{ID: "pause", Reached: 6, Passed: 3, Waiting: 1}, // o2 and o6 cancelled
			{ID: "vip", Reached: 3, Passed: 3},
			{ID: "coupon_a", Reached: arms[0].Entered, Passed: arms[0].Entered},
			{ID: "coupon_b", Reached: arms[1].Entered, Passed: arms[1].Entered},
			{ID: "tail", Reached: 3, Passed: 2}, // o1 cancelled by the goal
		},
		Splits:   []journey.SplitStats{{Step: "vip", Arms: arms}},
		Channels: []journey.ChannelStats{{Channel: channels.WeChatTemplate, Sent: 3}, {Channel: channels.WeChatText, Sent: 6, Failed: 1}},
	}
	from, to, err := journey.StatsRange("", "", h.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := journey.JourneyStats(h.ctx, h.db, "stats", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats mismatch (-want +got):\n%s", diff)
	}

	// A range before anyone entered counts nothing, and still lists the steps.
	day := h.clk.Now().AddDate(0, 0, -5).In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly)
	from, to, err = journey.StatsRange(day, day, h.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err = journey.JourneyStats(h.ctx, h.db, "stats", from, to)
	if err != nil {
		t.Fatal(err)
	}
	empty := &journey.Stats{Journey: "stats", Channels: []journey.ChannelStats{},
		Splits: []journey.SplitStats{{Step: "vip", Arms: []journey.ArmStats{{Next: "coupon_a"}, {Next: "coupon_b"}}}}}
	for _, s := range want.Steps {
		empty.Steps = append(empty.Steps, journey.StepStats{ID: s.ID})
	}
	if diff := cmp.Diff(empty, got); diff != "" {
		t.Errorf("stats of a day before anyone entered (-want +got):\n%s", diff)
	}
	if _, err := journey.JourneyStats(h.ctx, h.db, "nope", from, to); err != journey.ErrNoJourney {
		t.Errorf("stats of an unknown journey: %v; want ErrNoJourney", err)
	}
}

func TestStatsRange(t *testing.T) {
	t.Parallel()
	cst := time.FixedZone("CST", 8*3600)
	now := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC) // 2026-12-01 04:00 in China
	for _, tc := range []struct {
		from, to         string
		wantFrom, wantTo time.Time
		err              string
	}{
		{"2026-11-01", "2026-11-30", time.Date(2026, 11, 1, 0, 0, 0, 0, cst), time.Date(2026, 12, 1, 0, 0, 0, 0, cst), ""},
		{"", "", time.Date(2026, 11, 2, 0, 0, 0, 0, cst), time.Date(2026, 12, 2, 0, 0, 0, 0, cst), ""},
		{"2026-11-30", "", time.Date(2026, 11, 30, 0, 0, 0, 0, cst), time.Date(2026, 12, 2, 0, 0, 0, 0, cst), ""},
		{"", "2026-11-10", time.Date(2026, 10, 12, 0, 0, 0, 0, cst), time.Date(2026, 11, 11, 0, 0, 0, 0, cst), ""},
		{"2026-11-31", "", time.Time{}, time.Time{}, `from: want a date like 2026-11-30, got "2026-11-31"`},
		{"2026-11-10", "2026-11-09", time.Time{}, time.Time{}, "from 2026-11-10 is after to 2026-11-09"},
	} {
		from, to, err := journey.StatsRange(tc.from, tc.to, now)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("StatsRange(%q, %q) error %v; want %q", tc.from, tc.to, err, tc.err)
			}
			continue
		}
		if err != nil || !from.Equal(tc.wantFrom) || !to.Equal(tc.wantTo) {
			t.Errorf("StatsRange(%q, %q) = %v, %v, %v; want %v, %v", tc.from, tc.to, from, to, err, tc.wantFrom, tc.wantTo)
		}
	}
}
