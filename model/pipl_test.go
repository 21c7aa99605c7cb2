package model

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
)

// TestExportAndEraseMember: alice (with a member merged into her) and bob
// each followed, entered journey 1, were sent a message, hold a grant and
// a segment membership. The export of alice holds all of hers and none of
// bob's; erasing her deletes her members and identities, blanks her
// events, enrollments and deliveries, ends her enrollment, and leaves the
// counts (and on SQLite the statistics' rollup) and bob as they were. On
// SQLite always; on PostgreSQL and MySQL when their URLs are set.
func TestExportAndEraseMember(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := testDB(t, dialect)
			if err := Migrate(db); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			at := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
			day := EntryDay(at)
			var ids [2]int64
			for i, who := range []string{"alice", "bob"} {
				m := Member{AppID: "wx1", OpenID: "o-" + who, Phone: "1380000000" + string(rune('1'+i)), Nickname: who,
					Tags: []string{"vip"}, Attrs: map[string]any{"city": "上海"}, CreatedAt: at, UpdatedAt: at}
				must(t, db.Create(&m).Error)
				ids[i] = m.ID
				must(t, db.Create(&MemberIdentity{Kind: IdentityOpenID, Value: "wx1/o-" + who, MemberID: m.ID}).Error)
				must(t, db.Create(&MemberIdentity{Kind: IdentityPhone, Value: m.Phone, MemberID: m.ID}).Error)
				ev := Event{DedupeKey: "wx:" + who, Type: "wechat.subscribe", Source: "wechat", Member: m.Ref(), MemberKey: m.Ref().Key(),
					Props: map[string]any{"nickname": who}, At: at, ReceivedAt: at, MemberID: &m.ID, RoutedAt: &at, Scene: "store1"}
				must(t, db.Create(&ev).Error)
				key := "1:" + who
				enr := Enrollment{JourneyID: 1, VersionID: 1, MemberID: m.ID, Status: EnrollmentActive, ActiveKey: &key, StepID: "wait",
					TriggerEventID: ev.ID, Event: map[string]any{"openid": "o-" + who}, EnteredAt: at, EnteredDay: day}
				must(t, db.Create(&enr).Error)
				v := StepVisit{EnrollmentID: enr.ID, Seq: 1, JourneyID: 1, VersionID: 1, StepID: "hello", MemberID: m.ID, Status: VisitDone,
					DueAt: at, Outcome: "sent", CreatedAt: at, EnteredDay: day}
				must(t, db.Create(&v).Error)
				must(t, db.Create(&StepVisit{EnrollmentID: enr.ID, Seq: 2, JourneyID: 1, VersionID: 1, StepID: "wait", MemberID: m.ID,
					Status: VisitScheduled, DueAt: at.Add(time.Hour), CreatedAt: at, EnteredDay: day}).Error)
				must(t, db.Create(&Delivery{StepVisitID: v.ID, Channel: "wechat.text", EnrollmentID: enr.ID, JourneyID: 1, MemberID: m.ID,
					To: "o-" + who, Status: DeliverySent, Payload: `{"text":"hi ` + who + `"}`, CreatedAt: at, EnteredDay: day}).Error)
				must(t, db.Create(&SubscribeGrant{MemberID: m.ID, AppID: "wx1", TemplateID: "t1", GrantedAt: at}).Error)
				must(t, db.Create(&SegmentMember{JourneyID: 1, MemberID: m.ID, MatchedAt: at}).Error)
			}
			alice := ids[0]
			merged := Member{AppID: "wx1", OpenID: "o-alice-old", Nickname: "alice (old)", MergedInto: &alice, CreatedAt: at, UpdatedAt: at}
			must(t, db.Create(&merged).Error)

			exp, err := ExportMember(ctx, db, alice, at)
			if err != nil {
				t.Fatal(err)
			}
			if exp.Member.Nickname != "alice" || len(exp.Merged) != 1 || len(exp.Identities) != 2 || len(exp.Events) != 1 ||
				len(exp.Enrollments) != 1 || len(exp.Visits) != 2 || len(exp.Deliveries) != 1 || len(exp.Grants) != 1 || len(exp.Segments) != 1 {
				t.Fatalf("export of alice: %+v", exp)
			}
			if exp.Events[0].Props["nickname"] != "alice" || exp.Deliveries[0].To != "o-alice" {
				t.Errorf("export holds another member's rows: %+v %+v", exp.Events[0], exp.Deliveries[0])
			}
			if _, err := ExportMember(ctx, db, 999, at); !errors.Is(err, ErrNoMember) {
				t.Errorf("export of an unknown member: %v", err)
			}

			statsBefore := countsByStatus(t, db)
			res, err := EraseMember(ctx, db, alice, at.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if res.Members != 2 || res.Identities != 2 || res.Events != 1 || res.Ended != 1 || res.Deliveries != 1 || res.Grants != 1 || res.Segments != 1 {
				t.Errorf("erased %+v", res)
			}
			// Nothing of alice is found by her identities or her name.
			var n int64
			db.Model(&Member{}).Where("open_id LIKE ? OR nickname LIKE ?", "o-alice%", "alice%").Count(&n)
			if n != 0 {
				t.Errorf("%d members still named alice", n)
			}
			db.Model(&MemberIdentity{}).Where("member_id = ?", alice).Count(&n)
			if n != 0 {
				t.Errorf("%d identities of alice left", n)
			}
			var evs []Event
			db.Where("member_id = ?", alice).Find(&evs)
			if len(evs) != 1 || evs[0].Member.Key() != "" || len(evs[0].Props) != 0 || evs[0].Type != "wechat.subscribe" ||
				evs[0].Scene != "store1" || !strings.HasPrefix(evs[0].DedupeKey, "erased:") {
				t.Errorf("alice's event after erasure: %+v", evs)
			}
			var ds []Delivery
			db.Where("member_id = ?", alice).Find(&ds)
			if len(ds) != 1 || ds[0].To != "" || ds[0].Payload != "" || ds[0].Status != DeliverySent || ds[0].Channel != "wechat.text" {
				t.Errorf("alice's delivery after erasure: %+v", ds)
			}
			var enrs []Enrollment
			db.Where("member_id = ?", alice).Find(&enrs)
			if len(enrs) != 1 || enrs[0].Status != EnrollmentExited || enrs[0].EndReason != EndReasonErased || len(enrs[0].Event) != 0 || enrs[0].ActiveKey != nil {
				t.Errorf("alice's enrollment after erasure: %+v", enrs)
			}
			db.Model(&StepVisit{}).Where("member_id = ? AND status = ?", alice, VisitScheduled).Count(&n)
			if n != 0 {
				t.Errorf("%d visits of alice still scheduled", n)
			}
			// The visits and deliveries are still counted; the enrollment
			// moved from active to exited.
			after := countsByStatus(t, db)
			if !maps.Equal(after, statsBefore) || (dialect == "sqlite" && len(after) < 4) {
				t.Errorf("counts before %v, after %v", statsBefore, after)
			}
			// Bob is untouched.
			exp, err = ExportMember(ctx, db, ids[1], at)
			if err != nil || len(exp.Identities) != 2 || exp.Events[0].Props["nickname"] != "bob" || exp.Deliveries[0].To != "o-bob" ||
				exp.Enrollments[0].Status != EnrollmentActive {
				t.Errorf("bob after alice's erasure: %+v, %v", exp, err)
			}
			if _, err := EraseMember(ctx, db, alice, at); !errors.Is(err, ErrNoMember) {
				t.Errorf("erasing alice twice: %v", err)
			}
		})
	}
}

// countsByStatus counts the rows the journey statistics count and, on
// SQLite, the statistics' rollup (stats_counts) by kind.
func countsByStatus(t *testing.T, db *gorm.DB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for name, m := range map[string]any{"visits": &StepVisit{}, "deliveries": &Delivery{}, "enrollments": &Enrollment{}} {
		var n int64
		must(t, db.Model(m).Count(&n).Error)
		out[name] = n
	}
	if db.Dialector.Name() == "sqlite" {
		var rows []struct {
			Kind string
			N    int64
		}
		must(t, db.Raw("SELECT kind, SUM(n) AS n FROM stats_counts GROUP BY kind").Scan(&rows).Error)
		for _, r := range rows {
			out["rollup_"+r.Kind] = r.N
		}
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
