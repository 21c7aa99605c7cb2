package journey_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

const testRunJourney = `
key: bind
trigger: { event: wechat.subscribe, where: 'event.scene startsWith "store_"' }
steps:
  - id: hello
    send: { channel: wechat.text, text: "欢迎 {{ .member.nickname }}，门店 {{ .event.scene }}" }
    next: pause
  - { id: pause, wait: 10m, next: ask }
  - id: ask
    send: { channel: wechat.template, template_id: TPL_BIND, data: { first: "绑定会员" }, fallback: sms }
    next: wait_bind
  - id: wait_bind
    wait_for: { event: form.submitted, where: 'event.form == "bind"', timeout: 48h }
    next: thanks
    on_timeout: remind
  - { id: remind, send: { channel: sms, template: SMS_1, params: { name: "{{ .member.nickname }}" } } }
  - id: thanks
    branch:
      - { when: '"vip" in member.tags', next: vip }
      - { next: tag }
  - { id: tag, update: { add_tags: [bound] }, next: vip }
  - { id: vip, send: { channel: wechat.text, text: "{{ .member.tags }}" } }
`

func TestTestRunWalksWithoutSending(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		later   []*model.Event
		want    []journey.TestStep
		wantEnd string
	}{
		{name: "no bind form: the wait times out to the SMS reminder", wantEnd: journey.ReasonCompleted, want: []journey.TestStep{
			{Step: "hello", Kind: "send", Outcome: "rendered", Note: "not sent (test run)", Message: &journey.TestMessage{Channel: "wechat.text", Category: "marketing", Text: "欢迎 小王，门店 store_001"}},
			{Step: "pause", Kind: "wait", Outcome: "waited", Note: "waited 10m0s: compressed"},
			{Step: "ask", Kind: "send", Outcome: "rendered", Note: "not sent (test run)", Message: &journey.TestMessage{Channel: "wechat.template", Category: "marketing", TemplateID: "TPL_BIND", Data: map[string]string{"first": "绑定会员"}, Fallback: []string{"sms"}}},
			{Step: "wait_bind", Kind: "wait_for", Outcome: "timeout", Note: "no form.submitted given: timed out after 48h0m0s (compressed)"},
			{Step: "remind", Kind: "send", Outcome: "rendered", Note: "not sent (test run)", Message: &journey.TestMessage{Channel: "sms", Category: "marketing", Template: "SMS_1", Data: map[string]string{"name": "小王"}}},
		}},
		{name: "the bind form arrives: branch, update, and the member as updated", wantEnd: journey.ReasonCompleted,
			later: []*model.Event{
				{Type: "form.submitted", Props: map[string]any{"form": "survey"}}, // another form: not this wait's
				{Type: "form.submitted", Props: map[string]any{"form": "bind"}},
			},
			want: []journey.TestStep{
				{Step: "hello", Kind: "send", Outcome: "rendered", Note: "not sent (test run)", Message: &journey.TestMessage{Channel: "wechat.text", Category: "marketing", Text: "欢迎 小王，门店 store_001"}},
				{Step: "pause", Kind: "wait", Outcome: "waited", Note: "waited 10m0s: compressed"},
				{Step: "ask", Kind: "send", Outcome: "rendered", Note: "not sent (test run)", Message: &journey.TestMessage{Channel: "wechat.template", Category: "marketing", TemplateID: "TPL_BIND", Data: map[string]string{"first": "绑定会员"}, Fallback: []string{"sms"}}},
				{Step: "wait_bind", Kind: "wait_for", Outcome: "matched", Note: "the given form.submitted arrived"},
				{Step: "thanks", Kind: "branch", Outcome: "branch:1"},
				{Step: "tag", Kind: "update", Outcome: "updated", Note: "applied to a copy of the member"},
				{Step: "vip", Kind: "send", Outcome: "rendered", Note: "not sent (test run)", Message: &journey.TestMessage{Channel: "wechat.text", Category: "marketing", Text: "[regular bound]"}},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.publish(testRunJourney)
			h.subscribe("o1", "mall") // not a store: enters nothing
			m := h.member("o1")
			m.Nickname, m.Tags = "小王", []string{"regular"}
			if err := h.db.Save(&m).Error; err != nil {
				t.Fatal(err)
			}
			before := h.count(&model.Delivery{})
			run, err := h.e.TestRun(h.ctx, c, 1, &m, journey.TestRunOptions{
				Event: &model.Event{Type: "wechat.subscribe", Props: map[string]any{"scene": "store_001"}},
				Later: tc.later,
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, run.Steps); diff != "" {
				t.Errorf("path (-want +got):\n%s", diff)
			}
			if run.End != tc.wantEnd || !run.Entered {
				t.Errorf("end %q, entered %v; want %q, true", run.End, run.Entered, tc.wantEnd)
			}
			if n := len(h.rec.messages()); n != 0 {
				t.Errorf("a test run sent %d messages", n)
			}
			if n := h.count(&model.Delivery{}); n != before {
				t.Errorf("a test run recorded %d deliveries", n-before)
			}
			if got := h.member("o1").Tags; !cmp.Equal(got, []string{"regular"}) {
				t.Errorf("the member's tags became %v: a test run changed the member", got)
			}
			if n := h.count(&model.Enrollment{}); n != 0 {
				t.Errorf("%d enrollments: a test run enrolled the member", n)
			}
		})
	}
}

func TestTestRunReportsATriggerThatWouldNotEnter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.publish(testRunJourney)
	h.subscribe("o1", "mall")
	m := h.member("o1")
	run, err := h.e.TestRun(h.ctx, c, 1, &m, journey.TestRunOptions{
		Event: &model.Event{Type: "wechat.subscribe", Props: map[string]any{"scene": "mall"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if run.Entered {
		t.Errorf("a follow from the mall would enter a journey for store_ scenes")
	}
	if len(run.Steps) == 0 {
		t.Errorf("no path walked: the operator still wants to see it")
	}
}

// A test run walks the new waits as the engine would: until a time of day
// or a member's date (missing, past), and a wait_for that matches the
// entering event's cart.
func TestTestRunWaitsUntilAndMatch(t *testing.T) {
	t.Parallel()
	const src = `
key: renewal
trigger: { event: cart.abandoned }
steps:
  - { id: morning, wait: { until: "09:00" }, next: renewal }
  - { id: renewal, wait: { until_attribute: renewal_date, offset: -3d, at: "10:00" }, next: order }
  - id: order
    wait_for: { event: order.paid, match: cart_id, timeout: 1h, within: 10m }
    next: thanks
  - { id: thanks, update: { add_tags: [bought] } }
`
	tests := []struct {
		name  string
		attrs map[string]any
		later []*model.Event
		want  []journey.TestStep
		end   string
	}{
		{
			name:  "the date ahead, the order of this cart after another's",
			attrs: map[string]any{"renewal_date": "2026-12-10"},
			later: []*model.Event{
				{Type: "order.paid", Props: map[string]any{"cart_id": "c2"}},
				{Type: "order.paid", Props: map[string]any{"cart_id": "c1"}},
			},
			want: []journey.TestStep{
				{Step: "morning", Kind: "wait", Outcome: "waited", Note: "waited until 2026-12-02 09:00 China time: compressed"},
				{Step: "renewal", Kind: "wait", Outcome: "waited", Note: "waited until 2026-12-07 10:00 China time: compressed"},
				{Step: "order", Kind: "wait_for", Outcome: "matched", Note: "the given order.paid arrived"},
				{Step: "thanks", Kind: "update", Outcome: "updated", Note: "applied to a copy of the member"},
			},
			end: journey.ReasonCompleted,
		},
		{
			name:  "no date, and only another cart's order",
			later: []*model.Event{{Type: "order.paid", Props: map[string]any{"cart_id": "c2"}}},
			want: []journey.TestStep{
				{Step: "morning", Kind: "wait", Outcome: "waited", Note: "waited until 2026-12-02 09:00 China time: compressed"},
				{Step: "renewal", Kind: "wait", Outcome: journey.OutcomeAttributeMissing, Note: "did not wait: the member has no attribute renewal_date"},
				{Step: "order", Kind: "wait_for", Outcome: "timeout", Note: "no order.paid given: timed out after 1h0m0s and the 10m0s grace for late events (compressed)"},
			},
			end: journey.ReasonTimeout,
		},
		{
			name:  "the date past",
			attrs: map[string]any{"renewal_date": "2026-12-02"},
			want: []journey.TestStep{
				{Step: "morning", Kind: "wait", Outcome: "waited", Note: "waited until 2026-12-02 09:00 China time: compressed"},
				{Step: "renewal", Kind: "wait", Outcome: journey.OutcomeAlreadyPast, Note: "did not wait: 2026-11-29 10:00 China time had passed"},
				{Step: "order", Kind: "wait_for", Outcome: "timeout", Note: "no order.paid given: timed out after 1h0m0s and the 10m0s grace for late events (compressed)"},
			},
			end: journey.ReasonTimeout,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.clk.Set(cst(12, 1, 12, 0))
			c := h.publish(src)
			m := model.Member{ID: 1, Attrs: tc.attrs}
			run, err := h.e.TestRun(h.ctx, c, 1, &m, journey.TestRunOptions{
				Event: &model.Event{Type: "cart.abandoned", Props: map[string]any{"cart_id": "c1"}},
				Later: tc.later,
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, run.Steps); diff != "" {
				t.Errorf("path (-want +got):\n%s", diff)
			}
			if run.End != tc.end {
				t.Errorf("end %q; want %q", run.End, tc.end)
			}
		})
	}
}

// A test run that sends delivers each message to a tester as a real run
// would try it — fallback channels while unreachable, opt-outs honoured —
// and records nothing; it refuses a member who is not a tester.
func TestTestRunSendsToATester(t *testing.T) {
	t.Parallel()
	unreachable := &channels.Error{Class: channels.ErrUnreachable, Code: 43004, Msg: "require subscribe"}
	tests := []struct {
		name     string
		tags     []string
		optedOut bool
		wantErr  error
		want     []string // step: outcome [channel sent|not sent ...]
		wantEnd  string
		handed   []string // the channels handed a message, in order
	}{
		{name: "a tester: the template's fallback SMS, then the reminder", tags: []string{model.TesterTag},
			want: []string{"hello: sent [wechat.text sent]", "pause: waited []", "ask: fallback:sms [wechat.template not sent sms sent]",
				"wait_bind: timeout []", "remind: sent [sms sent]"},
			wantEnd: journey.ReasonCompleted, handed: []string{"wechat.text", "wechat.template", "sms", "sms"}},
		{name: "a tester who opted out of SMS: no marketing SMS, the path ends unreachable", tags: []string{model.TesterTag}, optedOut: true,
			want:    []string{"hello: sent [wechat.text sent]", "pause: waited []", "ask: unreachable [wechat.template not sent sms not sent]"},
			wantEnd: journey.ReasonUnreachable, handed: []string{"wechat.text", "wechat.template"}},
		{name: "not a tester: refused, nothing sent", tags: []string{"vip"}, wantErr: journey.ErrNotTester},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.publish(testRunJourney)
			h.subscribe("o1", "mall")
			m := h.member("o1")
			m.Nickname, m.Tags, m.Phone = "小王", tc.tags, "13800000000"
			if tc.optedOut {
				m.OptOut("sms", h.clk.Now())
			}
			if err := h.db.Save(&m).Error; err != nil {
				t.Fatal(err)
			}
			h.rec.fail("wechat.template", unreachable)
			run, err := h.e.TestRun(h.ctx, c, 1, &m, journey.TestRunOptions{
				Event: &model.Event{Type: "wechat.subscribe", Props: map[string]any{"scene": "store_001"}},
				Send:  true,
			})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || len(h.rec.messages()) != 0 {
					t.Fatalf("err %v, %d messages; want %v and none", err, len(h.rec.messages()), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range run.Steps {
				var sends []string
				for _, d := range s.Sends {
					sends = append(sends, d.Channel+map[bool]string{true: " sent", false: " not sent"}[d.Sent])
				}
				got = append(got, fmt.Sprintf("%s: %s %v", s.Step, s.Outcome, sends))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" || run.End != tc.wantEnd || !run.Send {
				t.Errorf("path (-want +got):\n%s\nend %q, want %q", diff, run.End, tc.wantEnd)
			}
			var handed []string
			for _, msg := range h.rec.messages() {
				handed = append(handed, msg.Channel)
				if msg.To.MemberID != m.ID || msg.DeliveryID != 0 || !strings.HasPrefix(msg.IdempotencyKey, "test-") {
					t.Errorf("message %+v: want member %d, no delivery, a test- key", msg, m.ID)
				}
			}
			if !cmp.Equal(handed, tc.handed) {
				t.Errorf("handed to %v, want %v", handed, tc.handed)
			}
			if tc.optedOut && !strings.Contains(run.Steps[2].Sends[1].Error, "opted out") {
				t.Errorf("the SMS refusal says %q", run.Steps[2].Sends[1].Error)
			}
			for _, table := range []any{&model.Delivery{}, &model.Enrollment{}, &model.StepVisit{}} {
				if n := h.count(table); n != 0 {
					t.Errorf("%d %T recorded by a test run", n, table)
				}
			}
		})
	}
}
