package journey

import (
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// ReasonMerged ends the enrollment of a merged-away member in a journey the
// member it was merged into is already in: one stays, none doubles.
const ReasonMerged = "merged"

// platformKinds are the identities that name one person wherever they are
// found together: two members holding them are merged.
var platformKinds = []string{model.IdentityOpenID, model.IdentityMPOpenID, model.IdentityExternalUserID,
	model.IdentityUnionID, model.IdentityUserID}

// mergeable reports whether two members found by this identity kind are one
// person: the platform identities always, phone and email when
// Config.MergeBy names them.
func (e *Engine) mergeable(kind string) bool {
	return slices.Contains(platformKinds, kind) || slices.Contains(e.cfg.MergeBy, kind)
}

// mergeTargets picks, from the identity rows an event's identities found,
// the member the event belongs to and the members to merge into it. The
// members found by mergeable identities are one person: the oldest is kept
// and the others are merged into it. Members found only by other
// identities (a phone on another member, without MergeBy) are left alone;
// the event goes to the oldest of them only when nothing else was found.
func (e *Engine) mergeTargets(found []model.MemberIdentity) (keep int64, others []int64) {
	var strong, weak []int64
	for _, f := range found {
		if e.mergeable(f.Kind) {
			strong = append(strong, f.MemberID)
		} else {
			weak = append(weak, f.MemberID)
		}
	}
	ids := strong
	if len(ids) == 0 {
		ids = weak
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(strong) == 0 {
		return ids[0], nil
	}
	return ids[0], ids[1:]
}

// mergeMembers merges the members others into m inside tx: their
// identities, events, visits, deliveries and enrollments move to m (an
// active enrollment in a journey m is already active in ends as
// ReasonMerged, its waiting visits cancelled: one stays); their profile
// fills what m lacks; each is marked MergedInto m. m is changed in memory;
// the caller saves it.
func (e *Engine) mergeMembers(tx *gorm.DB, m *model.Member, others []int64, now time.Time) error {
	var olds []model.Member
	if err := tx.Where("id IN ?", others).Order("id").Find(&olds).Error; err != nil {
		return fmt.Errorf("journey: load members to merge: %w", err)
	}
	// The active enrollments of all of them, one statement: the kept
	// member's first, then each merged one's in id order.
	var active []model.Enrollment
	if err := tx.Where(activeOfMembers, append([]int64{m.ID}, others...)).Order("id").Find(&active).Error; err != nil {
		return fmt.Errorf("journey: load enrollments: %w", err)
	}
	in := map[int64]bool{}
	theirs := map[int64][]model.Enrollment{}
	for _, enr := range active {
		if enr.MemberID == m.ID {
			in[enr.JourneyID] = true
		} else {
			theirs[enr.MemberID] = append(theirs[enr.MemberID], enr)
		}
	}
	for i := range olds {
		o := &olds[i]
		for _, enr := range theirs[o.ID] {
			if in[enr.JourneyID] {
				if err := endEnrollment(tx, enr.ID, model.EnrollmentExited, ReasonMerged, now, true); err != nil {
					return err
				}
				continue
			}
			// It moves with the member's other rows below.
			in[enr.JourneyID] = true
			if err := tx.Model(&model.Enrollment{}).Where("id = ?", enr.ID).
				Update("active_key", activeKey(enr.JourneyID, m.ID)).Error; err != nil {
				return fmt.Errorf("journey: move enrollment: %w", err)
			}
		}
		for _, t := range []any{&model.MemberIdentity{}, &model.Event{}, &model.Enrollment{}, &model.StepVisit{}, &model.Delivery{}, &model.SubscribeGrant{}} {
			if err := tx.Model(t).Where("member_id = ?", o.ID).Update("member_id", m.ID).Error; err != nil {
				return fmt.Errorf("journey: move %T of a merged member: %w", t, err)
			}
		}
		absorb(m, o)
		if err := tx.Model(&model.Member{}).Where("id = ?", o.ID).
			Updates(map[string]any{"merged_into": m.ID, "updated_at": now}).Error; err != nil {
			return fmt.Errorf("journey: mark member merged: %w", err)
		}
		e.log.Info("members merged", "member", m.ID, "merged", o.ID)
	}
	return nil
}

// absorb fills m's profile from o, merged into it: identities and fields m
// lacks, tags, attributes m does not have, subscriptions m does not know,
// the later interaction. m's first scene stays unless it has none.
func absorb(m, o *model.Member) {
	fillMember(m, model.MemberRef{AppID: o.AppID, OpenID: o.OpenID, UnionID: o.UnionID, ExternalUserID: o.ExternalUserID,
		Phone: o.Phone, Email: o.Email, UserID: o.UserID, MPAppID: o.MPAppID, MPOpenID: o.MPOpenID})
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&m.Nickname, o.Nickname)
	fill(&m.FirstScene, o.FirstScene)
	fill(&m.LastScene, o.LastScene)
	for _, t := range o.Tags {
		if !slices.Contains(m.Tags, t) {
			m.Tags = append(m.Tags, t)
		}
	}
	for k, v := range o.Attrs {
		if _, ok := m.Attrs[k]; !ok {
			if m.Attrs == nil {
				m.Attrs = map[string]any{}
			}
			m.Attrs[k] = v
		}
	}
	for app, st := range o.Subscriptions {
		if _, ok := m.Subscriptions[app]; !ok {
			m.SetSubscription(app, st)
		}
	}
	if m.SubscribedAt == nil {
		m.SubscribedAt = o.SubscribedAt
	}
	if o.LastInteractionAt != nil && (m.LastInteractionAt == nil || o.LastInteractionAt.After(*m.LastInteractionAt)) {
		m.LastInteractionAt = o.LastInteractionAt
		if o.LastScene != "" {
			m.LastScene = o.LastScene
		}
	}
	m.Subscribed = m.Subscription("") == model.SubscriptionSubscribed
}
