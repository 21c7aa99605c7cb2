package journey_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// An operator's manual enrollment enters the member whatever the trigger
// and its where, but the entry rules hold; the same event type from the
// events API enrolls nobody.
func TestManualEnrollment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: vip-care
trigger: { event: order.paid, where: 'event.amount > 10000' }
entry: { once: true }
steps:
  - { id: hello, send: { channel: wechat.text, text: 尊享服务 } }
`)
	h.publish(`
key: other
trigger: { event: order.paid }
steps:
  - { id: hello, send: { channel: wechat.text, text: other } }
`)
	enroll := func(openid, source, key string) {
		h.route(&model.Event{Type: events.JourneyEnroll, Source: source,
			Member: model.MemberRef{AppID: testAppID, OpenID: openid}, Props: map[string]any{"journey": key, "by": "api"}})
		h.drain()
	}
	enroll("o1", events.Engine{}.Name(), "vip-care")
	enroll("o1", events.Engine{}.Name(), "vip-care") // once: not again
	enroll("o2", "api", "vip-care")                  // from the events API: nobody
	enroll("o3", events.Engine{}.Name(), "nope")     // no such journey: nothing
	want := []enrollment{{"o1", model.EnrollmentCompleted, "hello", "completed"}}
	if diff := cmp.Diff(want, h.enrollments()); diff != "" {
		t.Errorf("enrollments (-want +got):\n%s", diff)
	}
	if n := len(h.rec.messages()); n != 1 {
		t.Errorf("%d messages; want the one of vip-care to o1", n)
	}
}
