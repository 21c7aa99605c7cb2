package journey_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// TestRemoveMember: an operator takes one member out of a journey; that
// member's wait is cancelled and it is sent nothing, the other member
// goes on; removing it again, or from an unknown journey, says so.
func TestRemoveMember(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: promo
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 1h, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`)
	h.followAll([]string{"o-gone", "o-stays"})
	gone := h.member("o-gone")
	if err := h.e.RemoveMember(h.ctx, "promo", gone.ID); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]enrollment{
		{"o-gone", model.EnrollmentExited, "pause", journey.EndReasonOperator},
		{"o-stays", model.EnrollmentActive, "pause", ""},
	}, h.enrollments()); diff != "" {
		t.Errorf("enrollments after the removal (-want +got):\n%s", diff)
	}
	if got := h.countVisits("pause", model.VisitCancelled); got != 1 {
		t.Errorf("%d waits cancelled; want 1", got)
	}
	h.clk.Advance(2 * time.Hour)
	h.sweepOnly()
	h.runStepTasks()
	msgs := h.rec.messages()
	if len(msgs) != 1 || msgs[0].To.OpenID != "o-stays" {
		t.Errorf("sent %+v; want one message, to o-stays", msgs)
	}
	if err := h.e.RemoveMember(h.ctx, "promo", gone.ID); !errors.Is(err, journey.ErrNotEnrolled) {
		t.Errorf("removing twice: %v; want ErrNotEnrolled", err)
	}
	if err := h.e.RemoveMember(h.ctx, "nope", gone.ID); !errors.Is(err, journey.ErrUnknownJourney) {
		t.Errorf("removing from an unknown journey: %v; want ErrUnknownJourney", err)
	}
}
