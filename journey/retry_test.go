package journey_test

import (
	"errors"
	"testing"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// TestRetryDelivery retries failed deliveries by hand: only a temporary
// failure whose member still waits at (or just failed at) that step is
// sent again, once, under the same delivery row.
func TestRetryDelivery(t *testing.T) {
	t.Parallel()
	const src = "key: welcome\nname: Welcome\ntrigger: { event: wechat.subscribe }\nsteps:\n  - { id: hello, send: { channel: wechat.text, text: hi } }\n"
	busy := &channels.Error{Code: -1, Msg: "system busy"}
	for _, tc := range []struct {
		name        string
		maxAttempts int
		err         error
		wantErr     error
		// wantSends counts the messages handed to the channel in all,
		// the first attempt's included.
		wantSends int
		wantEnr   string
	}{
		{"temporary, enrollment failed at the step", 1, busy, nil, 2, model.EnrollmentCompleted},
		{"temporary, enrollment still waiting to retry", 8, busy, nil, 2, model.EnrollmentCompleted},
		{"permanent is never retried", 8, &channels.Error{Class: channels.ErrPermanent, Code: 40001, Msg: "invalid credential"}, journey.ErrRetryNotSafe, 1, model.EnrollmentFailed},
		{"unreachable is never retried", 8, &channels.Error{Class: channels.ErrUnreachable, Code: 45015, Msg: "response out of time limit"}, journey.ErrRetryNotSafe, 1, model.EnrollmentFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, func(c *journey.Config) { c.MaxAttempts = tc.maxAttempts })
			h.publish(src)
			h.rec.fail(channels.WeChatText, tc.err)
			h.subscribe("o1", "")
			h.drain()
			var d model.Delivery
			if err := h.db.First(&d).Error; err != nil {
				t.Fatal(err)
			}
			if d.Status != model.DeliveryFailed {
				t.Fatalf("delivery is %s after the failure, want failed", d.Status)
			}
			h.rec.fail(channels.WeChatText, nil)
			got, err := h.e.RetryDelivery(h.ctx, d.ID)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("RetryDelivery = %v, want %v", err, tc.wantErr)
			}
			if n := len(h.rec.messages()); n != tc.wantSends {
				t.Errorf("%d messages handed to the channel, want %d", n, tc.wantSends)
			}
			if tc.wantErr == nil {
				if got.ID != d.ID || got.Status != model.DeliverySent {
					t.Errorf("retried delivery = #%d %s, want #%d sent", got.ID, got.Status, d.ID)
				}
				if n := h.count(&model.Delivery{}); n != 1 {
					t.Errorf("%d delivery rows, want the one retried", n)
				}
				// Once sent, it is not sent again.
				if _, err := h.e.RetryDelivery(h.ctx, d.ID); !errors.Is(err, journey.ErrRetryNotSafe) {
					t.Errorf("second retry = %v, want ErrRetryNotSafe", err)
				}
				if n := len(h.rec.messages()); n != tc.wantSends {
					t.Errorf("after a second retry %d messages, want still %d", n, tc.wantSends)
				}
			}
			var enr model.Enrollment
			h.db.First(&enr)
			if enr.Status != tc.wantEnr {
				t.Errorf("enrollment is %s (%s), want %s", enr.Status, enr.EndReason, tc.wantEnr)
			}
		})
	}
	t.Run("not while the journey is paused", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.publish(src)
		h.rec.fail(channels.WeChatText, busy)
		h.subscribe("o1", "")
		h.drain()
		h.rec.fail(channels.WeChatText, nil)
		if _, err := h.e.Pause(h.ctx, "welcome"); err != nil {
			t.Fatal(err)
		}
		var d model.Delivery
		h.db.First(&d)
		if _, err := h.e.RetryDelivery(h.ctx, d.ID); !errors.Is(err, journey.ErrRetryNotSafe) {
			t.Errorf("RetryDelivery in a paused journey = %v, want ErrRetryNotSafe", err)
		}
		if _, err := h.e.Resume(h.ctx, "welcome"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.e.RetryDelivery(h.ctx, d.ID); err != nil {
			t.Errorf("RetryDelivery once resumed = %v", err)
		}
		if n := len(h.rec.messages()); n != 2 {
			t.Errorf("%d messages handed to the channel, want 2 (the failure, the retry once resumed)", n)
		}
	})
	t.Run("not once the member entered the journey again", func(t *testing.T) {
		t.Parallel()
		h := newHarnessWith(t, func(c *journey.Config) { c.MaxAttempts = 1 })
		h.publish(src)
		h.rec.fail(channels.WeChatText, busy)
		h.subscribe("o1", "")
		h.drain()
		var d model.Delivery
		h.db.First(&d)
		// The member enters again: the new enrollment is active (its send
		// is held for a spent quota).
		h.rec.fail(channels.WeChatText, &channels.Error{Class: channels.ErrQuota, Code: 45009, Msg: "quota"})
		h.subscribe("o1", "")
		h.drain()
		var active int64
		h.db.Model(&model.Enrollment{}).Where("status = ?", model.EnrollmentActive).Count(&active)
		if n := h.count(&model.Enrollment{}); n != 2 || active != 1 {
			t.Fatalf("%d enrollments after the second follow, %d active; want 2, 1", n, active)
		}
		h.rec.fail(channels.WeChatText, nil)
		before := len(h.rec.messages())
		if _, err := h.e.RetryDelivery(h.ctx, d.ID); !errors.Is(err, journey.ErrRetryNotSafe) {
			t.Errorf("RetryDelivery of the first enrollment = %v, want ErrRetryNotSafe", err)
		}
		if n := len(h.rec.messages()); n != before {
			t.Errorf("a refused retry sent %d messages", n-before)
		}
	})
	t.Run("no such delivery", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		if _, err := h.e.RetryDelivery(h.ctx, 42); !errors.Is(err, journey.ErrNoDelivery) {
			t.Errorf("RetryDelivery(42) = %v, want ErrNoDelivery", err)
		}
	})
}
