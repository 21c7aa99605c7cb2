package handler

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/model"
)

// statsSource is the journey the statistics tests count.
const statsSource = `
key: welcome-store
trigger: { event: wechat.subscribe }
goal: { event: order.paid }
exit: [ { event: wechat.unsubscribe } ]
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: vip }
  - id: vip
    split:
      - { weight: 50, next: coupon_a }
      - { weight: 50, next: coupon_b }
  - { id: coupon_a, wait: 1h }
  - { id: coupon_b, wait: 1h }
`

// addStatsJourney records journey welcome-store and four members' passes
// through it, entered on 2026-11-15 (China time): one reached the goal
// down coupon_a, one exited at hello's message, one waits in coupon_b,
// one failed at hello.
func addStatsJourney(t *testing.T, app *adminApp) {
	t.Helper()
	entered := time.Date(2026, 11, 15, 4, 0, 0, 0, time.UTC)
	j := model.Journey{Key: "welcome-store", Status: model.JourneyActive}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(app.db.Create(&j).Error)
	v := model.JourneyVersion{JourneyID: j.ID, Version: 1, Source: statsSource, Hash: "h", Origin: "welcome-store.yaml"}
	must(app.db.Create(&v).Error)
	must(app.db.Model(&j).Update("current_version_id", v.ID).Error)
	type pass struct {
		status string
		visits [][3]string // step, status, outcome
		sent   string      // hello's delivery status
	}
	for i, p := range []pass{
		{model.EnrollmentGoal, [][3]string{{"hello", model.VisitDone, "sent"}, {"vip", model.VisitDone, "goal/arm:coupon_a"}, {"coupon_a", model.VisitCancelled, "goal:order.paid"}}, model.DeliverySent},
		{model.EnrollmentExited, [][3]string{{"hello", model.VisitDone, "sent"}, {"vip", model.VisitDone, "arm:coupon_a"}, {"coupon_a", model.VisitCancelled, "exit:wechat.unsubscribe"}}, model.DeliverySent},
		{model.EnrollmentActive, [][3]string{{"hello", model.VisitDone, "sent"}, {"vip", model.VisitDone, "arm:coupon_b"}, {"coupon_b", model.VisitWaiting, ""}}, model.DeliverySent},
		{model.EnrollmentFailed, [][3]string{{"hello", model.VisitFailed, "failed"}}, model.DeliveryFailed},
	} {
		e := model.Enrollment{JourneyID: j.ID, VersionID: v.ID, MemberID: int64(i + 1), Status: p.status, EnteredAt: entered, EnteredDay: model.EntryDay(entered)}
		must(app.db.Create(&e).Error)
		for seq, vs := range p.visits {
			sv := model.StepVisit{EnrollmentID: e.ID, Seq: seq + 1, JourneyID: j.ID, VersionID: v.ID, StepID: vs[0], MemberID: e.MemberID,
				Status: vs[1], Outcome: vs[2], DueAt: entered, EnteredDay: e.EnteredDay}
			must(app.db.Create(&sv).Error)
			if vs[0] == "hello" {
				must(app.db.Create(&model.Delivery{StepVisitID: sv.ID, Channel: "wechat.text", EnrollmentID: e.ID, JourneyID: j.ID,
					MemberID: e.MemberID, Status: p.sent, EnteredDay: e.EnteredDay}).Error)
			}
		}
	}
}

func TestJourneyStatsAPI(t *testing.T) {
	t.Parallel()
	const all = `{"journey":"welcome-store","entered":4,"active":1,"completed":0,"goal":1,"exited":1,"failed":1,` +
		`"steps":[{"id":"hello","reached":4,"passed":3,"waiting":0,"failed":1},{"id":"vip","reached":3,"passed":3,"waiting":0,"failed":0},` +
		`{"id":"coupon_a","reached":2,"passed":0,"waiting":0,"failed":0},{"id":"coupon_b","reached":1,"passed":0,"waiting":1,"failed":0}],` +
		`"splits":[{"step":"vip","arms":[{"next":"coupon_a","entered":2,"goal":1},{"next":"coupon_b","entered":1,"goal":0}]}],` +
		`"channels":[{"channel":"wechat.text","sent":3,"failed":1}]}`
	const none = `{"journey":"welcome-store","entered":0,"active":0,"completed":0,"goal":0,"exited":0,"failed":0,` +
		`"steps":[{"id":"hello","reached":0,"passed":0,"waiting":0,"failed":0},{"id":"vip","reached":0,"passed":0,"waiting":0,"failed":0},` +
		`{"id":"coupon_a","reached":0,"passed":0,"waiting":0,"failed":0},{"id":"coupon_b","reached":0,"passed":0,"waiting":0,"failed":0}],` +
		`"splits":[{"step":"vip","arms":[{"next":"coupon_a","entered":0,"goal":0},{"next":"coupon_b","entered":0,"goal":0}]}],` +
		`"channels":[]}`
	// The server's today is 2026-11-30 in China: the default range (the
	// last 30 days) holds 2026-11-15.
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	app := newAdminApp(t, AdminConfig{Now: func() time.Time { return now }})
	addStatsJourney(t, app)
	for _, tc := range []struct {
		name, key, path string
		status          int
		body            string // the whole JSON answer, or a part of it with status other than 200
	}{
		{"the default range: the last 30 days", "adm-key", "/api/v1/journeys/welcome-store/stats", 200, all},
		{"a range holding the entry day", "adm-key", "/api/v1/journeys/welcome-store/stats?from=2026-11-15&to=2026-11-15", 200, all},
		{"the day after", "adm-key", "/api/v1/journeys/welcome-store/stats?from=2026-11-16", 200, none},
		{"the day before (to is inclusive)", "adm-key", "/api/v1/journeys/welcome-store/stats?from=2026-11-01&to=2026-11-14", 200, none},
		{"a bad date", "adm-key", "/api/v1/journeys/welcome-store/stats?from=11/01/2026", 400, `want a date like 2026-11-30`},
		{"from after to", "adm-key", "/api/v1/journeys/welcome-store/stats?from=2026-11-20&to=2026-11-10", 400, `is after to`},
		{"an unknown journey", "adm-key", "/api/v1/journeys/nope/stats", 404, `no journey \"nope\"`},
		{"an events key", "ev-key", "/api/v1/journeys/welcome-store/stats", 403, `needs scope \"admin\"`},
		{"no key", "", "/api/v1/journeys/welcome-store/stats", 401, `sign in`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			rec := httptest.NewRecorder()
			app.h.ServeHTTP(rec, req)
			if tc.status != 200 {
				wantStatus(t, tc.name, rec, tc.status, tc.body)
				return
			}
			wantStatus(t, tc.name, rec, 200)
			var got, want any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("answer %s: %v", rec.Body, err)
			}
			json.Unmarshal([]byte(tc.body), &want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answer mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// The journeys list counts goals and exits apart: an unsubscribe is never
// a goal.
func TestJourneyListCountsGoalsApart(t *testing.T) {
	t.Parallel()
	app := newAdminApp(t, AdminConfig{})
	addStatsJourney(t, app)
	req := httptest.NewRequest("GET", "/api/v1/journeys", nil)
	req.Header.Set("Authorization", "Bearer adm-key")
	rec := httptest.NewRecorder()
	app.h.ServeHTTP(rec, req)
	var got struct{ Journeys []JourneyRow }
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("answer %d %s: %v", rec.Code, rec.Body, err)
	}
	want := JourneyRow{Key: "welcome-store", Status: model.JourneyActive, Version: 1, Entered: 4, Active: 1, Goal: 1, Exited: 1, Dropped: 1}
	for _, r := range got.Journeys {
		if r.Key == want.Key {
			r.ID = 0
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("journey row mismatch (-want +got):\n%s", diff)
			}
			return
		}
	}
	t.Errorf("no row for %s in %s", want.Key, rec.Body)
}
