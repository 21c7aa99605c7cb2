package handler

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// waitYAML is a live journey whose members wait an hour before a message.
const waitYAML = "key: nurture\nname: 培育\ntrigger: { event: wechat.subscribe }\nsteps:\n  - { id: pause, wait: 1h, next: hello }\n  - { id: hello, send: { channel: wechat.text, text: hi } }\n"

// alice is the member the members console tests look at.
const (
	aliceOpenID = "oAlice0123456789abcdefghij"
	alicePhone  = "13800001234"
)

// memberFixture seeds alice (every identity, tags, an attribute, a follow,
// an SMS opt-out; an event at 10:00, a step visit at 10:05 and a failed
// delivery at 10:10 CST) and bob, and returns alice's id.
func memberFixture(t *testing.T, app *adminApp) (alice, bob int64) {
	t.Helper()
	db := app.db
	at := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC) // 10:00 CST
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.Create(&model.Account{Kind: model.AccountWeChatOA, AppID: "wx1", Name: "品牌服务号"}).Error)
	last := at.Add(10 * time.Minute)
	a := model.Member{AppID: "wx1", OpenID: aliceOpenID, UnionID: "uAlice", Phone: alicePhone, Email: "alice@example.com",
		Nickname: "爱丽丝", Subscribed: true, Tags: []string{"vip-gold"}, Attrs: map[string]any{"city": "上海"},
		FirstScene: "store-nanjing", LastScene: "store-nanjing", LastInteractionAt: &last,
		Subscriptions: map[string]string{"wx1": model.SubscriptionSubscribed},
		OptOuts:       map[string]time.Time{"sms": at.Add(-24 * time.Hour)}, CreatedAt: at, UpdatedAt: at}
	must(db.Create(&a).Error)
	b := model.Member{AppID: "wx1", OpenID: "oBob0123456789abcdefghijkl", Nickname: "Bob_1", Tags: []string{"vip"}, CreatedAt: at, UpdatedAt: at}
	must(db.Create(&b).Error)
	for _, id := range []model.MemberIdentity{
		{Kind: model.IdentityOpenID, Value: "wx1/" + aliceOpenID, MemberID: a.ID},
		{Kind: model.IdentityUnionID, Value: "uAlice", MemberID: a.ID},
		{Kind: model.IdentityPhone, Value: alicePhone, MemberID: a.ID},
		{Kind: model.IdentityEmail, Value: "alice@example.com", MemberID: a.ID},
		{Kind: model.IdentityOpenID, Value: "wx1/" + b.OpenID, MemberID: b.ID},
	} {
		must(db.Create(&id).Error)
	}
	must(db.Create(&model.Event{DedupeKey: "e1", Type: "wechat.subscribe", Source: "wechat", Member: a.Ref(), MemberKey: a.Ref().Key(),
		Props: map[string]any{"scene": "store-nanjing"}, At: at, ReceivedAt: at, MemberID: &a.ID, RoutedAt: &at, Scene: "store-nanjing"}).Error)
	j := model.Journey{Key: "welcome", Name: "欢迎", Status: model.JourneyArchived}
	must(db.Create(&j).Error)
	day := model.EntryDay(at)
	enr := model.Enrollment{JourneyID: j.ID, VersionID: 1, MemberID: a.ID, Status: model.EnrollmentCompleted, StepID: "hello",
		TriggerEventID: 1, EnteredAt: at, EnteredDay: day}
	must(db.Create(&enr).Error)
	v := model.StepVisit{EnrollmentID: enr.ID, Seq: 1, JourneyID: j.ID, VersionID: 1, StepID: "hello", MemberID: a.ID, Status: model.VisitDone,
		DueAt: at.Add(5 * time.Minute), Outcome: "failed", CreatedAt: at.Add(5 * time.Minute), EnteredDay: day}
	must(db.Create(&v).Error)
	must(db.Create(&model.Delivery{StepVisitID: v.ID, Channel: "wechat.text", EnrollmentID: enr.ID, JourneyID: j.ID, MemberID: a.ID,
		To: aliceOpenID, Status: model.DeliveryFailed, ErrorCode: 43004, CreatedAt: at.Add(10 * time.Minute), EnteredDay: day}).Error)
	return a.ID, b.ID
}

// routeAll routes the stored, unrouted events as the worker would.
func routeAll(t *testing.T, app *adminApp) {
	t.Helper()
	var ids []int64
	app.db.Model(&model.Event{}).Where("routed_at IS NULL").Pluck("id", &ids)
	eng := journey.New(journey.Config{DB: app.db, Logger: slog.New(slog.DiscardHandler)})
	if err := eng.Route(t.Context(), ids...); err != nil {
		t.Fatal(err)
	}
}

// enrollmentOf returns the status and end reason of the member's newest
// enrollment in journey key ("" when none).
func enrollmentOf(app *adminApp, member int64, key string) (status, reason string) {
	var e model.Enrollment
	app.db.Joins("JOIN journeys ON journeys.id = enrollments.journey_id").
		Where("enrollments.member_id = ? AND journeys.key = ?", member, key).Order("enrollments.id DESC").Limit(1).Find(&e)
	return e.Status, e.EndReason
}

// testAllowance is a customer-service allowance on the test's Redis
// (WEJOURNEY_TEST_REDIS_URL) or an in-process one.
func testAllowance(t *testing.T) *wechat.Allowance {
	t.Helper()
	var rdb *redis.Client
	if u := os.Getenv("WEJOURNEY_TEST_REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		rdb = redis.NewClient(opt)
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	}
	t.Cleanup(func() { rdb.Close() })
	return wechat.NewAllowance(rdb, wechat.AllowanceConfig{})
}

func TestConsoleMembers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp, alice, bob int64)
	}{
		{"the search page says what to search for", func(t *testing.T, app *adminApp, alice, bob int64) {
			view := signedIn(t, app, "view")
			wantStatus(t, "zh-CN", view.do("GET", "/admin/members?lang=zh-CN", nil), 200, `id="empty"`, "输入会员的 OpenID")
			wantStatus(t, "en", view.do("GET", "/admin/members?lang=en", nil), 200, `id="empty"`, "Type a member&#39;s OpenID")
		}},
		{"a search by each field finds alice, and only her", func(t *testing.T, app *adminApp, alice, bob int64) {
			view := signedIn(t, app, "view")
			for _, s := range []struct{ field, q, detected string }{
				{"openid", aliceOpenID, "openid"}, {"", aliceOpenID, "openid"}, {"", "wx1/" + aliceOpenID, "openid"},
				{"unionid", "uAlice", "unionid"}, {"openid", "uAlice", "openid"},
				{"phone", alicePhone, "phone"}, {"", "+86 138-0000-1234", "phone"},
				{"email", "Alice@Example.com", "email"}, {"", "alice@example.com", "email"},
				{"nickname", "爱丽", "nickname"}, {"", "爱丽丝", "nickname"},
				{"tag", "vip-gold", "tag"}, {"scene", "store-nanjing", "scene"},
				{"id", fmt.Sprint(alice), "id"}, {"", fmt.Sprint(alice), "id"},
			} {
				what := fmt.Sprintf("search %q by %q", s.q, s.field)
				rec := view.do("GET", "/admin/members?lang=en&"+url.Values{"q": {s.q}, "field": {s.field}}.Encode(), nil)
				wantStatus(t, what, rec, 200, fmt.Sprintf(`data-member="%d"`, alice), "爱丽丝", "138****1234")
				if strings.Contains(rec.Body.String(), fmt.Sprintf(`data-member="%d"`, bob)) {
					t.Errorf("%s lists bob", what)
				}
				if s.detected == "tag" && !strings.Contains(rec.Body.String(), "tags text row by row") {
					t.Errorf("%s does not say how a tag search reads", what)
				}
				if !strings.Contains(s.q, "1234") && strings.Contains(rec.Body.String(), alicePhone) {
					t.Errorf("%s shows the whole phone number", what)
				}
			}
			// A nickname's _ is no wildcard.
			for q, want := range map[string]int{"Bob_": 1, "Bo_": 0, "B%": 0} {
				if n := searchRows(t, view, q); n != want {
					t.Errorf("nickname %q lists %d members; want %d", q, n, want)
				}
			}
			// "vip" is bob's tag, not a prefix match of alice's "vip-gold".
			rec := view.do("GET", "/admin/members?field=tag&q=vip", nil)
			wantStatus(t, "tag vip", rec, 200, fmt.Sprintf(`data-member="%d"`, bob))
			if strings.Contains(rec.Body.String(), fmt.Sprintf(`data-member="%d"`, alice)) {
				t.Error("tag vip lists alice (vip-gold)")
			}
			wantStatus(t, "no match", view.do("GET", "/admin/members?lang=zh-CN&q=oNobody0123456789abcdefgh", nil), 200, `id="no-match"`, "没有找到匹配的会员")
		}},
		{"the member page shows identities, tags, opt-out, allowance and a timeline newest first", func(t *testing.T, app *adminApp, alice, bob int64) {
			al := testAllowance(t)
			// The allowance the sender keeps: a message from alice now opens 5 within 48 h.
			now := time.Now()
			if err := al.Open(t.Context(), "wx1", aliceOpenID, wechat.WindowMessage, now.Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			app.admin.cfg.CSAllowance = al
			view := signedIn(t, app, "view")
			for _, l := range []struct {
				lang string
				want []string
			}{
				{"zh-CN", []string{"公众号 OpenID", aliceOpenID, "uAlice", "138****1234", "vip-gold", "上海", "品牌服务号", "已关注",
					"短信: 退订于 2026-11-19 10:00:00 CST", "<strong>5</strong> 条可发", "会员没有关注公众号。", "微信文本", "已完成", "失败"}},
				{"en", []string{"Official Account OpenID", aliceOpenID, "138****1234", "vip-gold", "Following", "SMS: opted out at 2026-11-19 10:00:00 CST",
					"<strong>5</strong> messages may still be sent", "The member does not follow the Official Account.", "WeChat text", "Done"}},
			} {
				rec := view.do("GET", fmt.Sprintf("/admin/members/%d?lang=%s", alice, l.lang), nil)
				wantStatus(t, "member page "+l.lang, rec, 200, l.want...)
				full := rec.Body.String()
				page := full[strings.Index(full, `id="timeline"`):]
				// Newest first: the delivery (10:10), the visit (10:05), the event (10:00).
				d, v, e := strings.Index(page, "2026-11-20 10:10:00 CST"), strings.Index(page, "2026-11-20 10:05:00 CST"), strings.Index(page, "2026-11-20 10:00:00 CST")
				if d < 0 || v < 0 || e < 0 || !(d < v && v < e) {
					t.Errorf("%s: timeline order delivery %d, visit %d, event %d; want newest first", l.lang, d, v, e)
				}
				for _, kind := range []string{`class="tl-event"`, `class="tl-visit"`, `class="tl-delivery"`} {
					if !strings.Contains(page, kind) {
						t.Errorf("%s: the timeline has no %s", l.lang, kind)
					}
				}
				// A viewer sees no action forms.
				for _, form := range []string{"/enroll", "/remove", "/erase", "/export", "/tester"} {
					if strings.Contains(full, fmt.Sprintf(`action="/admin/members/%d%s"`, alice, form)) {
						t.Errorf("%s: a viewer is offered %s", l.lang, form)
					}
				}
			}
			wantStatus(t, "unknown member", view.do("GET", "/admin/members/99999?lang=zh-CN", nil), 404, "没有这位会员")
		}},
		{"a viewer cannot enroll, remove, export or erase; an operator cannot export or erase", func(t *testing.T, app *adminApp, alice, bob int64) {
			op := signedIn(t, app, "op")
			wantStatus(t, "publish", op.call("POST", "/api/v1/journeys/nurture/publish", waitYAML), 200)
			view := signedIn(t, app, "view")
			page := fmt.Sprintf("/admin/members/%d", alice)
			for _, a := range []struct {
				who  *browser
				op   string
				form url.Values
			}{
				{view, "enroll", url.Values{"journey": {"nurture"}}}, {view, "remove", url.Values{"journey": {"nurture"}}},
				{view, "export", url.Values{}}, {view, "erase", url.Values{"confirm": {"yes"}}}, {view, "tester", url.Values{"on": {"yes"}}},
				{op, "export", url.Values{}}, {op, "erase", url.Values{"confirm": {"yes"}}},
			} {
				wantStatus(t, a.op, a.who.post(page, page+"/"+a.op, a.form), 403, "你没有权限")
			}
			var n int64
			app.db.Model(&model.Event{}).Where("type = ?", "journey.enroll").Count(&n)
			if n != 0 {
				t.Error("a refused enroll stored an event")
			}
			if rows := searchRows(t, view, aliceOpenID); rows != 1 {
				t.Error("a refused erase erased alice")
			}
			wantStatus(t, "without CSRF", signedIn(t, app, "admin").do("POST", page+"/erase", url.Values{"confirm": {"yes"}}), 403)
		}},
		{"an operator enrolls alice, then removes her: audited", func(t *testing.T, app *adminApp, alice, bob int64) {
			op := signedIn(t, app, "op")
			wantStatus(t, "publish", op.call("POST", "/api/v1/journeys/nurture/publish", waitYAML), 200)
			page := fmt.Sprintf("/admin/members/%d", alice)
			wantStatus(t, "page offers the live journey", op.do("GET", page, nil), 200, `id="enroll-form"`, `<option value="nurture">培育 (nurture)</option>`)
			rec := op.post(page, page+"/enroll", url.Values{"journey": {"nurture"}})
			wantStatus(t, "enroll", rec, http.StatusSeeOther)
			routeAll(t, app)
			if st, _ := enrollmentOf(app, alice, "nurture"); st != model.EnrollmentActive {
				t.Fatalf("alice's enrollment is %q after enrolling; want active", st)
			}
			if !hasEntry(auditLog(t, app, ""), "op", AuditJourneyEnroll, "nurture") {
				t.Error("the enroll is not in the audit log")
			}
			wantStatus(t, "page shows it", op.do("GET", rec.Header().Get("Location"), nil), 200, "已加入旅程", `data-journey="nurture"`, "pause")
			wantStatus(t, "archived journey refused", op.post(page, page+"/enroll", url.Values{"journey": {"welcome"}}), 409, "没有在运行")

			wantStatus(t, "remove", op.post(page, page+"/remove", url.Values{"journey": {"nurture"}}), http.StatusSeeOther)
			if st, reason := enrollmentOf(app, alice, "nurture"); st != model.EnrollmentExited || reason != journey.EndReasonOperator {
				t.Errorf("alice's enrollment is %q (%q) after the removal; want exited (operator)", st, reason)
			}
			if !hasEntry(auditLog(t, app, ""), "op", AuditMemberRemove, fmt.Sprint(alice)) {
				t.Error("the removal is not in the audit log")
			}
			wantStatus(t, "remove again", op.post(page, page+"/remove", url.Values{"journey": {"nurture"}}), 409, "已不在这个旅程中")
		}},
		{"an admin exports alice's data as JSON, marks her a tester, then erases her", func(t *testing.T, app *adminApp, alice, bob int64) {
			adm := signedIn(t, app, "admin")
			page := fmt.Sprintf("/admin/members/%d", alice)
			wantStatus(t, "tester", adm.post(page, page+"/tester", url.Values{"on": {"yes"}}), http.StatusSeeOther)
			var m model.Member
			app.db.First(&m, alice)
			if !m.IsTester() {
				t.Error("alice is no tester after the mark")
			}
			rec := adm.post(page, page+"/export", url.Values{})
			wantStatus(t, "export", rec, 200)
			if cd := rec.Header().Get("Content-Disposition"); !strings.Contains(cd, "attachment") {
				t.Errorf("export Content-Disposition %q; want an attachment", cd)
			}
			var exp model.MemberExport
			if err := json.Unmarshal(rec.Body.Bytes(), &exp); err != nil {
				t.Fatalf("export is not JSON: %v", err)
			}
			if exp.Member.OpenID != aliceOpenID || len(exp.Events) != 1 || exp.Events[0].Type != "wechat.subscribe" || len(exp.Identities) != 4 || len(exp.Deliveries) != 1 {
				t.Errorf("export: member %q, %d events, %d identities, %d deliveries", exp.Member.OpenID, len(exp.Events), len(exp.Identities), len(exp.Deliveries))
			}
			wantStatus(t, "erase unconfirmed", adm.post(page, page+"/erase", url.Values{}), 400, "请勾选确认框")
			if searchRows(t, adm, aliceOpenID) != 1 {
				t.Fatal("an unconfirmed erase erased alice")
			}
			rec = adm.post(page, page+"/erase", url.Values{"confirm": {"yes"}})
			wantStatus(t, "erase", rec, http.StatusSeeOther)
			wantStatus(t, "after erase", adm.do("GET", rec.Header().Get("Location"), nil), 200, "会员已删除")
			if searchRows(t, adm, aliceOpenID) != 0 {
				t.Error("alice's openid is still found after the erase")
			}
			if searchRows(t, adm, "Bob_1") != 1 {
				t.Error("bob is gone too")
			}
			es := auditLog(t, app, "")
			for _, a := range []string{AuditMemberExport, AuditMemberErase, AuditMemberTester} {
				if !hasEntry(es, "admin", a, fmt.Sprint(alice)) {
					t.Errorf("no %s entry in the audit log", a)
				}
			}
			for _, e := range es {
				if strings.Contains(string(e.Detail), aliceOpenID) || strings.Contains(string(e.Detail), "爱丽丝") {
					t.Errorf("the audit log keeps erased data: %s %s", e.Action, e.Detail)
				}
			}
			wantStatus(t, "page after erase", adm.do("GET", page, nil), 404)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app := newConsoleApp(t)
			alice, bob := memberFixture(t, app)
			tc.run(t, app, alice, bob)
		})
	}
}

// searchRows counts the members a search for q lists.
func searchRows(t *testing.T, b *browser, q string) int {
	t.Helper()
	rec := b.do("GET", "/admin/members?"+url.Values{"q": {q}}.Encode(), nil)
	if rec.Code != 200 {
		t.Fatalf("search %q: %d", q, rec.Code)
	}
	return strings.Count(rec.Body.String(), "data-member=")
}
