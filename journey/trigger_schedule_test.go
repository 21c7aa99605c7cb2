package journey_test

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// addMember stores a member with these attributes (nil: none) directly,
// as an import would have.
func (h *harness) addMember(openid string, attrs map[string]any) {
	h.t.Helper()
	if err := h.db.Create(&model.Member{AppID: testAppID, OpenID: openid, Attrs: attrs}).Error; err != nil {
		h.t.Fatal(err)
	}
}

// runSchedules sets the clock, runs the due schedules, runs the steps
// they start and returns how many members they stored an event for.
func (h *harness) runSchedules(at time.Time) int {
	h.t.Helper()
	h.clk.Set(at)
	n, err := h.e.RunSchedules(h.ctx)
	if err != nil {
		h.t.Fatalf("RunSchedules at %v: %v", at, err)
	}
	h.drain()
	return n
}

// entered lists the openids of the members enrolled, in order of entry.
func (h *harness) entered() []string {
	h.t.Helper()
	var out []string
	for _, e := range h.enrollments() {
		out = append(out, e.Member)
	}
	return out
}

const birthdayJourney = `
key: birthday
trigger: { schedule: { attribute: birthday, at: "09:00", every: year } }
steps:
  - { id: gift, send: { channel: wechat.template, template_id: T1, data: { first: 生日快乐 } } }
`

// Members whose birthday is today enter at 09:00 China time, not before,
// once however often the schedule runs and however many engines run it,
// and again the next year. A member without the attribute, or with one that
// is not a date, is skipped.
func TestScheduleTriggerBirthdays(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(birthdayJourney)
	h.addMember("today", map[string]any{"birthday": "1990-03-10"})
	h.addMember("tomorrow", map[string]any{"birthday": "1985-03-11"})
	h.addMember("none", nil)
	h.addMember("other-attrs", map[string]any{"city": "上海"})
	h.addMember("empty", map[string]any{"birthday": ""})
	h.addMember("not-date", map[string]any{"birthday": "soon"})
	h.addMember("bad-prefix", map[string]any{"birthday": "abcde03-10"}) // month-day where a birthday has it
	h.addMember("bad-month", map[string]any{"birthday": "1990-13-10"})
	h.addMember("number", map[string]any{"birthday": 19900310})
	h.addMember("rfc3339", map[string]any{"birthday": "2001-03-10T00:00:00+08:00"})

	if n := h.runSchedules(time.Date(2026, 3, 10, 8, 59, 0, 0, beijing)); n != 0 || len(h.entered()) != 0 {
		t.Fatalf("at 08:59: %d entered (%v); want nobody before 09:00", n, h.entered())
	}
	if n := h.runSchedules(time.Date(2026, 3, 10, 9, 0, 0, 0, beijing)); n != 2 {
		t.Errorf("at 09:00: %d entered; want 2", n)
	}
	want := []string{"today", "rfc3339"}
	if diff := cmp.Diff(want, h.entered()); diff != "" {
		t.Fatalf("entered at 09:00 (-want +got):\n%s", diff)
	}
	if n := len(h.rec.messages()); n != 2 {
		t.Errorf("%d messages; want the 2 birthday greetings", n)
	}
	// Again the same day: by this engine, by another engine on the same
	// database, and even with the day's run forgotten (the settings row
	// cleared): nobody enters twice.
	if n := h.runSchedules(time.Date(2026, 3, 10, 15, 0, 0, 0, beijing)); n != 0 {
		t.Errorf("second run the same day: %d entered; want 0", n)
	}
	other := journey.New(journey.Config{DB: h.db, Clock: h.clk, DBSlots: 1, BaseContext: t.Context(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Senders: h.rec.sender()})
	if n, err := other.RunSchedules(h.ctx); err != nil || n != 0 {
		t.Errorf("another engine the same day: RunSchedules = %d, %v; want 0, nil", n, err)
	}
	if err := h.db.Model(&model.Setting{}).Where("1 = 1").Update("value", "").Error; err != nil {
		t.Fatal(err)
	}
	if n := h.runSchedules(time.Date(2026, 3, 10, 16, 0, 0, 0, beijing)); n != 0 {
		t.Errorf("rerun with the day's claim cleared: %d entered; want 0 (the events are deduplicated)", n)
	}
	if diff := cmp.Diff(want, h.entered()); diff != "" {
		t.Fatalf("after the reruns (-want +got):\n%s", diff)
	}
	// The events are the manual enrollment's, by: schedule.
	var ev model.Event
	if err := h.db.Where("type = ?", events.JourneyEnroll).First(&ev).Error; err != nil {
		t.Fatal(err)
	}
	if ev.Source != (events.Engine{}).Name() || ev.Props["by"] != "schedule" || ev.Props["journey"] != "birthday" ||
		!strings.HasPrefix(ev.DedupeKey, "schedule:birthday:2026-03-10:") || ev.RoutedAt == nil {
		t.Errorf("event = %s from %s, props %v, dedupe key %q, routed %v; want a routed journey.enroll by schedule",
			ev.Type, ev.Source, ev.Props, ev.DedupeKey, ev.RoutedAt)
	}

	// The next day: tomorrow's birthday, at 09:00 and not at 00:30.
	if n := h.runSchedules(time.Date(2026, 3, 11, 0, 30, 0, 0, beijing)); n != 0 {
		t.Errorf("next day 00:30: %d entered; want 0", n)
	}
	if n := h.runSchedules(time.Date(2026, 3, 11, 9, 5, 0, 0, beijing)); n != 1 {
		t.Errorf("next day 09:05: %d entered; want 1", n)
	}
	// A year later, the same members again.
	if n := h.runSchedules(time.Date(2027, 3, 10, 9, 0, 0, 0, beijing)); n != 2 {
		t.Errorf("a year later: %d entered; want 2", n)
	}
	want = []string{"today", "rfc3339", "tomorrow", "today", "rfc3339"}
	if diff := cmp.Diff(want, h.entered()); diff != "" {
		t.Errorf("entered over the year (-want +got):\n%s", diff)
	}
}

// A day claimed by a process that died mid-run is run again once its lease
// has run out, and the members it had not reached yet enter.
func TestScheduleTriggerLeaseRunsOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(birthdayJourney)
	h.addMember("a", map[string]any{"birthday": "1990-03-10"})
	day := time.Date(2026, 3, 10, 9, 0, 0, 0, beijing)
	// Another process claimed the day at 09:00 and died.
	lease := day.Add(10 * time.Minute).Unix()
	if err := h.db.Create(&model.Setting{Key: "schedule:birthday", Value: "2026-03-10~" + strconv.FormatInt(lease, 10)}).Error; err != nil {
		t.Fatal(err)
	}
	if n := h.runSchedules(day.Add(5 * time.Minute)); n != 0 {
		t.Errorf("while the other's lease holds: %d entered; want 0", n)
	}
	if n := h.runSchedules(day.Add(11 * time.Minute)); n != 1 {
		t.Errorf("after the lease ran out: %d entered; want 1", n)
	}
}

// every: month enters the members whose day of the month is today's; on
// the last day of a month, those whose day the month lacks too.
func TestScheduleTriggerEveryMonth(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: monthly
trigger: { schedule: { attribute: joined, at: "10:00", every: month } }
steps:
  - { id: thanks, send: { channel: wechat.template, template_id: T1, data: { first: 感谢 } } }
`)
	h.addMember("on-15", map[string]any{"joined": "2024-01-15"})
	h.addMember("on-16", map[string]any{"joined": "2024-01-16"})
	h.addMember("on-30", map[string]any{"joined": "2025-07-30"})
	h.addMember("on-31", map[string]any{"joined": "2025-08-31"})
	h.runSchedules(time.Date(2026, 4, 15, 10, 0, 0, 0, beijing))
	h.runSchedules(time.Date(2026, 4, 30, 10, 0, 0, 0, beijing)) // April has no 31st
	h.runSchedules(time.Date(2026, 5, 16, 10, 0, 0, 0, beijing))
	h.runSchedules(time.Date(2026, 5, 30, 10, 0, 0, 0, beijing)) // May has
	want := []string{"on-15", "on-30", "on-31", "on-16", "on-30"}
	if diff := cmp.Diff(want, h.entered()); diff != "" {
		t.Errorf("entered (-want +got):\n%s", diff)
	}
}

// Without every the date itself must be today's; a trigger where filters
// the members found.
func TestScheduleTriggerExactDateAndWhere(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: renewal
trigger:
  schedule: { attribute: renewal_date, at: "08:30" }
  where: 'member.attrs.plan == "gold"'
steps:
  - { id: remind, send: { channel: wechat.template, template_id: T1, data: { first: 续费提醒 } } }
`)
	h.addMember("gold-today", map[string]any{"renewal_date": "2026-06-01", "plan": "gold"})
	h.addMember("silver-today", map[string]any{"renewal_date": "2026-06-01", "plan": "silver"})
	h.addMember("gold-last-year", map[string]any{"renewal_date": "2025-06-01", "plan": "gold"})
	h.addMember("gold-time", map[string]any{"renewal_date": "2026-06-01T23:00:00+08:00", "plan": "gold"})
	if n := h.runSchedules(time.Date(2026, 6, 1, 8, 30, 0, 0, beijing)); n != 2 {
		t.Errorf("%d entered; want 2", n)
	}
	h.runSchedules(time.Date(2027, 6, 1, 8, 30, 0, 0, beijing))
	if diff := cmp.Diff([]string{"gold-today", "gold-time"}, h.entered()); diff != "" {
		t.Errorf("entered (-want +got):\n%s", diff)
	}
}

// A paused schedule journey enters nobody (the day is not caught up
// after it resumes); the entry rules hold.
func TestScheduleTriggerPausedAndEntryRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(strings.Replace(birthdayJourney, "steps:", "entry: { once: true }\nsteps:", 1))
	h.addMember("a", map[string]any{"birthday": "1990-03-10"})
	if _, err := h.e.Pause(h.ctx, "birthday"); err != nil {
		t.Fatal(err)
	}
	h.e.InvalidateIndex()
	if n := h.runSchedules(time.Date(2026, 3, 10, 9, 0, 0, 0, beijing)); n != 0 {
		t.Errorf("paused: %d entered; want 0", n)
	}
	if _, err := h.e.Resume(h.ctx, "birthday"); err != nil {
		t.Fatal(err)
	}
	h.e.InvalidateIndex()
	if n := h.runSchedules(time.Date(2026, 3, 11, 9, 0, 0, 0, beijing)); n != 0 {
		t.Errorf("resumed the next day: %d entered; want 0 (yesterday is not caught up)", n)
	}
	h.runSchedules(time.Date(2027, 3, 10, 9, 0, 0, 0, beijing))
	h.runSchedules(time.Date(2028, 3, 10, 9, 0, 0, 0, beijing))
	if diff := cmp.Diff([]string{"a"}, h.entered()); diff != "" {
		t.Errorf("entered with entry once (-want +got):\n%s", diff)
	}
}

// A schedule trigger is checked when the journey is parsed.
func TestScheduleTriggerValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ trigger, want string }{
		{`{ schedule: { at: "09:00" } }`, "schedule.attribute is required"},
		{`{ schedule: { attribute: member.attrs.birthday, at: "09:00" } }`, `schedule.attribute: "member.attrs.birthday": name the attribute alone`},
		{`{ schedule: { attribute: birthday } }`, "schedule.at is required"},
		{`{ schedule: { attribute: birthday, at: "9am" } }`, `schedule.at: "9am": want a time of day HH:MM`},
		{`{ schedule: { attribute: birthday, at: "09:00", every: week } }`, `schedule.every: "week": want year`},
		{`{ schedule: { attribute: birthday, at: "09:00", offset: 1d } }`, `unknown field "offset"`},
		{`{ schedule: birthday }`, "schedule is a mapping"},
		{`{ schedule: { attribute: birthday, at: "09:00" }, event: order.paid }`, "needs exactly one of event, schedule, segment"},
	} {
		src := "key: k\ntrigger: " + tc.trigger + "\nsteps:\n  - { id: w, wait: 1h }\n"
		_, err := journey.Parse("k.yaml", []byte(src))
		if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), "k.yaml:2: trigger: "+tc.want) {
			t.Errorf("trigger %s: Parse = %v; want %q", tc.trigger, err, tc.want)
		}
	}
	c, err := journey.Parse("k.yaml", []byte("key: k\ntrigger: { schedule: { attribute: birthday, at: \"09:00\", every: year } }\nsteps:\n  - { id: w, wait: 1h }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := c.Schedule(); !ok || s.Attribute != "birthday" || s.At != "09:00" || s.Every != journey.EveryYear {
		t.Errorf("Schedule() = %+v, %v", s, ok)
	}
	if got, want := c.TriggerSummary(), "schedule birthday every year at 09:00 China time"; got != want {
		t.Errorf("TriggerSummary() = %q; want %q", got, want)
	}
}

// The SQL finding the day's members (and a segment's) is right on every database: SQLite
// always, PostgreSQL and MySQL when WEJOURNEY_TEST_DATABASE_URL (or
// WEJOURNEY_TEST_MYSQL_URL) names a server.
func TestScheduleTriggerDialects(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := openTestDB(t, dialect)
			clk := clock.NewSimulated(time.Date(2026, 2, 28, 9, 0, 0, 0, beijing))
			rec := &sendRecorder{}
			e := journey.New(journey.Config{DB: db, Clock: clk, BaseContext: t.Context(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Senders: rec.sender()})
			for _, src := range []string{birthdayJourney, strings.NewReplacer("key: birthday", "key: renewal",
				"attribute: birthday", "attribute: renewal_date", ", every: year", "").Replace(birthdayJourney),
				strings.Replace(cartJourney, "member.attrs.cart_value > 500", "member.attrs.vip == true", 1)} {
				c, err := journey.Parse("t.yaml", []byte(src))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.Publish(t.Context(), c, "test"); err != nil {
					t.Fatal(err)
				}
			}
			for openid, attrs := range map[string]map[string]any{
				"feb28":     {"birthday": "1990-02-28"},
				"feb29":     {"birthday": "1992-02-29"}, // 2026 has no 29 February
				"mar01":     {"birthday": "1990-03-01"},
				"renews":    {"renewal_date": "2026-02-28"},
				"renewed":   {"renewal_date": "2025-02-28"},
				"none":      nil,
				"number":    {"birthday": 228},
				"malformed": {"birthday": "02-28"},
				"vip":       {"vip": true},
			} {
				if err := db.Create(&model.Member{AppID: testAppID, OpenID: openid, Attrs: attrs}).Error; err != nil {
					t.Fatal(err)
				}
			}
			n, err := e.RunSchedules(t.Context())
			if err != nil || n != 3 {
				t.Fatalf("RunSchedules = %d, %v; want 3, nil", n, err)
			}
			if n, err := e.RunSchedules(t.Context()); err != nil || n != 0 {
				t.Errorf("again: RunSchedules = %d, %v; want 0, nil", n, err)
			}
			if n, err := e.RunSegments(t.Context()); err != nil || n != 1 {
				t.Errorf("RunSegments = %d, %v; want 1 (vip), nil", n, err)
			}
			var got []string
			if err := db.Table("enrollments").Joins("JOIN members ON members.id = enrollments.member_id").
				Pluck("members.open_id", &got).Error; err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if diff := cmp.Diff([]string{"feb28", "feb29", "renews", "vip"}, got); diff != "" {
				t.Errorf("enrolled (-want +got):\n%s", diff)
			}
		})
	}
}
