package journey

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/model"
)

// ErrNoDelivery means no delivery has the id RetryDelivery was given.
var ErrNoDelivery = errors.New("journey: no such delivery")

// ErrRetryNotSafe means a delivery may not be sent again by hand; the
// error wrapping it says why.
var ErrRetryNotSafe = errors.New("journey: not safe to send again")

// RetryState is what decides whether a failed delivery may be sent again
// by hand (RetrySafe): the delivery, its step visit, its enrollment, the
// last visit's Seq of that enrollment and the journey's status.
type RetryState struct {
	Delivery      model.Delivery
	Visit         model.StepVisit
	Enrollment    model.Enrollment
	LastSeq       int
	JourneyStatus string
}

// RetrySafe returns nil when s's delivery may be sent again by hand, else
// an error wrapping ErrRetryNotSafe that says why. Safe is: the delivery
// failed, the provider answered that it could not take it for now or that
// a quota was spent (channels.StoredFailure.Retryable: never a permanent
// or unreachable failure, nor one the provider may have taken), the
// journey is neither archived nor paused, and the enrollment either still waits at that
// step to retry it (active, the visit scheduled) or ended failed at that
// very step (its last visit).
func RetrySafe(s RetryState) error {
	d, v, enr := s.Delivery, s.Visit, s.Enrollment
	switch {
	case d.Status != model.DeliveryFailed:
		return fmt.Errorf("%w: the delivery is %s, not failed", ErrRetryNotSafe, d.Status)
	case !channels.Reason(d.Channel, d.ErrorCode, d.Error).Retryable():
		return fmt.Errorf("%w: the failure is %s, not temporary", ErrRetryNotSafe, channels.StoredClass(d.Error))
	case s.JourneyStatus == model.JourneyArchived:
		return fmt.Errorf("%w: the journey is archived", ErrRetryNotSafe)
	case s.JourneyStatus == model.JourneyPaused:
		// Its steps are held: the retry would wait for Resume.
		return fmt.Errorf("%w: the journey is paused; resume it first", ErrRetryNotSafe)
	case v.ID != d.StepVisitID || enr.ID != d.EnrollmentID || enr.StepID != v.StepID:
		return fmt.Errorf("%w: the member has moved on from that step", ErrRetryNotSafe)
	case enr.Status == model.EnrollmentActive && v.Status == model.VisitScheduled:
		return nil
	case enr.Status == model.EnrollmentFailed && enr.EndReason == ReasonFailed && v.Status == model.VisitFailed && v.Seq == s.LastSeq:
		return nil
	}
	return fmt.Errorf("%w: the member's journey is %s at that step (visit %s)", ErrRetryNotSafe, enr.Status, v.Status)
}

// LoadRetryState reads what RetrySafe decides from, for delivery id.
func LoadRetryState(db *gorm.DB, id int64) (RetryState, error) {
	var s RetryState
	if err := db.First(&s.Delivery, id).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return s, ErrNoDelivery
		}
		return s, fmt.Errorf("journey: load delivery: %w", err)
	}
	if err := db.First(&s.Visit, s.Delivery.StepVisitID).Error; err != nil {
		return s, fmt.Errorf("journey: load the delivery's visit: %w", err)
	}
	if err := db.Select("id", "journey_id", "member_id", "status", "step_id", "end_reason").
		First(&s.Enrollment, s.Delivery.EnrollmentID).Error; err != nil {
		return s, fmt.Errorf("journey: load the delivery's enrollment: %w", err)
	}
	if err := db.Model(&model.StepVisit{}).Where("enrollment_id = ?", s.Enrollment.ID).
		Select("COALESCE(MAX(seq), 0)").Scan(&s.LastSeq).Error; err != nil {
		return s, fmt.Errorf("journey: load the enrollment's last visit: %w", err)
	}
	var j model.Journey
	if err := db.Select("id", "status").First(&j, s.Enrollment.JourneyID).Error; err != nil {
		return s, fmt.Errorf("journey: load the delivery's journey: %w", err)
	}
	s.JourneyStatus = j.Status
	return s, nil
}

// RetryDelivery sends a failed delivery again, by hand, where that is safe
// (RetrySafe, checked again in the transaction that reopens it): its step
// visit is scheduled again, due now, with its attempts reset, and an
// enrollment that had ended failed at that step is active again. The
// step then runs through the normal path (RunStep): the message goes out
// under the same delivery row and idempotency key ("wj-<id>"), at most once
// for this retry. It returns the delivery as it stands after the run.
func (e *Engine) RetryDelivery(ctx context.Context, id int64) (model.Delivery, error) {
	db := e.cfg.DB.WithContext(ctx)
	now := e.now()
	var visit model.StepVisit
	e.slot.lock(ctx)
	err := db.Transaction(func(tx *gorm.DB) error {
		s, err := LoadRetryState(tx, id)
		if err != nil {
			return err
		}
		if err := RetrySafe(s); err != nil {
			return err
		}
		visit = s.Visit
		enr := s.Enrollment
		if enr.Status == model.EnrollmentFailed {
			res := tx.Model(&model.Enrollment{}).Where("id = ? AND status = ?", enr.ID, model.EnrollmentFailed).
				Updates(map[string]any{"status": model.EnrollmentActive, "active_key": activeKey(enr.JourneyID, enr.MemberID),
					"ended_at": nil, "end_reason": ""})
			if res.Error != nil {
				// The unique active key: the member entered the journey again.
				return fmt.Errorf("%w: the member is in the journey again (%w)", ErrRetryNotSafe, res.Error)
			}
			if res.RowsAffected == 0 {
				return fmt.Errorf("%w: the member's journey changed meanwhile", ErrRetryNotSafe)
			}
		}
		res := tx.Model(&model.StepVisit{}).Where("id = ? AND status = ?", visit.ID, visit.Status).
			Updates(map[string]any{"status": model.VisitScheduled, "due_at": now, "attempts": 0, "outcome": "",
				"finished_at": nil, "lease_until": nil, "error": ""})
		if res.Error != nil {
			return fmt.Errorf("journey: reschedule the visit: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("%w: the step is running or changed meanwhile", ErrRetryNotSafe)
		}
		return nil
	})
	e.slot.unlock(ctx)
	if err != nil {
		return model.Delivery{}, err
	}
	e.log.Info("delivery retried by hand", "delivery", id, "visit", visit.ID, "step", visit.StepID)
	if err := e.RunStep(ctx, visit.ID); err != nil {
		// The visit is due now: the sweeper runs it.
		e.log.Warn("retried delivery's step did not run now; the sweeper will", "delivery", id, "err", err)
	}
	var d model.Delivery
	if err := db.First(&d, id).Error; err != nil {
		return d, fmt.Errorf("journey: reload delivery: %w", err)
	}
	return d, nil
}
