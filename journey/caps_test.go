package journey_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// campaign is a journey a brand event triggers: one marketing template
// message, then a tag.
func campaign(key, extra, send string) string {
	if send == "" {
		send = `{ channel: wechat.template, template_id: TPL_` + key + ` }`
	}
	return fmt.Sprintf(`
key: %s
trigger: { event: campaign.%s }
%s
steps:
  - { id: push, send: %s, next: mark }
  - { id: mark, update: { add_tags: [%s_done] } }
`, key, key, extra, send, key)
}

func TestFrequencyCapsAcrossJourneys(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	tests := []struct {
		name       string
		globalCaps string // WEJOURNEY_FREQUENCY_CAPS
		third      string // the extra keys of the third journey
		thirdSend  string // its send, when not a template
		follow     bool   // the member followed first (a welcome answers it)
		wantSent   int    // messages at once
		wantThird  visit  // the third journey's send
		wantDue    time.Duration
		wantLater  int // messages once the clock passed wantDue
	}{
		{name: "third marketing message of the day waits a day", globalCaps: "*=2/1d",
			wantSent: 2, wantThird: visit{"push", model.VisitScheduled, ""}, wantDue: day, wantLater: 3},
		{name: "on_cap skip passes the step without sending", globalCaps: "*=2/1d", third: "on_cap: skip",
			wantSent: 2, wantThird: visit{"push", model.VisitDone, "capped: frequency cap *=2/1d"}},
		{name: "a transactional message is exempt", globalCaps: "*=2/1d",
			thirdSend: `{ channel: wechat.template, template_id: TPL_RECEIPT, category: transactional }`,
			wantSent:  3, wantThird: visit{"push", model.VisitDone, "sent"}},
		{name: "a journey's own cap counts the other journeys' messages", third: "frequency_caps: [ { channel: wechat.template, max: 1, per: 7d } ]",
			wantSent: 2, wantThird: visit{"push", model.VisitScheduled, ""}, wantDue: 7 * day, wantLater: 3},
		{name: "a cap on another channel leaves templates alone", globalCaps: "sms=1/1d",
			wantSent: 3, wantThird: visit{"push", model.VisitDone, "sent"}},
		{name: "the welcome answering a follow goes, and counts", globalCaps: "*=2/1d", follow: true,
			wantSent: 2, wantThird: visit{"push", model.VisitScheduled, ""}, wantDue: day, wantLater: 3}, // b goes; c waits for a to leave the day
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, func(c *journey.Config) {
				caps, err := journey.ParseFrequencyCaps(tc.globalCaps)
				if err != nil {
					t.Fatal(err)
				}
				c.FrequencyCaps = caps
			})
			h.publish(`
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: 欢迎 } }
`)
			h.publish(campaign("a", "", ""))
			h.publish(campaign("b", "", ""))
			h.publish(campaign("c", tc.third, tc.thirdSend))
			if tc.follow {
				h.subscribe("o1", "store_1")
				h.drain()
			}
			start := h.clk.Now()
			for _, k := range []string{"a", "b", "c"} {
				// Later in the day each: the messages are far from the reply window.
				h.clk.Advance(2 * time.Minute)
				h.apiEvent("campaign."+k, "o1", nil)
				h.drain()
			}
			if n := len(h.rec.messages()); n != tc.wantSent {
				t.Errorf("%d messages sent; want %d", n, tc.wantSent)
			}
			var third model.StepVisit
			if err := h.db.Where("step_id = ? AND journey_id = (SELECT id FROM journeys WHERE key = ?)", "push", "c").
				First(&third).Error; err != nil {
				t.Fatal(err)
			}
			got := visit{third.StepID, third.Status, third.Outcome}
			if diff := cmp.Diff(tc.wantThird, got); diff != "" {
				t.Errorf("the third journey's send (-want +got):\n%s", diff)
			}
			if tc.wantDue == 0 {
				if tc.wantThird.Status == model.VisitDone && !strings.Contains(strings.Join(h.member("o1").Tags, ","), "c_done") {
					t.Errorf("member tags %v: the third journey did not go on after its send", h.member("o1").Tags)
				}
				return
			}
			// Due when the oldest counted message leaves the period.
			first := start.Add(2 * time.Minute)
			if tc.name == "a journey's own cap counts the other journeys' messages" {
				first = start.Add(4 * time.Minute) // max 1: the latest of the two
			}
			if tc.follow {
				first = start // the welcome, at the follow
			}
			if want := first.Add(tc.wantDue); third.DueAt.Sub(want).Abs() > time.Second {
				t.Errorf("held until %v; want %v", third.DueAt, want)
			}
			h.clk.Set(third.DueAt.Add(-time.Minute))
			h.drain()
			if n := len(h.rec.messages()); n != tc.wantSent {
				t.Errorf("a minute before the cap frees a slot: %d messages; want still %d", n, tc.wantSent)
			}
			h.clk.Set(third.DueAt.Add(time.Second))
			h.drain()
			if n := len(h.rec.messages()); n != tc.wantLater {
				t.Errorf("after the period: %d messages; want %d", n, tc.wantLater)
			}
		})
	}
}

func TestParseFrequencyCaps(t *testing.T) {
	t.Parallel()
	caps, err := journey.ParseFrequencyCaps(" *=2/1d, *=5/7d ,sms=1/12h")
	if err != nil {
		t.Fatal(err)
	}
	want := []journey.FrequencyCap{{"", 2, 24 * time.Hour}, {"", 5, 7 * 24 * time.Hour}, {"sms", 1, 12 * time.Hour}}
	if diff := cmp.Diff(want, caps); diff != "" {
		t.Errorf("caps (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"*=2", "*=x/1d", "*=2/soon", "sms:1/1d"} {
		if _, err := journey.ParseFrequencyCaps(bad); err == nil {
			t.Errorf("ParseFrequencyCaps(%q): no error", bad)
		}
	}
}

func TestEngineQuietHoursHoldEveryJourney(t *testing.T) {
	t.Parallel()
	cst := time.FixedZone("CST", 8*3600)
	now := time.Now().In(cst)
	end := now.Add(30 * time.Minute).Truncate(time.Minute)
	window := now.Add(-30*time.Minute).Format("15:04") + "-" + end.Format("15:04")
	tests := []struct {
		name, own string // the journey's quiet_hours
		wantSent  int
	}{
		{"the engine's window holds a journey without its own", "", 0},
		{"quiet_hours: off sends at any hour", `quiet_hours: "off"`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, func(c *journey.Config) { c.QuietHours = window })
			h.publish(campaign("a", tc.own, ""))
			h.apiEvent("campaign.a", "o1", nil)
			h.clk.Advance(2 * time.Minute) // past the reply window
			h.drain()
			if n := len(h.rec.messages()); n != tc.wantSent {
				t.Errorf("%d messages inside the engine's quiet hours %s; want %d", n, window, tc.wantSent)
			}
		})
	}
}
