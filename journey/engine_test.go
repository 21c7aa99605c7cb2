package journey_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

func TestIngestDedupe(t *testing.T) {
	t.Parallel()
	type counts struct{ Accepted, Duplicates int }
	tests := []struct {
		name     string
		calls    [][]string // dedupe keys, one slice per Ingest call
		want     []counts   // per call
		wantRows int64
	}{
		{"same key in two calls", [][]string{{"wx-1"}, {"wx-1"}}, []counts{{1, 0}, {0, 1}}, 1},
		{"same key twice in one call", [][]string{{"wx-1", "wx-1"}}, []counts{{1, 1}}, 1},
		{"different keys", [][]string{{"wx-1", "wx-2"}, {"wx-3"}}, []counts{{2, 0}, {1, 0}}, 3},
		{"repeat among new ones", [][]string{{"wx-1"}, {"wx-2", "wx-1", "wx-3"}}, []counts{{1, 0}, {2, 1}}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var got []counts
			for _, keys := range tc.calls {
				var evs []*model.Event
				for _, k := range keys {
					ev := wechatEvent("wechat.subscribe", "o1", map[string]any{"scene": "store_1"})
					ev.DedupeKey = k
					evs = append(evs, ev)
				}
				acc, dup, err := h.ing.Ingest(h.ctx, evs...)
				if err != nil {
					t.Fatalf("Ingest: %v", err)
				}
				got = append(got, counts{acc, dup})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Ingest counts mismatch (-want +got):\n%s", diff)
			}
			if n := h.count(&model.Event{}); n != tc.wantRows {
				t.Errorf("%d event rows stored; want %d", n, tc.wantRows)
			}
		})
	}
}

const storeWelcome = `
key: store-welcome
trigger:
  event: wechat.subscribe
  where: 'event.scene startsWith "store_"'
steps:
  - { id: hold, wait: 1h }
`

func TestRouteTrigger(t *testing.T) {
	t.Parallel()
	type ev struct{ typ, scene string }
	type member struct {
		AppID, OpenID         string
		Subscribed            bool
		FirstScene, LastScene string
	}
	tests := []struct {
		name       string
		events     []ev
		want       []enrollment
		wantMember member
	}{
		{
			name:       "store scene enters",
			events:     []ev{{"wechat.subscribe", "store_001"}},
			want:       []enrollment{{"o1", model.EnrollmentActive, "hold", ""}},
			wantMember: member{testAppID, "o1", true, "store_001", "store_001"},
		},
		{
			name:       "other scene does not enter",
			events:     []ev{{"wechat.subscribe", "event_9"}},
			wantMember: member{testAppID, "o1", true, "event_9", "event_9"},
		},
		{
			name:       "no scene does not enter",
			events:     []ev{{"wechat.subscribe", ""}},
			wantMember: member{testAppID, "o1", true, "", ""},
		},
		{
			name:       "scene merely containing store_ does not enter",
			events:     []ev{{"wechat.subscribe", "qr_store_001"}},
			wantMember: member{testAppID, "o1", true, "qr_store_001", "qr_store_001"},
		},
		{
			name:       "scan of a store code is not a subscribe",
			events:     []ev{{"wechat.scan", "store_002"}},
			wantMember: member{testAppID, "o1", true, "", "store_002"},
		},
		{
			name:       "first scene is kept, last scene follows",
			events:     []ev{{"wechat.subscribe", "store_001"}, {"wechat.unsubscribe", ""}, {"wechat.subscribe", "event_9"}},
			want:       []enrollment{{"o1", model.EnrollmentActive, "hold", ""}},
			wantMember: member{testAppID, "o1", true, "store_001", "event_9"},
		},
		{
			name:       "unsubscribe clears subscribed",
			events:     []ev{{"wechat.subscribe", "event_9"}, {"wechat.unsubscribe", ""}},
			wantMember: member{testAppID, "o1", false, "event_9", "event_9"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(storeWelcome)
			var ids []int64
			for _, e := range tc.events {
				var props map[string]any
				if e.scene != "" {
					props = map[string]any{"scene": e.scene}
				}
				ids = append(ids, h.route(wechatEvent(e.typ, "o1", props)))
			}
			if diff := cmp.Diff(tc.want, h.enrollments()); diff != "" {
				t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
			}
			m := h.member("o1")
			if diff := cmp.Diff(tc.wantMember, member{m.AppID, m.OpenID, m.Subscribed, m.FirstScene, m.LastScene}); diff != "" {
				t.Errorf("member mismatch (-want +got):\n%s", diff)
			}
			if n := h.count(&model.Member{}); n != 1 {
				t.Errorf("%d members; want 1 (every event names the same openid)", n)
			}
			for _, id := range ids {
				var e model.Event
				if err := h.db.First(&e, id).Error; err != nil {
					t.Fatal(err)
				}
				if e.RoutedAt == nil || e.MemberID == nil || *e.MemberID != m.ID {
					t.Errorf("event %d: routed_at %v, member_id %v; want routed and linked to member %d", id, e.RoutedAt, e.MemberID, m.ID)
				}
			}
		})
	}
}

func TestRouteIsOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(storeWelcome)
	id := h.ingest(wechatEvent("wechat.subscribe", "o1", map[string]any{"scene": "store_1"}))
	for range 3 {
		if err := h.e.Route(h.ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	h.sweep()
	want := []enrollment{{"o1", model.EnrollmentActive, "hold", ""}}
	if diff := cmp.Diff(want, h.enrollments()); diff != "" {
		t.Errorf("enrollments after routing one event 3 times and sweeping (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]visit{{"hold", model.VisitWaiting, ""}}, h.visits()); diff != "" {
		t.Errorf("visits mismatch (-want +got):\n%s", diff)
	}
}

func TestEntryRules(t *testing.T) {
	t.Parallel()
	const src = `
key: entry
trigger: { event: wechat.subscribe }
entry: %s
exit: [ { event: wechat.unsubscribe } ]
steps:
  - { id: hold, wait_for: { event: form.submitted, timeout: 1h } }
`
	tests := []struct {
		name  string
		entry string
		// ops: subscribe, submit (completes the active enrollment),
		// unsubscribe (exits it), age (moves every entry back 2 hours).
		ops  []string
		want []string // enrollment statuses, oldest first
	}{
		{"default: never twice while active", "{}", []string{"subscribe", "subscribe"}, []string{"active"}},
		{"default: re-enters after completing", "{}", []string{"subscribe", "submit", "subscribe"}, []string{"completed", "active"}},
		{"default: re-enters after exiting", "{}", []string{"subscribe", "unsubscribe", "subscribe"}, []string{"exited", "active"}},
		{"default: many passes", "{}", []string{"subscribe", "submit", "subscribe", "unsubscribe", "subscribe", "subscribe"}, []string{"completed", "exited", "active"}},
		{"once: never twice while active", "{ once: true }", []string{"subscribe", "subscribe"}, []string{"active"}},
		{"once: no re-entry after completing", "{ once: true }", []string{"subscribe", "submit", "subscribe"}, []string{"completed"}},
		{"once: no re-entry after exiting, even much later", "{ once: true }", []string{"subscribe", "unsubscribe", "age", "subscribe"}, []string{"exited"}},
		{"cooldown: no re-entry within it", "{ cooldown: 1h }", []string{"subscribe", "submit", "subscribe"}, []string{"completed"}},
		{"cooldown: re-entry after it", "{ cooldown: 1h }", []string{"subscribe", "submit", "subscribe", "age", "subscribe"}, []string{"completed", "active"}},
		{"cooldown: never twice while active, even after it", "{ cooldown: 1h }", []string{"subscribe", "age", "subscribe"}, []string{"active"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(fmt.Sprintf(src, tc.entry))
			for _, op := range tc.ops {
				switch op {
				case "subscribe":
					h.subscribe("o1", "store_1")
				case "submit":
					h.apiEvent("form.submitted", "o1", map[string]any{"form": "bind"})
				case "unsubscribe":
					h.unsubscribe("o1")
				case "age":
					if err := h.db.Model(&model.Enrollment{}).Where("1 = 1").
						Update("entered_at", h.clk.Now().Add(-2*time.Hour)).Error; err != nil {
						t.Fatal(err)
					}
				default:
					t.Fatalf("unknown op %q", op)
				}
			}
			var got []string
			for _, e := range h.enrollments() {
				got = append(got, e.Status)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("enrollment statuses after %v (-want +got):\n%s", tc.ops, diff)
			}
		})
	}
}

func TestSendStep(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		send string
		want sent
	}{
		{
			name: "wechat.text",
			send: `{ channel: wechat.text, text: "欢迎来到 {{ .event.scene }}! 你的 openid 是 {{ .member.openid }}" }`,
			want: sent{Channel: channels.WeChatText, OpenID: "o1", Text: "欢迎来到 store_001! 你的 openid 是 o1"},
		},
		{
			name: "wechat.template",
			send: `{ channel: wechat.template, template_id: TPL_1, url: "https://example.com/bind?o={{ .member.openid }}",
			         data: { first: "绑定会员领券", keyword1: "{{ .member.nickname }}", keyword2: "{{ .event.scene }}",
			                 keyword3: "{{ .member.attrs.level }}", keyword4: "{{ .member.attrs.missing }}" } }`,
			want: sent{Channel: channels.WeChatTemplate, OpenID: "o1", TemplateID: "TPL_1", URL: "https://example.com/bind?o=o1",
				Data: map[string]string{"first": "绑定会员领券", "keyword1": "小明", "keyword2": "store_001", "keyword3": "3", "keyword4": ""}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(`
key: send
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: ` + tc.send + ` }
`)
			// The member is known before they follow: nickname and level from the brand.
			h.apiEvent("member.updated", "o1", map[string]any{"nickname": "小明", "level": 3})
			h.subscribe("o1", "store_001")
			h.drain()

			if diff := cmp.Diff([]sent{tc.want}, h.rec.sent()); diff != "" {
				t.Errorf("sent messages mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]delivery{{"hello", tc.want.Channel, "o1", model.DeliverySent}}, h.deliveries()); diff != "" {
				t.Errorf("deliveries mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]visit{{"hello", model.VisitDone, model.DeliverySent}}, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}}, h.enrollments()); diff != "" {
				t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
			}
			var d model.Delivery
			if err := h.db.First(&d).Error; err != nil {
				t.Fatal(err)
			}
			msg := h.rec.messages()[0]
			if msg.DeliveryID != d.ID || msg.IdempotencyKey != fmt.Sprintf("wj-%d", d.ID) || d.ProviderID != "msg-1" || d.SentAt == nil {
				t.Errorf("message DeliveryID %d, IdempotencyKey %q; delivery row id %d, provider id %q, sent_at %v",
					msg.DeliveryID, msg.IdempotencyKey, d.ID, d.ProviderID, d.SentAt)
			}

			// Running the same visit again, or sweeping, sends nothing more.
			v := h.visitOf("hello")
			for range 3 {
				h.runStep(v.ID)
			}
			h.sweep()
			if n := len(h.rec.messages()); n != 1 {
				t.Errorf("%d messages sent after re-running the visit; want 1", n)
			}
			if n := h.count(&model.Delivery{}); n != 1 {
				t.Errorf("%d delivery rows; want 1", n)
			}
		})
	}
}

func TestExit(t *testing.T) {
	t.Parallel()
	const src = `
key: exit
trigger: { event: wechat.subscribe }
exit:
  - event: wechat.unsubscribe
  - event: member.updated
    where: 'event.phone == "13800000000"'
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: pause }
  - { id: pause, wait: 1s, next: followup }
  - { id: followup, webhook: { url: "https://crm.example.com/followup" } }
`
	hello := sent{Channel: channels.WeChatText, OpenID: "o1", Text: "hi"}
	followup := sent{Channel: channels.Webhook, OpenID: "o1", URL: "https://crm.example.com/followup"}
	waiting := []visit{{"hello", model.VisitDone, "sent"}, {"pause", model.VisitWaiting, ""}}
	tests := []struct {
		name       string
		event      func(h *harness)
		wantNow    []visit // right after the event
		wantEnr    []enrollment
		wantVisits []visit
		wantSent   []sent
	}{
		{
			name:       "unsubscribe during the wait",
			event:      func(h *harness) { h.unsubscribe("o1") },
			wantNow:    []visit{{"hello", model.VisitDone, "sent"}, {"pause", model.VisitCancelled, "exit:wechat.unsubscribe"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentExited, "pause", "exit:wechat.unsubscribe"}},
			wantVisits: []visit{{"hello", model.VisitDone, "sent"}, {"pause", model.VisitCancelled, "exit:wechat.unsubscribe"}},
			wantSent:   []sent{hello},
		},
		{
			name:       "exit rule whose where holds",
			event:      func(h *harness) { h.apiEvent("member.updated", "o1", map[string]any{"phone": "13800000000"}) },
			wantNow:    []visit{{"hello", model.VisitDone, "sent"}, {"pause", model.VisitCancelled, "exit:member.updated"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentExited, "pause", "exit:member.updated"}},
			wantVisits: []visit{{"hello", model.VisitDone, "sent"}, {"pause", model.VisitCancelled, "exit:member.updated"}},
			wantSent:   []sent{hello},
		},
		{
			name:       "exit rule whose where does not hold",
			event:      func(h *harness) { h.apiEvent("member.updated", "o1", map[string]any{"nickname": "小明"}) },
			wantNow:    waiting,
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "followup", journey.ReasonCompleted}},
			wantVisits: []visit{{"hello", model.VisitDone, "sent"}, {"pause", model.VisitDone, "waited"}, {"followup", model.VisitDone, "sent"}},
			wantSent:   []sent{hello, followup},
		},
		{
			name:       "another member unsubscribing",
			event:      func(h *harness) { h.unsubscribe("o2") },
			wantNow:    waiting,
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "followup", journey.ReasonCompleted}},
			wantVisits: []visit{{"hello", model.VisitDone, "sent"}, {"pause", model.VisitDone, "waited"}, {"followup", model.VisitDone, "sent"}},
			wantSent:   []sent{hello, followup},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // the cases that do not exit wait a second
			h := newHarness(t)
			h.publish(src)
			h.subscribe("o1", "store_1")
			h.drain()
			if diff := cmp.Diff(waiting, h.visits()); diff != "" {
				t.Fatalf("visits before the event (-want +got):\n%s", diff)
			}
			tc.event(h)
			if diff := cmp.Diff(tc.wantNow, h.visits()); diff != "" {
				t.Errorf("visits right after the event (-want +got):\n%s", diff)
			}
			// Once the 1 s wait is over, running it either moves on or,
			// after an exit, does nothing.
			h.runWhenDue("pause")
			h.drain()
			if diff := cmp.Diff(tc.wantEnr, h.enrollments()); diff != "" {
				t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantVisits, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSent, h.rec.sent()); diff != "" {
				t.Errorf("sent messages mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnreachableMember(t *testing.T) {
	t.Parallel()
	const phone = "13800000000"
	tests := []struct {
		name       string
		steps      string
		before     func(h *harness) // events before the trigger
		wantSent   []sent
		wantVisits []visit
		wantEnr    []enrollment
		wantDeliv  []delivery
		// unknown: the member was never seen following: WeChat is asked and
		// answers 43004 (the member does not follow), which settles it.
		unknown bool
	}{
		{
			name:       "never followed, no fallback",
			steps:      `- { id: hello, send: { channel: wechat.text, text: hi } }`,
			unknown:    true,
			wantSent:   []sent{{Channel: channels.WeChatText, OpenID: "o1", Phone: phone, Text: "hi"}},
			wantVisits: []visit{{"hello", model.VisitDone, journey.ReasonUnreachable}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentFailed, "hello", journey.ReasonUnreachable}},
			wantDeliv:  []delivery{{"hello", channels.WeChatText, "o1", model.DeliveryFailed}},
		},
		{
			name:  "unfollowed, no fallback",
			steps: `- { id: hello, send: { channel: wechat.template, template_id: T1 } }`,
			before: func(h *harness) {
				h.subscribe("o1", "store_1")
				h.unsubscribe("o1")
			},
			wantVisits: []visit{{"hello", model.VisitDone, journey.ReasonUnreachable}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentFailed, "hello", journey.ReasonUnreachable}},
			wantDeliv:  []delivery{{"hello", channels.WeChatTemplate, "o1", model.DeliveryFailed}},
		},
		{
			name: "fallback step",
			steps: `- { id: hello, send: { channel: wechat.text, text: hi, fallback: by_sms }, next: done }
  - { id: by_sms, send: { channel: sms, template: SMS_1, params: { order: "{{ .event.order }}" } } }
  - { id: done, update: { add_tags: [greeted] } }`,
			unknown: true,
			wantSent: []sent{{Channel: channels.WeChatText, OpenID: "o1", Phone: phone, Text: "hi"},
				{Channel: channels.SMS, OpenID: "o1", Phone: phone, Template: "SMS_1", Data: map[string]string{"order": "A-1"}}},
			wantVisits: []visit{{"hello", model.VisitDone, "fallback:by_sms"}, {"by_sms", model.VisitDone, "sent"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "by_sms", journey.ReasonCompleted}},
			wantDeliv:  []delivery{{"hello", channels.WeChatText, "o1", model.DeliveryFailed}, {"by_sms", channels.SMS, phone, model.DeliverySent}},
		},
		{
			name:    "fallback channel",
			steps:   `- { id: hello, send: { channel: wechat.text, text: "order {{ .event.order }}", fallback: sms } }`,
			unknown: true,
			wantSent: []sent{{Channel: channels.WeChatText, OpenID: "o1", Phone: phone, Text: "order A-1"},
				{Channel: channels.SMS, OpenID: "o1", Phone: phone, Text: "order A-1"}},
			wantVisits: []visit{{"hello", model.VisitDone, "fallback:sms"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantDeliv:  []delivery{{"hello", channels.WeChatText, "o1", model.DeliveryFailed}, {"hello", channels.SMS, phone, model.DeliverySent}},
		},
		{
			name:       "followed: no fallback needed",
			steps:      `- { id: hello, send: { channel: wechat.text, text: hi, fallback: sms } }`,
			before:     func(h *harness) { h.subscribe("o1", "store_1") },
			wantSent:   []sent{{Channel: channels.WeChatText, OpenID: "o1", Phone: phone, Text: "hi"}},
			wantVisits: []visit{{"hello", model.VisitDone, "sent"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}},
			wantDeliv:  []delivery{{"hello", channels.WeChatText, "o1", model.DeliverySent}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(`
key: order
trigger: { event: order.paid }
steps:
  ` + tc.steps + `
`)
			if tc.before != nil {
				tc.before(h)
			}
			if tc.unknown {
				h.rec.fail(channels.WeChatText+"/o1", &channels.Error{Class: channels.ErrUnreachable, Code: 43004, Msg: "require subscribe"})
			}
			h.route(&model.Event{Type: "order.paid", Source: "api",
				Member: model.MemberRef{AppID: testAppID, OpenID: "o1", Phone: phone}, Props: map[string]any{"order": "A-1"}})
			h.drain()
			if diff := cmp.Diff(tc.wantSent, h.rec.sent()); diff != "" {
				t.Errorf("sent messages mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantVisits, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantEnr, h.enrollments()); diff != "" {
				t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDeliv, h.deliveries()); diff != "" {
				t.Errorf("deliveries mismatch (-want +got):\n%s", diff)
			}
			var m model.Member
			if err := h.db.First(&m).Error; err != nil {
				t.Fatal(err)
			}
			if tc.wantDeliv[0].Status == model.DeliveryFailed && m.Subscription(testAppID) != model.SubscriptionUnsubscribed {
				t.Errorf("after WeChat's 43004 the member's subscription is %q; want unsubscribed", m.Subscription(testAppID))
			}
			if tc.unknown {
				// Settled: the next WeChat message is not attempted.
				n := len(h.rec.messages())
				h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{AppID: testAppID, OpenID: "o1"}, Props: map[string]any{"order": "A-2"}})
				h.drain()
				for _, msg := range h.rec.messages()[n:] {
					if msg.Channel == channels.WeChatText {
						t.Errorf("a WeChat message was attempted again after 43004 settled the member as unsubscribed")
					}
				}
			}
		})
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	const src = `
key: bind
trigger: { event: wechat.subscribe }
steps:
  - id: ask
    wait_for: { event: form.submitted, where: 'event.form == "bind"', timeout: %s }
    next: thanks
    on_timeout: nudge
  - { id: thanks, update: { add_tags: [bound] } }
  - { id: nudge, update: { add_tags: [nudged] } }
`
	type ev struct{ openid, typ, form string }
	tests := []struct {
		name       string
		timeout    string
		events     []ev
		wantVisits []visit
		wantEnr    []enrollment
		wantTags   []string
	}{
		{
			name:       "matching event resumes to next",
			timeout:    "1h",
			events:     []ev{{"o1", "form.submitted", "bind"}},
			wantVisits: []visit{{"ask", model.VisitDone, "matched"}, {"thanks", model.VisitDone, "updated"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "thanks", journey.ReasonCompleted}},
			wantTags:   []string{"bound"},
		},
		{
			name:       "second matching event changes nothing",
			timeout:    "1h",
			events:     []ev{{"o1", "form.submitted", "bind"}, {"o1", "form.submitted", "bind"}},
			wantVisits: []visit{{"ask", model.VisitDone, "matched"}, {"thanks", model.VisitDone, "updated"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "thanks", journey.ReasonCompleted}},
			wantTags:   []string{"bound"},
		},
		{
			name:       "where does not hold: keeps waiting",
			timeout:    "1h",
			events:     []ev{{"o1", "form.submitted", "survey"}},
			wantVisits: []visit{{"ask", model.VisitWaiting, ""}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentActive, "ask", ""}},
		},
		{
			name:       "another event type: keeps waiting",
			timeout:    "1h",
			events:     []ev{{"o1", "form.viewed", "bind"}},
			wantVisits: []visit{{"ask", model.VisitWaiting, ""}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentActive, "ask", ""}},
		},
		{
			name:       "another member's event: keeps waiting",
			timeout:    "1h",
			events:     []ev{{"o2", "form.submitted", "bind"}},
			wantVisits: []visit{{"ask", model.VisitWaiting, ""}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentActive, "ask", ""}},
		},
		{
			name:       "timeout goes to on_timeout",
			timeout:    "1s",
			wantVisits: []visit{{"ask", model.VisitDone, "timeout"}, {"nudge", model.VisitDone, "updated"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "nudge", journey.ReasonCompleted}},
			wantTags:   []string{"nudged"},
		},
		{
			name:       "timeout after a non-matching event",
			timeout:    "1s",
			events:     []ev{{"o1", "form.submitted", "survey"}},
			wantVisits: []visit{{"ask", model.VisitDone, "timeout"}, {"nudge", model.VisitDone, "updated"}},
			wantEnr:    []enrollment{{"o1", model.EnrollmentCompleted, "nudge", journey.ReasonCompleted}},
			wantTags:   []string{"nudged"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // the timeout cases wait a second
			h := newHarness(t)
			h.publish(fmt.Sprintf(src, tc.timeout))
			h.subscribe("o1", "store_1")
			h.drain()
			for _, e := range tc.events {
				h.route(&model.Event{Type: e.typ, Source: "api", Member: model.MemberRef{AppID: testAppID, OpenID: e.openid},
					Props: map[string]any{"form": e.form}})
			}
			// A 1 h timeout is not due: RunStep re-holds the visit. A 1 s
			// one times out once due.
			ask := h.visitOf("ask")
			if tc.timeout == "1h" {
				h.runStep(ask.ID)
			} else {
				h.runWhenDue("ask")
			}
			h.drain()
			if diff := cmp.Diff(tc.wantVisits, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantEnr, h.enrollments()); diff != "" {
				t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantTags, h.member("o1").Tags); diff != "" {
				t.Errorf("member tags mismatch (-want +got):\n%s", diff)
			}
			if ask = h.visitOf("ask"); ask.Outcome == "timeout" && (ask.FinishedAt == nil || ask.FinishedAt.Before(ask.DueAt)) {
				t.Errorf("wait_for timed out at %v, before its due time %v", ask.FinishedAt, ask.DueAt)
			}
		})
	}
}

func TestWaitStep(t *testing.T) {
	t.Parallel()
	const src = `
key: wait
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: %s, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`
	t.Run("not yet due: re-held", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.publish(fmt.Sprintf(src, "1h"))
		h.subscribe("o1", "store_1")
		h.runStep(h.visitOf("pause").ID)
		h.drain()
		h.sweep()
		if diff := cmp.Diff([]visit{{"pause", model.VisitWaiting, ""}}, h.visits()); diff != "" {
			t.Errorf("visits mismatch (-want +got):\n%s", diff)
		}
		if n := len(h.rec.messages()); n != 0 {
			t.Errorf("%d messages sent during a 1 h wait; want 0", n)
		}
	})
	t.Run("due within a second: ends on time, never early", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.publish(fmt.Sprintf(src, "1s"))
		h.subscribe("o1", "store_1")
		pause := h.visitOf("pause")
		// A task arriving early (as asynq's may, by up to a second) does not
		// end the wait: the engine runs it at the due time it keeps.
		h.clk.Set(pause.DueAt.Add(-50 * time.Millisecond))
		h.runStep(pause.ID)
		if got := h.visitOf("pause").Status; got != model.VisitWaiting {
			t.Fatalf("right after an early RunStep the wait is %q; want still waiting", got)
		}
		// The due time comes: the engine's own timer ends the wait and runs
		// the send that follows (the enrollment then completes).
		h.clk.Set(pause.DueAt)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for deadline := time.After(3 * time.Second); h.enrollments()[0].Status == model.EnrollmentActive; {
			select {
			case <-tick.C:
				continue
			case <-deadline:
				t.Errorf("wait due at %v still waiting 3 s after its due time came, after an early RunStep", pause.DueAt)
			}
			break
		}
		if h.visitOf("pause").Status == model.VisitWaiting {
			h.runStep(pause.ID) // so the rest still checks
		}
		h.drain()
		if diff := cmp.Diff([]visit{{"pause", model.VisitDone, "waited"}, {"hello", model.VisitDone, "sent"}}, h.visits()); diff != "" {
			t.Errorf("visits mismatch (-want +got):\n%s", diff)
		}
		if n := len(h.rec.messages()); n != 1 {
			t.Errorf("%d messages sent; want 1", n)
		}
		if pause = h.visitOf("pause"); pause.FinishedAt == nil || pause.FinishedAt.Before(pause.DueAt) || pause.FinishedAt.After(pause.DueAt.Add(time.Second)) {
			t.Errorf("wait due at %v ended at %v; want within a second after", pause.DueAt, pause.FinishedAt)
		}
	})
}

func TestBranchSplitUpdate(t *testing.T) {
	t.Parallel()
	const src = `
key: sort
trigger: { event: wechat.subscribe }
steps:
  - id: thanks
    branch:
      - when: '"vip" in member.tags'
        next: vip
      - when: 'member.attrs.level >= 5'
        next: gold
      - next: regular
  - id: vip
    split:
      - { weight: 50, next: coupon_a }
      - { weight: 50, next: coupon_b }
  - { id: coupon_a, update: { add_tags: [coupon_a] } }
  - { id: coupon_b, update: { add_tags: [coupon_b] } }
  - { id: gold, update: { set: { tier: gold } } }
  - id: regular
    update: { add_tags: [welcomed], remove_tags: [prospect], set: { stage: aware } }
`
	tests := []struct {
		name      string
		tags      []string
		level     int
		wantSteps []string // visited steps; "coupon" is coupon_a or coupon_b, as the split chose
		wantTags  []string // "coupon" likewise
		wantAttrs map[string]any
	}{
		{
			name: "vip goes through the split", tags: []string{"vip"}, level: 1,
			wantSteps: []string{"thanks", "vip", "coupon"},
			wantTags:  []string{"vip", "coupon"},
			wantAttrs: map[string]any{"level": float64(1)},
		},
		{
			name: "high level takes the second arm", tags: []string{"prospect"}, level: 7,
			wantSteps: []string{"thanks", "gold"},
			wantTags:  []string{"prospect"},
			wantAttrs: map[string]any{"level": float64(7), "tier": "gold"},
		},
		{
			name: "others take the last arm", tags: []string{"prospect", "student"}, level: 1,
			wantSteps: []string{"thanks", "regular"},
			wantTags:  []string{"student", "welcomed"},
			wantAttrs: map[string]any{"level": float64(1), "stage": "aware"},
		},
		{
			name: "member without tags or attrs", level: -1,
			wantSteps: []string{"thanks", "regular"},
			wantTags:  []string{"welcomed"},
			wantAttrs: map[string]any{"stage": "aware"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(src)
			if tc.level >= 0 {
				// member.updated props are written into member.attrs.
				h.apiEvent("member.updated", "o1", map[string]any{"level": tc.level})
				m := h.member("o1")
				m.Tags = tc.tags
				if err := h.db.Model(&m).Select("tags").Updates(&m).Error; err != nil {
					t.Fatal(err)
				}
			}
			h.subscribe("o1", "store_1")
			h.drain()

			var coupon string
			var steps []string
			for _, v := range h.visits() {
				if v.Status != model.VisitDone {
					t.Errorf("visit %+v not done", v)
				}
				if v.Step == "vip" {
					switch v.Outcome {
					case "arm:coupon_a":
						coupon = "coupon_a"
					case "arm:coupon_b":
						coupon = "coupon_b"
					default:
						t.Errorf("split outcome %q; want arm:coupon_a or arm:coupon_b", v.Outcome)
					}
				}
				steps = append(steps, v.Step)
			}
			fill := func(in []string) []string {
				out := slices.Clone(in)
				for i, s := range out {
					if s == "coupon" {
						out[i] = coupon
					}
				}
				return out
			}
			if diff := cmp.Diff(fill(tc.wantSteps), steps); diff != "" {
				t.Errorf("visited steps mismatch (-want +got):\n%s", diff)
			}
			m := h.member("o1")
			if diff := cmp.Diff(fill(tc.wantTags), m.Tags); diff != "" {
				t.Errorf("member tags mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAttrs, m.Attrs); diff != "" {
				t.Errorf("member attrs mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentCompleted, steps[len(steps)-1], journey.ReasonCompleted}}, h.enrollments()); diff != "" {
				t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSenderErrors(t *testing.T) {
	t.Parallel()
	// A timeout after the request left: the provider may have the message.
	timeout := fmt.Errorf("post https://api.weixin.qq.com: %w", context.DeadlineExceeded)
	tests := []struct {
		name     string
		template bool // send a wechat.template (else wechat.text)
		err      error
		// After the first attempt:
		wantVisit  visit
		wantEnr    enrollment
		wantDeliv  delivery
		wantCode   int
		retryAfter time.Duration // > 0: the visit is rescheduled about this far ahead
		// After the error clears and the visit runs again:
		wantResent bool
	}{
		{
			name:      "permanent",
			err:       fmt.Errorf("invalid template: %w", channels.ErrPermanent),
			wantVisit: visit{"hello", model.VisitFailed, "failed"},
			wantEnr:   enrollment{"o1", model.EnrollmentFailed, "hello", journey.ReasonFailed},
			wantDeliv: delivery{"hello", channels.WeChatText, "o1", model.DeliveryFailed},
		},
		{
			name:      "permanent provider error with code",
			err:       &channels.Error{Class: channels.ErrPermanent, Code: 40003, Msg: "invalid openid"},
			wantVisit: visit{"hello", model.VisitFailed, "failed"},
			wantEnr:   enrollment{"o1", model.EnrollmentFailed, "hello", journey.ReasonFailed},
			wantDeliv: delivery{"hello", channels.WeChatText, "o1", model.DeliveryFailed},
			wantCode:  40003,
		},
		{
			name:       "temporary",
			err:        errors.New("connection reset by peer"),
			wantVisit:  visit{"hello", model.VisitScheduled, ""},
			wantEnr:    enrollment{"o1", model.EnrollmentActive, "hello", ""},
			wantDeliv:  delivery{"hello", channels.WeChatText, "o1", model.DeliveryFailed},
			retryAfter: 2 * time.Second, // backoff after the first attempt
			wantResent: true,
		},
		{
			name:       "temporary provider error",
			err:        &channels.Error{Code: -1, Msg: "system busy"},
			wantVisit:  visit{"hello", model.VisitScheduled, ""},
			wantEnr:    enrollment{"o1", model.EnrollmentActive, "hello", ""},
			wantDeliv:  delivery{"hello", channels.WeChatText, "o1", model.DeliveryFailed},
			wantCode:   -1,
			retryAfter: 2 * time.Second,
			wantResent: true,
		},
		{
			name:      "timeout on a text: outcome unknown, never re-sent",
			err:       timeout,
			wantVisit: visit{"hello", model.VisitDone, "unknown"},
			wantEnr:   enrollment{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted},
			wantDeliv: delivery{"hello", channels.WeChatText, "o1", model.DeliveryUnknown},
		},
		{
			name:       "timeout on a template: re-sent with the same idempotency key",
			template:   true,
			err:        timeout,
			wantVisit:  visit{"hello", model.VisitScheduled, ""},
			wantEnr:    enrollment{"o1", model.EnrollmentActive, "hello", ""},
			wantDeliv:  delivery{"hello", channels.WeChatTemplate, "o1", model.DeliveryFailed},
			retryAfter: 2 * time.Second,
			wantResent: true,
		},
		{
			name:       "quota with retry-after",
			err:        &channels.Error{Class: channels.ErrQuota, Code: 45009, Msg: "api freq out of limit", RetryAfter: time.Hour},
			wantVisit:  visit{"hello", model.VisitScheduled, ""},
			wantEnr:    enrollment{"o1", model.EnrollmentActive, "hello", ""},
			wantDeliv:  delivery{"hello", channels.WeChatText, "o1", model.DeliveryHeld},
			wantCode:   45009,
			retryAfter: time.Hour,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // a temporary error is retried two seconds later
			h := newHarness(t)
			ch, send := channels.WeChatText, `{ channel: wechat.text, text: hi }`
			if tc.template {
				ch, send = channels.WeChatTemplate, `{ channel: wechat.template, template_id: T1 }`
			}
			h.publish(`
key: send
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: ` + send + ` }
`)
			h.rec.fail(ch, tc.err)
			start := h.clk.Now()
			h.subscribe("o1", "store_1")
			h.drain()

			if diff := cmp.Diff([]visit{tc.wantVisit}, h.visits()); diff != "" {
				t.Errorf("visits after the error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]enrollment{tc.wantEnr}, h.enrollments()); diff != "" {
				t.Errorf("enrollments after the error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]delivery{tc.wantDeliv}, h.deliveries()); diff != "" {
				t.Errorf("deliveries after the error (-want +got):\n%s", diff)
			}
			var d model.Delivery
			if err := h.db.First(&d).Error; err != nil {
				t.Fatal(err)
			}
			if d.ErrorCode != tc.wantCode || !strings.Contains(d.Error, tc.err.Error()) {
				t.Errorf("delivery error %q code %d; want %q code %d", d.Error, d.ErrorCode, tc.err, tc.wantCode)
			}
			v := h.visitOf("hello")
			if tc.retryAfter > 0 {
				if lo, hi := start.Add(tc.retryAfter-time.Second), h.clk.Now().Add(tc.retryAfter+time.Second); v.DueAt.Before(lo) || v.DueAt.After(hi) {
					t.Errorf("rescheduled to %v; want about %v from now", v.DueAt, tc.retryAfter)
				}
				if !strings.Contains(v.Error, tc.err.Error()) {
					t.Errorf("visit error %q; want it to record %q", v.Error, tc.err)
				}
			}

			// The error clears. A retry due in a few seconds is re-sent once
			// due; one due in an hour is re-held by RunStep.
			h.rec.fail(ch, nil)
			if tc.retryAfter > 0 && tc.retryAfter < time.Minute {
				h.runWhenDue("hello")
			}
			h.runStep(v.ID)
			h.runStep(v.ID)
			h.drain()
			msgs := h.rec.messages()
			wantSends := 1
			if tc.wantResent {
				wantSends = 2
			}
			if len(msgs) != wantSends {
				t.Fatalf("%d sends; want %d", len(msgs), wantSends)
			}
			if !tc.wantResent {
				if diff := cmp.Diff([]visit{tc.wantVisit}, h.visits()); diff != "" {
					t.Errorf("visits after re-running (-want +got):\n%s", diff)
				}
				return
			}
			if msgs[1].DeliveryID != msgs[0].DeliveryID || msgs[1].IdempotencyKey != msgs[0].IdempotencyKey {
				t.Errorf("retry used delivery %d key %q; want the first attempt's %d %q",
					msgs[1].DeliveryID, msgs[1].IdempotencyKey, msgs[0].DeliveryID, msgs[0].IdempotencyKey)
			}
			if diff := cmp.Diff([]visit{{"hello", model.VisitDone, "sent"}}, h.visits()); diff != "" {
				t.Errorf("visits after the retry (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]delivery{{"hello", ch, "o1", model.DeliverySent}}, h.deliveries()); diff != "" {
				t.Errorf("deliveries after the retry (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}}, h.enrollments()); diff != "" {
				t.Errorf("enrollments after the retry (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCrashMidSend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		channel   string
		send      string
		lease     time.Duration // lease_until of the crashed worker, relative to now
		wantSends int           // after the crash
		wantVisit visit
		wantDeliv string // status of the delivery row
	}{
		{
			name:      "wechat.text is not asked again",
			channel:   channels.WeChatText,
			send:      `{ channel: wechat.text, text: hi }`,
			lease:     -time.Minute,
			wantVisit: visit{"hello", model.VisitDone, "unknown"},
			wantDeliv: model.DeliveryUnknown,
		},
		{
			name:      "wechat.template is re-sent with its idempotency key",
			channel:   channels.WeChatTemplate,
			send:      `{ channel: wechat.template, template_id: T1 }`,
			lease:     -time.Minute,
			wantSends: 1,
			wantVisit: visit{"hello", model.VisitDone, "sent"},
			wantDeliv: model.DeliverySent,
		},
		{
			name:      "lease not expired: another worker still holds it",
			channel:   channels.WeChatTemplate,
			send:      `{ channel: wechat.template, template_id: T1 }`,
			lease:     time.Minute,
			wantVisit: visit{"hello", model.VisitRunning, ""},
			wantDeliv: model.DeliverySending,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(`
key: crash
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: ` + tc.send + ` }
`)
			// The first attempt fails temporarily, so the visit and its
			// delivery row exist and the visit is not finished.
			h.rec.fail(tc.channel, errors.New("connection reset by peer"))
			h.subscribe("o1", "store_1")
			h.drain()
			h.rec.fail(tc.channel, nil)
			before := len(h.rec.messages())
			if diff := cmp.Diff([]visit{{"hello", model.VisitScheduled, ""}}, h.visits()); diff != "" {
				t.Fatalf("visits after a temporary error (-want +got):\n%s", diff)
			}
			v := h.visitOf("hello")
			var d model.Delivery
			if err := h.db.Where("step_visit_id = ?", v.ID).First(&d).Error; err != nil {
				t.Fatal(err)
			}
			// The retry's worker died after handing the message to the
			// provider: the delivery row says sending, the visit is running
			// under the dead worker's lease.
			if err := h.db.Model(&model.Delivery{}).Where("id = ?", d.ID).Update("status", model.DeliverySending).Error; err != nil {
				t.Fatal(err)
			}
			if err := h.db.Model(&model.StepVisit{}).Where("id = ?", v.ID).Updates(map[string]any{
				"status": model.VisitRunning, "lease_until": h.clk.Now().Add(tc.lease), "due_at": h.clk.Now().Add(-time.Second),
			}).Error; err != nil {
				t.Fatal(err)
			}

			h.runStep(v.ID)
			h.runStep(v.ID)
			h.sweep()

			msgs := h.rec.messages()[before:]
			if len(msgs) != tc.wantSends {
				t.Fatalf("%d sends after the crash; want %d", len(msgs), tc.wantSends)
			}
			if len(msgs) > 0 && (msgs[0].DeliveryID != d.ID || msgs[0].IdempotencyKey != fmt.Sprintf("wj-%d", d.ID)) {
				t.Errorf("re-send used delivery %d key %q; want the crashed delivery %d (wj-%d)", msgs[0].DeliveryID, msgs[0].IdempotencyKey, d.ID, d.ID)
			}
			if diff := cmp.Diff([]visit{tc.wantVisit}, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]delivery{{"hello", tc.channel, "o1", tc.wantDeliv}}, h.deliveries()); diff != "" {
				t.Errorf("deliveries mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQuietHoursHoldLateSends(t *testing.T) {
	t.Parallel()
	cst := time.FixedZone("CST", 8*3600)
	// The harnesses' clocks start at the wall time.
	now := time.Now().In(cst)
	// A window from half an hour ago to half an hour ahead, China time.
	end := now.Add(30 * time.Minute).Truncate(time.Minute)
	window := now.Add(-30*time.Minute).Format("15:04") + "-" + end.Format("15:04")
	tests := []struct {
		name      string
		enteredAt time.Duration // how long ago the member entered
		wantSent  int
		wantVisit visit
	}{
		{"reply to the member's own action goes at once", 0, 1, visit{"hello", model.VisitDone, "sent"}},
		{"later send waits for the window to end", 5 * time.Minute, 0, visit{"hello", model.VisitScheduled, ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(fmt.Sprintf(`
key: quiet
trigger: { event: wechat.subscribe }
quiet_hours: %q
steps:
  - { id: ask, wait_for: { event: form.submitted, timeout: 1h }, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`, window))
			h.subscribe("o1", "store_1")
			if tc.enteredAt > 0 {
				if err := h.db.Model(&model.Enrollment{}).Where("1 = 1").
					Update("entered_at", h.clk.Now().Add(-tc.enteredAt)).Error; err != nil {
					t.Fatal(err)
				}
			}
			h.apiEvent("form.submitted", "o1", nil)
			h.drain()
			if n := len(h.rec.messages()); n != tc.wantSent {
				t.Errorf("%d messages sent inside quiet hours %s; want %d", n, window, tc.wantSent)
			}
			if diff := cmp.Diff([]visit{{"ask", model.VisitDone, "matched"}, tc.wantVisit}, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
			if v := h.visitOf("hello"); v.Status == model.VisitScheduled && !v.DueAt.Equal(end) {
				t.Errorf("held until %v; want the end of the window %v", v.DueAt, end.UTC())
			}
		})
	}
}

func TestSweepRoutesAndRuns(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: sweep
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`)
	// Stored but never routed: the route task was lost.
	h.ingest(wechatEvent("wechat.subscribe", "o1", map[string]any{"scene": "store_1"}))
	// Not yet overdue: a sweep at the time it was stored leaves it.
	if r := h.sweep(); r != (journey.SweepResult{}) || len(h.rec.sent()) != 0 {
		t.Errorf("sweep right at storing: %+v, %d sends; want nothing enqueued or sent", r, len(h.rec.sent()))
	}
	h.clk.Advance(time.Millisecond) // past SweepGrace
	var got []journey.SweepResult
	for range 3 {
		got = append(got, h.sweep())
	}
	// The first sweep routes the event; its send runs then or at the next
	// sweep; the last sweep finds nothing left.
	if got[0].Events != 1 || got[1].Events != 0 || got[2] != (journey.SweepResult{}) {
		t.Errorf("sweep results %+v; want the event routed by the first sweep and nothing left for the last", got)
	}
	if diff := cmp.Diff([]sent{{Channel: channels.WeChatText, OpenID: "o1", Text: "hi"}}, h.rec.sent()); diff != "" {
		t.Errorf("sent messages mismatch (-want +got):\n%s", diff)
	}
}

func TestPublishVersions(t *testing.T) {
	t.Parallel()
	const src = `
key: versioned
name: %s
trigger: { event: wechat.subscribe }
steps:
  - { id: ask, wait_for: { event: form.submitted, timeout: 1h }, next: hello }
  - { id: hello, send: { channel: wechat.text, text: %q } }
`
	v1, v2 := fmt.Sprintf(src, "first", "hello from v1"), fmt.Sprintf(src, "second", "hello from v2")
	h := newHarness(t)
	publish := func(s string) bool {
		c, err := journey.Parse("versioned.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		created, err := h.e.Publish(h.ctx, c, "admin")
		if err != nil {
			t.Fatal(err)
		}
		return created
	}
	type state struct {
		Created  []bool
		Versions []int
		Current  int
		Name     string
	}
	versions := func(created ...bool) state {
		var j model.Journey
		if err := h.db.Where(&model.Journey{Key: "versioned"}).First(&j).Error; err != nil {
			t.Fatal(err)
		}
		var vs []model.JourneyVersion
		if err := h.db.Where("journey_id = ?", j.ID).Order("version").Find(&vs).Error; err != nil {
			t.Fatal(err)
		}
		s := state{Created: created, Name: j.Name}
		for _, v := range vs {
			s.Versions = append(s.Versions, v.Version)
			if v.ID == j.CurrentVersionID {
				s.Current = v.Version
			}
		}
		return s
	}

	got := versions(publish(v1), publish(v1))
	if diff := cmp.Diff(state{[]bool{true, false}, []int{1}, 1, "first"}, got); diff != "" {
		t.Errorf("publishing the same source twice (-want +got):\n%s", diff)
	}
	h.subscribe("o1", "store_1") // enters version 1 and waits

	got = versions(publish(v2), publish(v2))
	if diff := cmp.Diff(state{[]bool{true, false}, []int{1, 2}, 2, "second"}, got); diff != "" {
		t.Errorf("publishing a changed source (-want +got):\n%s", diff)
	}
	h.subscribe("o2", "store_1") // enters version 2

	for _, o := range []string{"o1", "o2"} {
		h.apiEvent("form.submitted", o, nil)
	}
	h.drain()
	want := []sent{
		{Channel: channels.WeChatText, OpenID: "o1", Text: "hello from v1"},
		{Channel: channels.WeChatText, OpenID: "o2", Text: "hello from v2"},
	}
	got2 := h.rec.sent()
	slices.SortFunc(got2, func(a, b sent) int { return strings.Compare(a.OpenID, b.OpenID) })
	if diff := cmp.Diff(want, got2); diff != "" {
		t.Errorf("members stay on the version they entered (-want +got):\n%s", diff)
	}
	var evs []struct {
		OpenID  string
		Version int
	}
	if err := h.db.Table("enrollments").Select("members.open_id, journey_versions.version").
		Joins("JOIN members ON members.id = enrollments.member_id").
		Joins("JOIN journey_versions ON journey_versions.id = enrollments.version_id").
		Order("enrollments.id").Scan(&evs).Error; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]struct {
		OpenID  string
		Version int
	}{{"o1", 1}, {"o2", 2}}, evs); diff != "" {
		t.Errorf("enrollment versions (-want +got):\n%s", diff)
	}

	// Re-publishing version 1's source makes a new version 3, live.
	got = versions(publish(v1))
	if diff := cmp.Diff(state{[]bool{true}, []int{1, 2, 3}, 3, "first"}, got); diff != "" {
		t.Errorf("publishing an older source again (-want +got):\n%s", diff)
	}
}

func TestSyncDir(t *testing.T) {
	t.Parallel()
	const good = `
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: %q } }
`
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("welcome.yaml", fmt.Sprintf(good, "hi"))
	write("broken.yml", "key: broken\nsteps: []\n")
	write("README.md", "not a journey")
	h := newHarness(t)

	type result struct {
		Published []string
		Invalid   bool   // errors.Is(err, ErrInvalid)
		Names     string // the invalid file named in err ("" when none)
		Versions  int64
	}
	sync := func() result {
		pub, err := h.e.SyncDir(h.ctx, dir)
		r := result{Published: pub, Invalid: errors.Is(err, journey.ErrInvalid), Versions: h.count(&model.JourneyVersion{})}
		if err != nil && strings.Contains(err.Error(), filepath.Join(dir, "broken.yml")) {
			r.Names = "broken.yml"
		}
		return r
	}
	steps := []struct {
		name   string
		change func()
		want   result
	}{
		{"first sync publishes the valid file", nil, result{[]string{"welcome"}, true, "broken.yml", 1}},
		{"unchanged: nothing new", nil, result{nil, true, "broken.yml", 1}},
		{"changed: version 2", func() { write("welcome.yaml", fmt.Sprintf(good, "hello")) }, result{[]string{"welcome"}, true, "broken.yml", 2}},
		{"broken file fixed", func() {
			write("broken.yml", "key: broken\ntrigger: { event: wechat.scan }\nsteps: [ { id: s, wait: 1m } ]\n")
		}, result{[]string{"broken"}, false, "", 3}},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change()
		}
		if diff := cmp.Diff(st.want, sync()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, diff)
		}
	}
	var v model.JourneyVersion
	if err := h.db.Order("id DESC").Where("version = 2").First(&v).Error; err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "welcome.yaml"); v.Origin != want {
		t.Errorf("version origin %q; want the file %q", v.Origin, want)
	}

	// Two files with the same key: the second is reported, the first published.
	write("welcome2.yaml", fmt.Sprintf(good, "other"))
	_, err := h.e.SyncDir(h.ctx, dir)
	if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), `key "welcome" is also used by`) {
		t.Errorf("SyncDir with a duplicate key: %v; want an ErrInvalid naming the shared key", err)
	}
}

func TestOneEventEntersSeveralJourneys(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, k := range []string{"tag-a", "tag-b", "tag-c"} {
		h.publish(fmt.Sprintf(`
key: %s
trigger: { event: wechat.subscribe }
steps:
  - { id: tag, update: { add_tags: [%s], set: { %s: true } } }
`, k, k, strings.ReplaceAll(k, "-", "_")))
	}
	h.subscribe("o1", "store_1")
	h.drain()
	var statuses []string
	for _, e := range h.enrollments() {
		statuses = append(statuses, e.Status)
	}
	if diff := cmp.Diff([]string{"completed", "completed", "completed"}, statuses); diff != "" {
		t.Errorf("enrollment statuses (-want +got):\n%s", diff)
	}
	m := h.member("o1")
	tags := slices.Sorted(slices.Values(m.Tags))
	if diff := cmp.Diff([]string{"tag-a", "tag-b", "tag-c"}, tags); diff != "" {
		t.Errorf("member tags after three journeys each added one (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"tag_a": true, "tag_b": true, "tag_c": true}, m.Attrs); diff != "" {
		t.Errorf("member attrs after three journeys each set one (-want +got):\n%s", diff)
	}
}

func TestUnroutableEventIsParked(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(storeWelcome)
	id := h.ingest(&model.Event{Type: "wechat.subscribe", Source: "wechat", Props: map[string]any{"scene": "store_1"}}) // names no member
	var errs int
	for range 7 {
		if err := h.e.Route(h.ctx, id); err != nil {
			errs++
		}
	}
	var ev model.Event
	if err := h.db.First(&ev, id).Error; err != nil {
		t.Fatal(err)
	}
	type state struct {
		Errors, Attempts int
		Parked           bool
		Error            string
	}
	got := state{errs, ev.Attempts, ev.RoutedAt != nil, ev.Error}
	want := state{5, 5, true, "journey: event names no member"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("event naming no member, routed 7 times (-want +got):\n%s", diff)
	}
}

// TestLoopWithoutWaitFails: publishing refuses a loop without a wait
// (TestLoopsMustWait), but a version stored before that check still runs:
// the engine cuts such a loop short and fails the enrollment.
func TestLoopWithoutWaitFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const src = `
key: loop
trigger: { event: wechat.subscribe }
steps:
  - { id: a, update: { add_tags: [looped] }, next: b }
  - id: b
    branch:
      - next: a
`
	if _, err := journey.Parse("loop.yaml", []byte(src)); !errors.Is(err, journey.ErrInvalid) {
		t.Fatalf("Parse of a loop without a wait: %v; want ErrInvalid", err)
	}
	j := model.Journey{Key: "loop", Status: model.JourneyActive}
	if err := h.db.Create(&j).Error; err != nil {
		t.Fatal(err)
	}
	v := model.JourneyVersion{JourneyID: j.ID, Version: 1, Source: src, Hash: "stored-before-the-check", Origin: "admin"}
	if err := h.db.Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	if err := h.db.Model(&j).Update("current_version_id", v.ID).Error; err != nil {
		t.Fatal(err)
	}
	h.e.InvalidateIndex()
	h.subscribe("o1", "store_1")
	h.drain()
	if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentFailed, "", "loop"}}, h.enrollments(),
		cmp.Comparer(func(a, b enrollment) bool {
			return a.Member == b.Member && a.Status == b.Status && a.EndReason == b.EndReason
		})); diff != "" {
		t.Errorf("enrollments of a journey looping without a wait (-want +got):\n%s", diff)
	}
	if n := h.count(&model.StepVisit{}); n > 200 {
		t.Errorf("%d step visits; want the loop cut short", n)
	}
	var open int64
	if err := h.db.Model(&model.StepVisit{}).Where("status IN ?", []string{model.VisitScheduled, model.VisitWaiting, model.VisitRunning}).
		Count(&open).Error; err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d visits still open after the enrollment failed; want 0", open)
	}
}

func TestConcurrentRunsSendOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: once
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.template, template_id: T1 } }
`)
	// The first attempt hits the quota; the retry is made due by hand.
	h.rec.fail(channels.WeChatTemplate, &channels.Error{Class: channels.ErrQuota, Code: 45009, RetryAfter: time.Hour})
	h.subscribe("o1", "store_1")
	h.rec.fail(channels.WeChatTemplate, nil)
	v := h.visitOf("hello")
	if err := h.db.Model(&model.StepVisit{}).Where("id = ?", v.ID).Update("due_at", h.clk.Now().Add(-time.Second)).Error; err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() { errs <- h.e.RunStep(h.ctx, v.ID) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("RunStep: %v", err)
		}
	}
	if n := len(h.rec.messages()); n != 2 {
		t.Errorf("%d sends (first attempt included) after 8 concurrent RunSteps; want 2", n)
	}
	if diff := cmp.Diff([]visit{{"hello", model.VisitDone, "sent"}}, h.visits()); diff != "" {
		t.Errorf("visits mismatch (-want +got):\n%s", diff)
	}
}

func TestConcurrentRoutesEnterOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: once
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`)
	id := h.ingest(wechatEvent("wechat.subscribe", "o1", map[string]any{"scene": "store_1"}))
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() { errs <- h.e.Route(h.ctx, id) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("Route: %v", err)
		}
	}
	h.drain()
	if diff := cmp.Diff([]sent{{Channel: channels.WeChatText, OpenID: "o1", Text: "hi"}}, h.rec.sent()); diff != "" {
		t.Errorf("sent after routing one event 8 times at once (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}}, h.enrollments()); diff != "" {
		t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
	}
}

func TestCustomerServiceWindow(t *testing.T) {
	t.Parallel()
	t.Skip("not yet: the WeChat allowance model (48 h / 3-in-1-minute customer-service windows, DESIGN.md " +
		"\"Channels\") is a later issue; today only an unfollow stops WeChat sends. This test is its acceptance check.")
	const phone = "13800000000"
	tests := []struct {
		name       string
		lastSeen   time.Duration // how long ago the member last interacted
		wantSent   []sent
		wantVisits []visit
	}{
		{
			name:       "within 48 h: customer-service message",
			lastSeen:   47 * time.Hour,
			wantSent:   []sent{{Channel: channels.WeChatText, OpenID: "o1", Phone: phone, Text: "hi"}},
			wantVisits: []visit{{"hello", model.VisitDone, "sent"}},
		},
		{
			name:       "after 48 h: straight to the fallback",
			lastSeen:   72 * time.Hour,
			wantSent:   []sent{{Channel: channels.SMS, OpenID: "o1", Phone: phone, Text: "hi"}},
			wantVisits: []visit{{"hello", model.VisitDone, "fallback:sms"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.publish(`
key: order
trigger: { event: order.paid }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi, fallback: sms } }
`)
			h.subscribe("o1", "store_1")
			at := h.clk.Now().Add(-tc.lastSeen)
			if err := h.db.Model(&model.Member{}).Where("open_id = ?", "o1").
				Updates(map[string]any{"last_interaction_at": at, "subscribed_at": at}).Error; err != nil {
				t.Fatal(err)
			}
			h.route(&model.Event{Type: "order.paid", Source: "api",
				Member: model.MemberRef{AppID: testAppID, OpenID: "o1", Phone: phone}})
			h.drain()
			if diff := cmp.Diff(tc.wantSent, h.rec.sent()); diff != "" {
				t.Errorf("sent messages mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantVisits, h.visits()); diff != "" {
				t.Errorf("visits mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A message template that fails when rendered sends nothing (not an empty
// message) and fails the step.
func TestBrokenTemplateSendsNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: broken
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: '你好 {{ index .member.tags 5 }}' } }
`)
	h.subscribe("o1", "store_001")
	h.drain()
	if got := h.rec.sent(); len(got) != 0 {
		t.Errorf("sent %+v; want nothing", got)
	}
	if diff := cmp.Diff([]visit{{"hello", model.VisitFailed, "template error"}}, h.visits()); diff != "" {
		t.Errorf("visits mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentFailed, "hello", journey.ReasonFailed}}, h.enrollments()); diff != "" {
		t.Errorf("enrollments mismatch (-want +got):\n%s", diff)
	}
}

// A member's events route in the order they were stored, even when the
// later one is routed first (another batch, another worker): a follow then an
// immediate unfollow never sends the welcome.
func TestMemberEventsRouteInOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: welcome
trigger: { event: wechat.subscribe }
exit: [ { event: wechat.unsubscribe } ]
steps:
  - { id: hello, send: { channel: wechat.text, text: 欢迎 } }
`)
	sub := h.ingest(wechatEvent("wechat.subscribe", "o1", map[string]any{"scene": "store_1"}))
	other := h.ingest(wechatEvent("wechat.subscribe", "o2", nil))
	unsub := h.ingest(wechatEvent("wechat.unsubscribe", "o1", nil))
	if err := h.e.Route(h.ctx, unsub); err != nil { // the later event's worker is first
		t.Fatal(err)
	}
	var routed []int64
	h.db.Model(&model.Event{}).Where("routed_at IS NOT NULL").Order("id").Pluck("id", &routed)
	if diff := cmp.Diff([]int64{sub, unsub}, routed); diff != "" {
		t.Errorf("routed events (-want +got):\n%s", diff)
	}
	if err := h.e.Route(h.ctx, sub, other); err != nil { // the earlier event's own task: a no-op for o1
		t.Fatal(err)
	}
	h.drain()
	if diff := cmp.Diff([]sent{{Channel: channels.WeChatText, OpenID: "o2", Text: "欢迎"}}, h.rec.sent()); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	if m := h.member("o1"); m.Subscribed {
		t.Error("o1 is subscribed; the unfollow came last")
	}
	want := []enrollment{{"o1", model.EnrollmentExited, "hello", "exit:wechat.unsubscribe"}, {"o2", model.EnrollmentCompleted, "hello", journey.ReasonCompleted}}
	if diff := cmp.Diff(want, h.enrollments()); diff != "" {
		t.Errorf("enrollments (-want +got):\n%s", diff)
	}
}

// While the queue has a backlog, an unrouted event is waiting in it, not
// lost: the sweeper leaves it until LagGrace, so a burst the workers are
// behind on is not routed again on top of itself; without a backlog it is
// re-enqueued after SweepGrace.
func TestSweepTellsLagFromLoss(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *journey.Config) { c.SweepGrace, c.LagGrace = time.Second, time.Minute })
	h.ingest(wechatEvent("wechat.subscribe", "o1", nil))
	// A backlog: a task waits in the engine's queue.
	if _, err := h.q.Enqueue(journey.NewRouteEventsTask([]int64{1 << 40}, "")); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(2 * time.Second) // past SweepGrace, not LagGrace
	if r, err := h.e.Sweep(h.ctx); err != nil || r.Events != 0 {
		t.Fatalf("sweep during a backlog, 2 s after storing: %+v, %v; want the event left to the backlog", r, err)
	}
	h.clk.Advance(time.Minute) // past LagGrace: lost after all
	if r, err := h.e.Sweep(h.ctx); err != nil || r.Events != 1 {
		t.Fatalf("sweep during a backlog, past LagGrace: %+v, %v; want the event re-enqueued", r, err)
	}
}

// A wait longer than the horizon is kept by the database alone: no task
// waits in Redis for it (a million members waiting a month cost Redis
// nothing); the sweeper queues it once it comes within the horizon, and it
// runs on time.
func TestWaitsBeyondTheHorizonStayInTheDatabase(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *journey.Config) { c.Horizon = time.Minute })
	h.publish(`
key: later
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1h, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`)
	h.subscribe("o1", "")
	queued := func() int {
		t.Helper()
		tasks, err := h.insp.ListScheduledTasks(journey.QueueReply)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Fatal(err)
		}
		return len(tasks)
	}
	if n := queued(); n != 0 {
		t.Fatalf("%d step tasks in Redis right after entering a 1 h wait; want 0 (due beyond the horizon)", n)
	}
	h.clk.Advance(30 * time.Minute)
	if r := h.sweep(); r.Upcoming != 0 || queued() != 0 {
		t.Fatalf("sweep 30 min before due: %+v, %d tasks; want nothing queued yet", r, queued())
	}
	h.clk.Advance(29*time.Minute + 30*time.Second) // 30 s before due: within the horizon
	if r := h.sweep(); r.Upcoming != 1 || queued() != 1 {
		t.Fatalf("sweep 30 s before due: %+v, %d tasks; want the wait queued ahead", r, queued())
	}
	if r := h.sweep(); queued() != 1 {
		t.Fatalf("a second sweep: %+v, %d tasks; want the same one task", r, queued())
	}
	if len(h.rec.sent()) != 0 {
		t.Fatal("sent before the wait ended")
	}
	h.clk.Advance(25 * time.Second)
	h.runWhenDue("pause")
	if diff := cmp.Diff([]sent{{Channel: channels.WeChatText, OpenID: "o1", Text: "hi"}}, h.rec.sent()); diff != "" {
		t.Errorf("sent mismatch (-want +got):\n%s", diff)
	}
}
