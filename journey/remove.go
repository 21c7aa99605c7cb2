package journey

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// EndReasonOperator is the end reason of an enrollment an operator ended
// (RemoveMember).
const EndReasonOperator = "operator"

// ErrNotEnrolled is the error of RemoveMember for a member not in the
// journey now.
var ErrNotEnrolled = errors.New("journey: the member is not in the journey")

// RemoveMember takes member memberID out of the journey with key: its
// active enrollment ends, exited with reason EndReasonOperator, and its
// scheduled and waiting visits are cancelled, as an exit rule would. A
// step running now finishes and leads nowhere. A member not in the journey
// is ErrNotEnrolled; an unknown key ErrUnknownJourney.
func (e *Engine) RemoveMember(ctx context.Context, key string, memberID int64) error {
	now := e.now()
	return e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var j model.Journey
		if err := tx.Where(&model.Journey{Key: key}).First(&j).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return fmt.Errorf("%w: %q", ErrUnknownJourney, key)
			}
			return fmt.Errorf("journey: load %q: %w", key, err)
		}
		var ids []int64
		if err := tx.Model(&model.Enrollment{}).Where("journey_id = ? AND member_id = ? AND status = 'active'", j.ID, memberID).
			Pluck("id", &ids).Error; err != nil {
			return fmt.Errorf("journey: find the enrollment of member %d in %q: %w", memberID, key, err)
		}
		ended := false
		for _, id := range ids {
			ok, err := endEnrollmentIf(tx, id, model.EnrollmentExited, EndReasonOperator, now, true)
			if err != nil {
				return err
			}
			ended = ended || ok
		}
		if !ended {
			return fmt.Errorf("%w: member %d, journey %q", ErrNotEnrolled, memberID, key)
		}
		e.log.Info(fmt.Sprintf("member %d removed from journey %s by an operator", memberID, key), "journey", key, "member", memberID)
		return nil
	})
}
