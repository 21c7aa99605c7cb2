package model

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// ErrNoMember is the error of ExportMember and EraseMember for an id no
// member has.
var ErrNoMember = errors.New("model: no such member")

// EndReasonErased is the end reason of the enrollments EraseMember ends.
const EndReasonErased = "erased"

// MemberExport is everything wejourney holds about one member, for a
// PIPL access request: the member, the members merged into it, their
// identities, events, enrollments, step visits, deliveries, subscription
// grants and segment memberships.
type MemberExport struct {
	ExportedAt  time.Time        `json:"exported_at"`
	Member      Member           `json:"member"`
	Merged      []Member         `json:"merged_members"`
	Identities  []MemberIdentity `json:"identities"`
	Events      []Event          `json:"events"`
	Enrollments []Enrollment     `json:"enrollments"`
	Visits      []StepVisit      `json:"step_visits"`
	Deliveries  []Delivery       `json:"deliveries"`
	Grants      []SubscribeGrant `json:"subscribe_grants"`
	Segments    []SegmentMember  `json:"segment_memberships"`
}

// memberFamily is the member id and the ids of the members merged into it
// (at any depth): the rows that hold one person's data.
func memberFamily(db *gorm.DB, id int64) ([]int64, error) {
	ids, next := []int64{id}, []int64{id}
	for len(next) > 0 && len(ids) < 10000 {
		var more []int64
		if err := db.Model(&Member{}).Where("merged_into IN ?", next).Pluck("id", &more).Error; err != nil {
			return nil, fmt.Errorf("model: members merged into %d: %w", id, err)
		}
		ids, next = append(ids, more...), more
	}
	return ids, nil
}

// ExportMember collects everything held about member id (MemberExport),
// at now. An unknown id is ErrNoMember.
func ExportMember(ctx context.Context, db *gorm.DB, id int64, now time.Time) (*MemberExport, error) {
	db = db.WithContext(ctx)
	out := &MemberExport{ExportedAt: now.UTC()}
	if err := db.First(&out.Member, id).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, fmt.Errorf("%w: %d", ErrNoMember, id)
		}
		return nil, fmt.Errorf("model: load member %d: %w", id, err)
	}
	ids, err := memberFamily(db, id)
	if err != nil {
		return nil, err
	}
	for _, q := range []struct {
		what string
		dest any
		cond string
		args any
	}{
		{"merged members", &out.Merged, "merged_into IN ?", ids},
		{"identities", &out.Identities, "member_id IN ?", ids},
		{"events", &out.Events, "member_id IN ?", ids},
		{"enrollments", &out.Enrollments, "member_id IN ?", ids},
		{"step visits", &out.Visits, "member_id IN ?", ids},
		{"deliveries", &out.Deliveries, "member_id IN ?", ids},
		{"subscribe grants", &out.Grants, "member_id IN ?", ids},
		{"segment memberships", &out.Segments, "member_id IN ?", ids},
	} {
		if err := db.Where(q.cond, q.args).Order("1").Find(q.dest).Error; err != nil {
			return nil, fmt.Errorf("model: export the %s of member %d: %w", q.what, id, err)
		}
	}
	return out, nil
}

// Erased counts the rows EraseMember deleted or anonymised, by table.
type Erased struct {
	Members     int64 `json:"members"`
	Identities  int64 `json:"identities"`
	Events      int64 `json:"events"`
	Enrollments int64 `json:"enrollments"`
	Ended       int64 `json:"enrollments_ended"`
	Visits      int64 `json:"step_visits"`
	Deliveries  int64 `json:"deliveries"`
	Grants      int64 `json:"subscribe_grants"`
	Segments    int64 `json:"segment_memberships"`
}

// EraseMember erases member id and the members merged into it (a PIPL
// deletion request), in one transaction, at now:
//
//   - members and member_identities rows are deleted, as are their
//     subscribe_grants and segment_members rows;
//   - their events keep their id, type, source, scene, times and member_id
//     (a tombstone: no member has it any more), and lose the member
//     reference, member key, props, error and dedupe key (erased:ID);
//   - their enrollments keep their journey, status and times and lose the
//     trigger event's copy; an active one ends (exited, EndReasonErased) and
//     its waiting visits are cancelled;
//   - their step visits keep everything but the error text;
//   - their deliveries keep channel, status, error code and times and lose
//     the address (To), payload, provider id and error text.
//
// Visits, deliveries and enrollments are anonymised, not deleted, so the
// journeys' counts stay as they were. An unknown id is ErrNoMember.
func EraseMember(ctx context.Context, db *gorm.DB, id int64, now time.Time) (Erased, error) {
	var out Erased
	now = now.UTC()
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&Member{}).Where("id = ?", id).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: %d", ErrNoMember, id)
		}
		ids, err := memberFamily(tx, id)
		if err != nil {
			return err
		}
		concat := "'erased:' || id"
		if tx.Dialector.Name() == "mysql" {
			concat = "CONCAT('erased:', id)"
		}
		steps := []struct {
			what  string
			count *int64
			run   func() *gorm.DB
		}{
			{"identities", &out.Identities, func() *gorm.DB {
				return tx.Where("member_id IN ?", ids).Delete(&MemberIdentity{})
			}},
			{"events", &out.Events, func() *gorm.DB {
				return tx.Model(&Event{}).Where("member_id IN ?", ids).Updates(map[string]any{
					"member": "{}", "member_key": "", "props": "{}", "error": "", "payload_hash": "",
					"dedupe_key": gorm.Expr(concat), "routed_at": gorm.Expr("COALESCE(routed_at, ?)", now)})
			}},
			{"ended enrollments", &out.Ended, func() *gorm.DB {
				return tx.Model(&Enrollment{}).Where("member_id IN ? AND status = ?", ids, EnrollmentActive).
					Updates(map[string]any{"status": EnrollmentExited, "end_reason": EndReasonErased, "ended_at": now, "active_key": nil})
			}},
			{"waiting visits", new(int64), func() *gorm.DB {
				return tx.Model(&StepVisit{}).Where("member_id IN ? AND status IN ?", ids, []string{VisitScheduled, VisitWaiting}).
					Updates(map[string]any{"status": VisitCancelled, "outcome": EndReasonErased, "finished_at": now})
			}},
			{"enrollments", &out.Enrollments, func() *gorm.DB {
				return tx.Model(&Enrollment{}).Where("member_id IN ?", ids).Update("event", "{}")
			}},
			{"step visits", &out.Visits, func() *gorm.DB {
				return tx.Model(&StepVisit{}).Where("member_id IN ?", ids).Update("error", "")
			}},
			{"deliveries", &out.Deliveries, func() *gorm.DB {
				return tx.Model(&Delivery{}).Where("member_id IN ?", ids).
					Updates(map[string]any{"to": "", "payload": "", "provider_id": "", "error": ""})
			}},
			{"subscribe grants", &out.Grants, func() *gorm.DB {
				return tx.Where("member_id IN ?", ids).Delete(&SubscribeGrant{})
			}},
			{"segment memberships", &out.Segments, func() *gorm.DB {
				return tx.Where("member_id IN ?", ids).Delete(&SegmentMember{})
			}},
			{"members", &out.Members, func() *gorm.DB {
				return tx.Where("id IN ?", ids).Delete(&Member{})
			}},
		}
		for _, s := range steps {
			res := s.run()
			if res.Error != nil {
				return fmt.Errorf("model: erase the %s of member %d: %w", s.what, id, res.Error)
			}
			*s.count = res.RowsAffected
		}
		return nil
	})
	if err != nil {
		return Erased{}, err
	}
	return out, nil
}
