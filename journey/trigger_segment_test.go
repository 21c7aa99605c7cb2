package journey_test

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

const cartJourney = `
key: big-cart
trigger: { segment: 'member.attrs.cart_value > 500', every: 1h }
steps:
  - { id: nudge, send: { channel: wechat.template, template_id: T1, data: { first: 购物车提醒 } } }
`

// runSegments moves the clock by d, evaluates the due segments, runs the
// steps they start and returns how many members they stored an event for.
func (h *harness) runSegments(d time.Duration) int {
	h.t.Helper()
	h.clk.Advance(d)
	n, err := h.e.RunSegments(h.ctx)
	if err != nil {
		h.t.Fatalf("RunSegments: %v", err)
	}
	h.drain()
	return n
}

// setCart changes a member's cart value as a brand's member.updated does.
func (h *harness) setCart(openid string, v int) {
	h.t.Helper()
	h.apiEvent("member.updated", openid, map[string]any{"cart_value": v})
	h.drain()
}

// Members who newly match the segment enter, once while they stay in it;
// one who leaves it and comes back enters again; an evaluation happens
// every every, not sooner, and once across engines.
func TestSegmentTriggerEntersNewMatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setCart("big", 800)
	h.setCart("small", 100)
	h.publish(cartJourney)

	if n := h.runSegments(time.Minute); n != 1 {
		t.Errorf("first evaluation: %d entered; want 1 (big)", n)
	}
	h.setCart("small", 900) // now matches
	h.setCart("big", 950)   // still matches: no second entry
	if n := h.runSegments(30 * time.Minute); n != 0 {
		t.Errorf("30 minutes later: %d entered; want 0 (every: 1h)", n)
	}
	other := journey.New(journey.Config{DB: h.db, Clock: h.clk, DBSlots: 1, BaseContext: t.Context(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Senders: h.rec.sender()})
	if n := h.runSegments(31 * time.Minute); n != 1 {
		t.Errorf("an hour later: %d entered; want 1 (small)", n)
	}
	if n, err := other.RunSegments(h.ctx); err != nil || n != 0 {
		t.Errorf("another engine right after: RunSegments = %d, %v; want 0, nil", n, err)
	}
	h.setCart("big", 0) // leaves the segment
	h.runSegments(time.Hour)
	h.setCart("big", 600) // and comes back
	if n := h.runSegments(time.Hour); n != 1 {
		t.Errorf("back in the segment: %d entered; want 1", n)
	}
	if diff := cmp.Diff([]string{"big", "small", "big"}, h.entered()); diff != "" {
		t.Errorf("entered (-want +got):\n%s", diff)
	}
	var in []int64
	h.db.Model(&model.SegmentMember{}).Order("member_id").Pluck("member_id", &in)
	if len(in) != 2 {
		t.Errorf("segment members %v; want big and small", in)
	}
}

// An evaluation reads only the members changed since the previous one: a
// member whose attributes were written behind wejourney's back (updated_at
// left a day old) is not evaluated until they change.
func TestSegmentTriggerIsIncremental(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.setCart("a", 100)
	h.publish(cartJourney)
	h.runSegments(time.Minute)
	m := h.member("a")
	if err := h.db.Model(&model.Member{}).Where("id = ?", m.ID).UpdateColumns(map[string]any{"attrs": `{"cart_value":700}`, "updated_at": time.Now().UTC().Add(-24 * time.Hour)}).Error; err != nil {
		t.Fatal(err)
	}
	if n := h.runSegments(2 * time.Hour); n != 0 {
		t.Errorf("unchanged member: %d entered; want 0 (not evaluated)", n)
	}
	h.setCart("a", 701)
	if n := h.runSegments(2 * time.Hour); n != 1 {
		t.Errorf("changed member: %d entered; want 1", n)
	}
}

// A segment trigger is checked when the journey is parsed.
func TestSegmentTriggerValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ trigger, want string }{
		{`{ segment: 'event.amount > 5' }`, "segment: event.amount: a segment reads the member only"},
		{`{ segment: 'member.cart > 5' }`, `segment: member has no field "cart"`},
		{`{ segment: 'member.attrs.x >', every: 1h }`, "segment: "},
		{`{ segment: 'member.attrs.x > 1', every: 10s }`, "every: 10s: at least 1m0s"},
		{`{ segment: 'member.attrs.x > 1', every: often }`, `every: "often": want a duration`},
		{`{ event: order.paid, every: 1h }`, "every goes with segment, not event"},
		{`{ segment: '' }`, "segment is an expression over the member"},
	} {
		src := "key: k\ntrigger: " + tc.trigger + "\nsteps:\n  - { id: w, wait: 1h }\n"
		_, err := journey.Parse("k.yaml", []byte(src))
		if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), "k.yaml:2: trigger: "+tc.want) {
			t.Errorf("trigger %s: Parse = %v; want %q", tc.trigger, err, tc.want)
		}
	}
	c, err := journey.Parse("k.yaml", []byte("key: k\ntrigger: { segment: 'member.attrs.x > 1' }\nsteps:\n  - { id: w, wait: 1h }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := c.Segment(); !ok || s.Every != journey.DefaultSegmentEvery {
		t.Errorf("Segment() = %+v, %v; want every 1h by default", s, ok)
	}
}

// A test run of a segment journey enters the member with the event the
// segment would store, and says whether the member is in the segment.
func TestSegmentTriggerTestRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.publish(strings.Replace(cartJourney, "data: { first: 购物车提醒 }", "data: { first: '{{ .event.by }}' }", 1))
	h.setCart("in", 900)
	h.setCart("out", 10)
	for openid, want := range map[string]bool{"in": true, "out": false} {
		m := h.member(openid)
		run, err := h.e.TestRun(h.ctx, c, 1, &m, journey.TestRunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if run.Entered != want {
			t.Errorf("%s: Entered = %v; want %v", openid, run.Entered, want)
		}
		if len(run.Steps) != 1 || run.Steps[0].Message == nil || run.Steps[0].Message.Data["first"] != "segment" {
			t.Errorf("%s: steps %+v; want the nudge with event.by = segment", openid, run.Steps)
		}
	}
}

// A paused segment journey is not evaluated; once resumed, the members who
// came to match meanwhile enter.
func TestSegmentTriggerPaused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(cartJourney)
	h.runSegments(time.Minute)
	if _, err := h.e.Pause(h.ctx, "big-cart"); err != nil {
		t.Fatal(err)
	}
	h.e.InvalidateIndex()
	h.setCart("a", 900)
	if n := h.runSegments(2 * time.Hour); n != 0 {
		t.Errorf("paused: %d entered; want 0", n)
	}
	if _, err := h.e.Resume(h.ctx, "big-cart"); err != nil {
		t.Fatal(err)
	}
	h.e.InvalidateIndex()
	if n := h.runSegments(time.Minute); n != 1 {
		t.Errorf("resumed: %d entered; want 1", n)
	}
}

// An evaluation re-checks only the members changed since the previous one:
// not the others, and not those it entered (entering a journey and running
// its steps does not change the member).
func TestSegmentTriggerRechecksOnlyChanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for openid, v := range map[string]int{"big": 800, "small": 100, "other": 50} {
		h.setCart(openid, v)
	}
	// Written a day ago: before any evaluation's overlap.
	if err := h.db.Model(&model.Member{}).Where("id > 0").UpdateColumn("updated_at", time.Now().UTC().Add(-24*time.Hour)).Error; err != nil {
		t.Fatal(err)
	}
	h.publish(cartJourney)
	run := func(d time.Duration) (entered, checked int) {
		t.Helper()
		h.clk.Advance(d)
		entered, checked, err := h.e.RunSegmentsChecked(h.ctx)
		if err != nil {
			t.Fatalf("RunSegmentsChecked: %v", err)
		}
		h.drain()
		return entered, checked
	}
	if entered, checked := run(time.Minute); entered != 1 || checked != 3 {
		t.Errorf("first evaluation: %d entered, %d checked; want 1 (big), 3 (every member)", entered, checked)
	}
	h.setCart("small", 900)
	if entered, checked := run(time.Hour); entered != 1 || checked != 1 {
		t.Errorf("second evaluation: %d entered, %d checked; want 1 (small), 1 (small alone: big only entered)", entered, checked)
	}
	if got := len(h.rec.messages()); got != 2 {
		t.Errorf("%d messages sent; want 2 (big, small)", got)
	}
}
