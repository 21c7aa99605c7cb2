package journey_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

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
