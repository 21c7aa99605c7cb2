package journey_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// beijing is China time, the engine's time of day.
var beijing = time.FixedZone("CST", 8*3600)

func cst(month time.Month, day, hour, minute int) time.Time {
	return time.Date(2026, month, day, hour, minute, 0, 0, beijing)
}

// waitUntilDue checks that the newest visit of step is due at want and
// still waits a second before, then runs it when due.
func (h *harness) waitUntilDue(step string, want time.Time) {
	h.t.Helper()
	v := h.visitOf(step)
	if v.Status != model.VisitWaiting || !v.DueAt.Equal(want) {
		h.t.Fatalf("visit of %q: %s, due %v; want waiting, due %v", step, v.Status, v.DueAt.In(beijing), want.In(beijing))
	}
	h.clk.Set(want.Add(-time.Second))
	h.sweep()
	if got := h.visitOf(step); got.Status != model.VisitWaiting {
		h.t.Fatalf("a second before its due time %v, visit of %q is %s; want still waiting", want.In(beijing), step, got.Status)
	}
	h.runWhenDue(step)
	h.drain()
}

func TestWaitUntilTimeOfDay(t *testing.T) {
	t.Parallel()
	const src = `
key: morning
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: { until: "09:00" }, next: hello }
  - { id: hello, update: { add_tags: [morning] } }
`
	tests := []struct {
		name      string
		now, want time.Time
	}{
		{"before 09:00: today's", cst(12, 1, 8, 30), cst(12, 1, 9, 0)},
		{"a minute before", cst(12, 1, 8, 59), cst(12, 1, 9, 0)},
		{"exactly 09:00: tomorrow's", cst(12, 1, 9, 0), cst(12, 2, 9, 0)},
		{"after 09:00: tomorrow's", cst(12, 1, 17, 0), cst(12, 2, 9, 0)},
		{"after midnight China time (still yesterday in UTC): today's", cst(12, 2, 0, 30), cst(12, 2, 9, 0)},
		{"last day of the month", cst(11, 30, 23, 0), cst(12, 1, 9, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.clk.Set(tc.now)
			h.publish(src)
			h.subscribe("o1", "")
			h.drain()
			h.waitUntilDue("pause", tc.want)
			if diff := cmp.Diff([]visit{{"pause", model.VisitDone, "waited"}, {"hello", model.VisitDone, "updated"}}, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if got := h.visitOf("pause").FinishedAt; got == nil || got.Before(tc.want) || got.After(tc.want.Add(time.Second)) {
				t.Errorf("wait until %v ended at %v; want within a second after", tc.want.In(beijing), got)
			}
		})
	}
}

func TestWaitUntilAttribute(t *testing.T) {
	t.Parallel()
	const src = `
key: renewal
trigger: { event: member.updated }
steps:
  - { id: remind, wait: %s, next: notice }
  - { id: notice, update: { add_tags: [reminded] } }
`
	now := cst(12, 1, 12, 0)
	tests := []struct {
		name  string
		wait  string
		attrs map[string]any
		// want is when the wait ends; zero: it does not wait, and outcome says why.
		want    time.Time
		outcome string
	}{
		{
			name:  "date, three days before, at 10:00",
			wait:  `{ until_attribute: renewal_date, offset: -3d, at: "10:00" }`,
			attrs: map[string]any{"renewal_date": "2026-12-10"},
			want:  cst(12, 7, 10, 0),
		},
		{
			name:  "date alone: midnight China time",
			wait:  `{ until_attribute: renewal_date }`,
			attrs: map[string]any{"renewal_date": "2026-12-10"},
			want:  cst(12, 10, 0, 0),
		},
		{
			name:  "RFC 3339 time, a day before, its own time kept",
			wait:  `{ until_attribute: renewal_date, offset: -1d }`,
			attrs: map[string]any{"renewal_date": "2026-12-10T15:30:00+08:00"},
			want:  cst(12, 9, 15, 30),
		},
		{
			name:  "RFC 3339 time in UTC: at is set on the China-time day",
			wait:  `{ until_attribute: renewal_date, offset: -3d, at: "10:00" }`,
			attrs: map[string]any{"renewal_date": "2026-12-09T20:00:00Z"}, // 12-10 04:00 in China
			want:  cst(12, 7, 10, 0),
		},
		{
			name:  "positive offset in hours",
			wait:  `{ until_attribute: renewal_date, offset: 12h }`,
			attrs: map[string]any{"renewal_date": "2026-12-10"},
			want:  cst(12, 10, 12, 0),
		},
		{
			name:    "attribute missing: goes on at once",
			wait:    `{ until_attribute: renewal_date, offset: -3d, at: "10:00" }`,
			attrs:   map[string]any{"level": "gold"},
			outcome: journey.OutcomeAttributeMissing,
		},
		{
			name:    "attribute empty: missing",
			wait:    `{ until_attribute: renewal_date }`,
			attrs:   map[string]any{"renewal_date": ""},
			outcome: journey.OutcomeAttributeMissing,
		},
		{
			name:    "attribute not a date: goes on at once",
			wait:    `{ until_attribute: renewal_date, offset: -3d }`,
			attrs:   map[string]any{"renewal_date": "next month"},
			outcome: journey.OutcomeAttributeNotDate,
		},
		{
			name:    "attribute a number: not a date",
			wait:    `{ until_attribute: renewal_date }`,
			attrs:   map[string]any{"renewal_date": 20261210},
			outcome: journey.OutcomeAttributeNotDate,
		},
		{
			name:    "moment already past: goes on at once",
			wait:    `{ until_attribute: renewal_date, offset: -3d, at: "10:00" }`,
			attrs:   map[string]any{"renewal_date": "2026-12-02"}, // 11-29 10:00
			outcome: journey.OutcomeAlreadyPast,
		},
		{
			name:    "moment earlier today: already past",
			wait:    `{ until_attribute: renewal_date, at: "10:00" }`,
			attrs:   map[string]any{"renewal_date": "2026-12-01"}, // 12-01 10:00, it is 12:00
			outcome: journey.OutcomeAlreadyPast,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.clk.Set(now)
			h.publish(fmt.Sprintf(src, tc.wait))
			h.apiEvent("member.updated", "o1", tc.attrs)
			h.drain()
			if tc.want.IsZero() {
				// Not waited: the member went on in the same run.
				want := []visit{{"remind", model.VisitDone, tc.outcome}, {"notice", model.VisitDone, "updated"}}
				if diff := cmp.Diff(want, h.visits()); diff != "" {
					t.Errorf("visits mismatch (-want +got):\n%s", diff)
				}
				if v := h.visitOf("remind"); v.FinishedAt == nil || !v.FinishedAt.Equal(now) {
					t.Errorf("wait not to be waited finished at %v; want at once (%v)", v.FinishedAt, now)
				}
				return
			}
			if got := h.visits(); len(got) != 1 || got[0].Status != model.VisitWaiting {
				t.Fatalf("visits %v; want remind waiting", got)
			}
			h.waitUntilDue("remind", tc.want)
			want := []visit{{"remind", model.VisitDone, "waited"}, {"notice", model.VisitDone, "updated"}}
			if diff := cmp.Diff(want, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// The due time is computed when the member enters the step: changing the
// attribute afterwards does not move it.
func TestWaitUntilAttributeChangedLater(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.clk.Set(cst(12, 1, 12, 0))
	h.publish(`
key: renewal
trigger: { event: member.updated, where: 'event.renewal_date != nil' }
steps:
  - { id: remind, wait: { until_attribute: renewal_date, offset: -3d, at: "10:00" }, next: notice }
  - { id: notice, update: { add_tags: [reminded] } }
`)
	h.apiEvent("member.updated", "o1", map[string]any{"renewal_date": "2026-12-10"})
	h.clk.Advance(time.Hour)
	h.apiEvent("member.updated", "o1", map[string]any{"renewal_date": "2027-01-10"})
	if got := h.member("o1").Attrs["renewal_date"]; got != "2027-01-10" {
		t.Fatalf("renewal_date = %v; want the new 2027-01-10", got)
	}
	h.waitUntilDue("remind", cst(12, 7, 10, 0))
	if diff := cmp.Diff([]string{"reminded"}, h.member("o1").Tags); diff != "" {
		t.Errorf("tags mismatch (-want +got):\n%s", diff)
	}
}

// An update earlier in the same run sets the attribute the wait reads.
func TestWaitUntilAttributeSetByAnUpdate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.clk.Set(cst(12, 1, 12, 0))
	h.publish(`
key: trial
trigger: { event: wechat.subscribe }
steps:
  - { id: start, update: { set: { trial_ends: "2026-12-08" } }, next: remind }
  - { id: remind, wait: { until_attribute: trial_ends, offset: -1d, at: "09:30" }, next: notice }
  - { id: notice, update: { add_tags: [reminded] } }
`)
	h.subscribe("o1", "")
	h.drain()
	h.waitUntilDue("remind", cst(12, 7, 9, 30))
	want := []visit{{"start", model.VisitDone, "updated"}, {"remind", model.VisitDone, "waited"}, {"notice", model.VisitDone, "updated"}}
	if diff := cmp.Diff(want, h.visits()); diff != "" {
		t.Errorf("visits mismatch (-want +got):\n%s", diff)
	}
}

func TestWaitForMatch(t *testing.T) {
	t.Parallel()
	const src = `
key: cart
trigger: { event: cart.abandoned }
steps:
  - id: wait_order
    wait_for: { event: order.paid, match: %s, timeout: 1d }
    next: bought
    on_timeout: nudge
  - { id: bought, update: { add_tags: [bought] } }
  - { id: nudge, update: { add_tags: [nudged] } }
`
	type ev struct {
		openid string
		props  map[string]any
	}
	cart := map[string]any{"cart_id": "c1", "store": "s1"}
	waiting := []visit{{"wait_order", model.VisitWaiting, ""}}
	matched := []visit{{"wait_order", model.VisitDone, "matched"}, {"bought", model.VisitDone, "updated"}}
	tests := []struct {
		name   string
		match  string
		cart   map[string]any
		orders []ev
		want   []visit
	}{
		{"an order for another cart: keeps waiting", "cart_id", cart,
			[]ev{{"o1", map[string]any{"cart_id": "c2"}}}, waiting},
		{"an order without a cart: keeps waiting", "cart_id", cart,
			[]ev{{"o1", map[string]any{"amount": 10}}}, waiting},
		{"the same cart for another member: keeps waiting", "cart_id", cart,
			[]ev{{"o2", map[string]any{"cart_id": "c1"}}}, waiting},
		{"the order for this cart resumes", "cart_id", cart,
			[]ev{{"o1", map[string]any{"cart_id": "c2"}}, {"o1", map[string]any{"cart_id": "c1"}}}, matched},
		{"a number matches its text", "cart_id", map[string]any{"cart_id": 42},
			[]ev{{"o1", map[string]any{"cart_id": "42"}}}, matched},
		{"a cart without an id is never matched", "cart_id", map[string]any{"store": "s1"},
			[]ev{{"o1", map[string]any{"store": "s1"}}, {"o1", map[string]any{"cart_id": nil}}}, waiting},
		{"a list: every prop must be equal", "[cart_id, store]", cart,
			[]ev{{"o1", map[string]any{"cart_id": "c1", "store": "s2"}}, {"o1", map[string]any{"cart_id": "c1"}}}, waiting},
		{"a list: all equal resumes", "[cart_id, store]", cart,
			[]ev{{"o1", map[string]any{"cart_id": "c1", "store": "s1", "amount": 99}}}, matched},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.publish(fmt.Sprintf(src, tc.match))
			h.apiEvent("cart.abandoned", "o1", tc.cart)
			h.drain()
			for _, o := range tc.orders {
				h.apiEvent("order.paid", o.openid, o.props)
			}
			h.drain()
			if diff := cmp.Diff(tc.want, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Two members, each with their own cart: an order resumes only the wait
// of its own cart's journey.
func TestWaitForMatchPerEnrollment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: cart
trigger: { event: cart.abandoned }
steps:
  - { id: wait_order, wait_for: { event: order.paid, match: cart_id, timeout: 1d }, next: bought, on_timeout: nudge }
  - { id: bought, update: { add_tags: [bought] } }
  - { id: nudge, update: { add_tags: [nudged] } }
`)
	h.apiEvent("cart.abandoned", "o1", map[string]any{"cart_id": "c1"})
	h.apiEvent("cart.abandoned", "o2", map[string]any{"cart_id": "c2"})
	h.apiEvent("order.paid", "o2", map[string]any{"cart_id": "c2"})
	h.drain()
	want := []enrollment{
		{"o1", model.EnrollmentActive, "wait_order", ""},
		{"o2", model.EnrollmentCompleted, "bought", journey.ReasonCompleted},
	}
	if diff := cmp.Diff(want, h.enrollments()); diff != "" {
		t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
	}
	// The first cart's wait times out a day later.
	h.clk.Advance(24*time.Hour - 2*time.Second)
	h.runWhenDue("wait_order")
	h.drain()
	if diff := cmp.Diff([]string{"nudged"}, h.member("o1").Tags); diff != "" {
		t.Errorf("o1 tags mismatch (-want +got):\n%s", diff)
	}
}

func TestWaitForWithin(t *testing.T) {
	t.Parallel()
	const src = `
key: cart
trigger: { event: cart.abandoned }
steps:
  - id: wait_order
    wait_for: { event: order.paid, timeout: 1h, within: 10m }
    next: bought
    on_timeout: nudge
  - { id: bought, update: { add_tags: [bought] } }
  - { id: nudge, update: { add_tags: [nudged] } }
`
	matched := []visit{{"wait_order", model.VisitDone, "matched"}, {"bought", model.VisitDone, "updated"}}
	timedOut := []visit{{"wait_order", model.VisitDone, "timeout"}, {"nudge", model.VisitDone, "updated"}}
	tests := []struct {
		name string
		// received and at are when the order arrives and when it says it
		// happened, after entering; received 0: no order.
		received, at time.Duration
		want         []visit
	}{
		{"on time", 30 * time.Minute, 30 * time.Minute, matched},
		{"on time, though its at is after the timeout (a clock ahead): matched", 50 * time.Minute, 65 * time.Minute, matched},
		{"late, happened before the timeout: matched", 65 * time.Minute, 59 * time.Minute, matched},
		{"late, happened exactly at the timeout: matched", 69 * time.Minute, time.Hour, matched},
		{"late, happened after the timeout: times out", 65 * time.Minute, 61 * time.Minute, timedOut},
		{"no order: times out after the grace", 0, 0, timedOut},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.publish(src)
			h.apiEvent("cart.abandoned", "o1", map[string]any{"cart_id": "c1"})
			entered := h.visitOf("wait_order")
			t0 := entered.CreatedAt
			if want := t0.Add(70 * time.Minute); !entered.DueAt.Equal(want) {
				t.Fatalf("wait_for due at %v; want the timeout plus within, %v", entered.DueAt, want)
			}
			order := func() {
				h.clk.Set(t0.Add(tc.received))
				h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{AppID: testAppID, OpenID: "o1"},
					Props: map[string]any{"cart_id": "c1"}, At: t0.Add(tc.at)})
				h.drain()
			}
			if tc.received > 0 && tc.received <= time.Hour {
				order()
			}
			if h.visitOf("wait_order").Status == model.VisitWaiting {
				// Past the timeout, within the grace: still waiting.
				h.clk.Set(t0.Add(time.Hour + time.Second))
				h.sweep()
				if got := h.visitOf("wait_order").Status; got != model.VisitWaiting {
					t.Fatalf("a second after the timeout, within the grace, the wait is %s; want waiting", got)
				}
			}
			if tc.received > time.Hour {
				order()
			}
			if h.visitOf("wait_order").Status == model.VisitWaiting {
				h.clk.Set(t0.Add(70*time.Minute - 2*time.Second))
				h.runWhenDue("wait_order")
				h.drain()
			}
			if diff := cmp.Diff(tc.want, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if v := h.visitOf("wait_order"); v.Outcome == "timeout" && (v.FinishedAt == nil || v.FinishedAt.Before(t0.Add(70*time.Minute))) {
				t.Errorf("timed out at %v; want not before the timeout plus within (%v)", v.FinishedAt, t0.Add(70*time.Minute))
			}
		})
	}
}
