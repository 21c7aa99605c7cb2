package handler

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// deliveriesApp is a fresh console (users admin, op, view as in
// newConsoleApp) whose wechat.text sender records every message and fails
// those a test configures, with the journey welcome published.
type deliveriesApp struct {
	*adminApp
	mu sync.Mutex
	// sends counts the messages handed to wechat.text by openid.
	sends map[string]int
	// fail is the error of the sends to an openid (nil: sent).
	fail map[string]error
	n    int
}

const deliveriesAppID = "wxdeliveries"

func newDeliveriesApp(t *testing.T) *deliveriesApp {
	t.Helper()
	db := consoleDB(t)
	db.Create(&model.Account{Kind: "oa", AppID: deliveriesAppID, Name: "Test OA"})
	app := &deliveriesApp{sends: map[string]int{}, fail: map[string]error{}}
	quiet := slog.New(slog.DiscardHandler)
	reg := channels.NewRegistry()
	reg.Register(channels.WeChatText, channels.SenderFunc(func(_ context.Context, msg channels.Message) (channels.Result, error) {
		app.mu.Lock()
		defer app.mu.Unlock()
		app.sends[msg.To.OpenID]++
		if err := app.fail[msg.To.OpenID]; err != nil {
			return channels.Result{}, err
		}
		return channels.Result{ProviderID: "m1"}, nil
	}), channels.Capabilities{Address: channels.ByOpenID})
	eng := journey.New(journey.Config{DB: db, Senders: reg, Logger: quiet})
	app.adminApp = consoleOn(t, db, Config{Journeys: eng, TestRuns: eng, Senders: reg})
	app.eng = eng
	if _, err := app.eng.PublishSource(t.Context(), "welcome", "welcome.yaml", []byte(welcomeYAML), "test"); err != nil {
		t.Fatal(err)
	}
	return app
}

// follow has openid follow from scene and runs the welcome step; err is
// what wechat.text answers.
func (app *deliveriesApp) follow(t *testing.T, openid, scene string, err error) {
	t.Helper()
	app.mu.Lock()
	app.fail[openid] = err
	app.n++
	n := app.n
	app.mu.Unlock()
	ev := &model.Event{Type: "wechat.subscribe", Source: "wechat", DedupeKey: fmt.Sprintf("t-%d", n), At: time.Now(),
		Member: model.MemberRef{AppID: deliveriesAppID, OpenID: openid}, Props: map[string]any{"scene": scene}, Scene: scene}
	ctx := t.Context()
	if _, _, err := app.ing.Ingest(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if err := app.eng.Route(ctx, ev.ID); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	app.db.Model(&model.StepVisit{}).Where("status = ?", model.VisitScheduled).Pluck("id", &ids)
	for _, id := range ids {
		if err := app.eng.RunStep(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// heal makes sends to openid succeed from now on.
func (app *deliveriesApp) heal(openid string) {
	app.mu.Lock()
	defer app.mu.Unlock()
	delete(app.fail, openid)
}

func (app *deliveriesApp) sent(openid string) int {
	app.mu.Lock()
	defer app.mu.Unlock()
	return app.sends[openid]
}

// deliveryOf is the delivery of openid's welcome.
func (app *deliveriesApp) deliveryOf(t *testing.T, openid string) model.Delivery {
	t.Helper()
	var d model.Delivery
	if err := app.db.Where("\"to\" = ?", openid).Take(&d).Error; err != nil {
		t.Fatalf("no delivery to %s: %v", openid, err)
	}
	return d
}

// tableRows returns the text of each row of the page's table id (tags
// removed, entities decoded, spaces collapsed), the header row first.
func tableRows(t *testing.T, page, id string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<table id="` + id + `">(.*?)</table>`).FindStringSubmatch(page)
	if m == nil {
		return nil
	}
	var rows []string
	for _, r := range regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`).FindAllStringSubmatch(m[1], -1) {
		txt := html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(r[1], " "))
		rows = append(rows, strings.Join(strings.Fields(txt), " "))
	}
	return rows
}

// rowWith returns the row of rows that contains s, or "".
func rowWith(rows []string, s string) string {
	for _, r := range rows[min(1, len(rows)):] {
		if strings.Contains(r, s) {
			return r
		}
	}
	return ""
}

var (
	outsideWindow = &channels.Error{Class: channels.ErrUnreachable, Code: 45015, Msg: "response out of time limit or subscription is canceled"}
	systemBusy    = &channels.Error{Code: -1, Msg: "system error"}
)

// TestConsoleDeliveries walks the Deliveries page and the dashboard as an
// operator and a viewer would, each scenario on a fresh app.
func TestConsoleDeliveries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *deliveriesApp)
	}{
		{"a failed 45015 delivery is explained in words, in Chinese and English", func(t *testing.T, app *deliveriesApp) {
			app.follow(t, "o_late", "store_1", outsideWindow)
			view := signedIn(t, app.adminApp, "view")
			rec := view.do("GET", "/admin/deliveries", nil)
			wantStatus(t, "deliveries page", rec, 200)
			row := rowWith(tableRows(t, rec.Body.String(), "delivery-list"), "o_late")
			for _, want := range []string{"超出 48 小时窗口：会员最近没有互动", "失败", "微信文本", "Welcome", "hello", "CST"} {
				if !strings.Contains(row, want) {
					t.Errorf("row of o_late %q lacks %q", row, want)
				}
			}
			rec = view.do("GET", "/admin/deliveries?lang=en", nil)
			row = rowWith(tableRows(t, rec.Body.String(), "delivery-list"), "o_late")
			for _, want := range []string{"outside the 48-hour window — the member has not interacted recently", "failed", "WeChat text"} {
				if !strings.Contains(row, want) {
					t.Errorf("English row of o_late %q lacks %q", row, want)
				}
			}
			op := signedIn(t, app.adminApp, "op")
			if body := op.do("GET", "/admin/deliveries", nil).Body.String(); strings.Contains(body, "/retry") {
				t.Error("an unreachable (45015) failure offers a retry")
			}
		}},
		{"filters narrow the list", func(t *testing.T, app *deliveriesApp) {
			app.follow(t, "o_fail", "store_1", outsideWindow)
			app.follow(t, "o_ok", "store_2", nil)
			view := signedIn(t, app.adminApp, "view")
			for _, f := range []struct {
				query      string
				want, not  []string
				emptyState bool
			}{
				{"", []string{"o_fail", "o_ok"}, nil, false},
				{"status=failed", []string{"o_fail"}, []string{"o_ok"}, false},
				{"status=sent", []string{"o_ok"}, []string{"o_fail"}, false},
				{"member=o_ok", []string{"o_ok"}, []string{"o_fail"}, false},
				{"channel=wechat.text&journey=welcome", []string{"o_fail", "o_ok"}, nil, false},
				{"channel=sms", nil, []string{"o_fail", "o_ok"}, true},
				{"journey=nope", nil, []string{"o_fail", "o_ok"}, true},
				{"member=o_nobody", nil, []string{"o_fail", "o_ok"}, true},
				{"from=" + time.Now().In(chinaTime).AddDate(0, 0, 1).Format("2006-01-02"), nil, []string{"o_fail", "o_ok"}, true},
				{"to=" + time.Now().In(chinaTime).Format("2006-01-02"), []string{"o_fail", "o_ok"}, nil, false},
			} {
				rec := view.do("GET", "/admin/deliveries?"+f.query, nil)
				wantStatus(t, f.query, rec, 200)
				rows := tableRows(t, rec.Body.String(), "delivery-list")
				for _, w := range f.want {
					if rowWith(rows, w) == "" {
						t.Errorf("?%s: no row of %s in %q", f.query, w, rows)
					}
				}
				for _, n := range f.not {
					if rowWith(rows, n) != "" {
						t.Errorf("?%s: a row of %s in %q", f.query, n, rows)
					}
				}
				if got := strings.Contains(rec.Body.String(), `id="deliveries-empty"`); got != f.emptyState {
					t.Errorf("?%s: empty state shown %v, want %v", f.query, got, f.emptyState)
				}
			}
			wantStatus(t, "a bad time", view.do("GET", "/admin/deliveries?from=yesterday", nil), 200, "时间格式应为")
		}},
		{"a temporary failure offers a retry to an operator, which sends once and is audited", func(t *testing.T, app *deliveriesApp) {
			app.follow(t, "o_busy", "store_1", systemBusy)
			app.follow(t, "o_late", "store_1", outsideWindow)
			d := app.deliveryOf(t, "o_busy")
			late := app.deliveryOf(t, "o_late")
			if d.Status != model.DeliveryFailed || app.sent("o_busy") != 1 {
				t.Fatalf("o_busy's delivery is %s after %d sends, want failed after 1", d.Status, app.sent("o_busy"))
			}
			retry := fmt.Sprintf(`action="/admin/deliveries/%d/retry"`, d.ID)
			view := signedIn(t, app.adminApp, "view")
			if strings.Contains(view.do("GET", "/admin/deliveries", nil).Body.String(), "/retry") {
				t.Error("a viewer is offered a retry")
			}
			op := signedIn(t, app.adminApp, "op")
			page := op.do("GET", "/admin/deliveries", nil).Body.String()
			if !strings.Contains(page, retry) {
				t.Errorf("the operator is offered no retry of the temporary failure %d", d.ID)
			}
			if strings.Contains(page, fmt.Sprintf(`/admin/deliveries/%d/retry`, late.ID)) {
				t.Error("the operator is offered a retry of the unreachable (45015) failure")
			}
			row := rowWith(tableRows(t, page, "delivery-list"), "o_busy")
			if !strings.Contains(row, "微信系统繁忙（已自动重试）") {
				t.Errorf("o_busy's row %q does not say WeChat was busy", row)
			}
			app.heal("o_busy")
			path := fmt.Sprintf("/admin/deliveries/%d/retry", d.ID)
			wantStatus(t, "viewer retries", view.post("/admin/deliveries", path, url.Values{}), 403, "你没有权限")
			if n := app.sent("o_busy"); n != 1 {
				t.Errorf("after the viewer's refused retry %d sends, want 1", n)
			}
			wantStatus(t, "operator retries the unreachable one", op.post("/admin/deliveries",
				fmt.Sprintf("/admin/deliveries/%d/retry", late.ID), url.Values{}), http.StatusSeeOther)
			if n := app.sent("o_late"); n != 1 {
				t.Errorf("a refused retry of the 45015 failure sent: %d sends, want 1", n)
			}
			rec := op.post("/admin/deliveries", path, url.Values{"back": {"/admin/deliveries?status=failed"}})
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/deliveries?status=failed&done=sent" {
				t.Fatalf("operator's retry: %d to %q, want 303 to the list with done=sent", rec.Code, rec.Header().Get("Location"))
			}
			if n := app.sent("o_busy"); n != 2 {
				t.Errorf("after the retry %d sends, want 2", n)
			}
			if got := app.deliveryOf(t, "o_busy"); got.Status != model.DeliverySent || got.ID != d.ID {
				t.Errorf("retried delivery is #%d %s, want #%d sent", got.ID, got.Status, d.ID)
			}
			wantStatus(t, "the confirmation", op.do("GET", "/admin/deliveries?done=sent", nil), 200, "已重试：消息已发出。")
			rec = op.post("/admin/deliveries", path, url.Values{})
			if loc := rec.Header().Get("Location"); !strings.Contains(loc, "error=refused") {
				t.Errorf("a second retry went to %q, want a refusal", loc)
			}
			if n := app.sent("o_busy"); n != 2 {
				t.Errorf("after a second retry %d sends, want still 2", n)
			}
			es := auditLog(t, app.adminApp, "?action="+AuditDeliveryRetry)
			if len(es) != 1 || !hasEntry(es, "op", AuditDeliveryRetry, fmt.Sprint(d.ID)) {
				t.Errorf("audit log has %d retries (%v), want op's retry of %d only", len(es), es, d.ID)
			}
		}},
		{"a retry the provider refuses again says so, and is audited", func(t *testing.T, app *deliveriesApp) {
			app.follow(t, "o_busy", "", systemBusy)
			d := app.deliveryOf(t, "o_busy")
			op := signedIn(t, app.adminApp, "op")
			rec := op.post("/admin/deliveries", fmt.Sprintf("/admin/deliveries/%d/retry", d.ID), url.Values{})
			loc := rec.Header().Get("Location")
			if loc != "/admin/deliveries?done=status&st=failed" {
				t.Fatalf("a retry that failed again went to %q", loc)
			}
			wantStatus(t, "the outcome", op.do("GET", loc, nil), 200, "已重试：消息当前状态为「失败」。")
			if n := app.sent("o_busy"); n != 2 {
				t.Errorf("%d sends, want 2 (the first, the retry)", n)
			}
			if es := auditLog(t, app.adminApp, "?action="+AuditDeliveryRetry); !hasEntry(es, "op", AuditDeliveryRetry, fmt.Sprint(d.ID)) {
				t.Errorf("the retry is not in the audit log: %v", es)
			}
		}},
		{"the dashboard counts a follow by scene and a failure reason", func(t *testing.T, app *deliveriesApp) {
			view := signedIn(t, app.adminApp, "view")
			empty := view.do("GET", "/admin/", nil).Body.String()
			for _, want := range []string{"还没有关注：用 wejourney simulate subscribe 试一下。", "最近 7 天没有失败的消息。"} {
				if !strings.Contains(empty, want) {
					t.Errorf("the empty dashboard lacks %q", want)
				}
			}
			app.follow(t, "o_a", "store_9", outsideWindow)
			app.follow(t, "o_b", "store_9", nil)
			app.follow(t, "o_c", "poster", nil)
			rec := view.do("GET", "/admin/", nil)
			wantStatus(t, "dashboard", rec, 200)
			page := rec.Body.String()
			follows := tableRows(t, page, "follows")
			if r := rowWith(follows, "store_9"); r != "store_9 2 0 2 0" {
				t.Errorf("follows row of store_9 = %q, want 2 today and 2 in 7 days", r)
			}
			if r := rowWith(follows, "poster"); r != "poster 1 0 1 0" {
				t.Errorf("follows row of poster = %q, want 1 and 1", r)
			}
			if r := rowWith(tableRows(t, page, "journeys"), "welcome"); !strings.HasSuffix(r, " 3 3") {
				t.Errorf("journeys row = %q, want 3 entered today and in 7 days", r)
			}
			if r := rowWith(tableRows(t, page, "messages"), "微信文本"); r != "微信文本 2 1 2 1" {
				t.Errorf("messages row = %q, want 2 sent and 1 failed", r)
			}
			if r := rowWith(tableRows(t, page, "failures"), "超出 48 小时窗口"); !strings.HasSuffix(r, " 1") {
				t.Errorf("failures row = %q, want the 45015 reason once; rows %q", r, tableRows(t, page, "failures"))
			}
			if r := rowWith(tableRows(t, page, "events"), "wechat.subscribe"); !strings.Contains(r, "o_c") {
				t.Errorf("the newest event row = %q, want o_c's follow", r)
			}
			en := view.do("GET", "/admin/?lang=en", nil).Body.String()
			if r := rowWith(tableRows(t, en, "failures"), "outside the 48-hour window"); r == "" {
				t.Errorf("the English dashboard has no 45015 reason in words: %q", tableRows(t, en, "failures"))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newDeliveriesApp(t))
		})
	}
}

// TestDeliveryAnswers checks the words the Deliveries page and the
// dashboard give a recorded delivery: the provider's answer, the fallback
// the step took, and the raw error when no words are known.
func TestDeliveryAnswers(t *testing.T) {
	t.Parallel()
	a := NewAdmin(AdminConfig{DB: nil, Secret: []byte("secret"), Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(a.Close)
	for _, tc := range []struct {
		lang    string
		d       model.Delivery
		outcome string
		answer  string
		fb      string
	}{
		{"zh-CN", model.Delivery{Channel: "wechat.text", Status: model.DeliveryFailed, ErrorCode: 45015,
			Error: outsideWindow.Error()}, "fallback:sms", "超出 48 小时窗口：会员最近没有互动", "已改用 短信 发送"},
		{"en", model.Delivery{Channel: "wechat.text", Status: model.DeliveryFailed, ErrorCode: 45015,
			Error: outsideWindow.Error()}, "fallback:sms", "outside the 48-hour window — the member has not interacted recently", "fallback: SMS sent"},
		{"en", model.Delivery{Channel: "wechat.text", Status: model.DeliveryFailed, ErrorCode: 43004,
			Error: "member unreachable on this channel: code 43004: member has unfollowed"}, "fallback:ask_phone", "the member has unfollowed", "fallback: went on to step ask_phone"},
		{"en", model.Delivery{Channel: "wechat.template", Status: model.DeliveryHeld, ErrorCode: 45009,
			Error: "channel quota exceeded: code 45009: reach max api daily quota limit"}, "", "today's API quota is spent: held until midnight China time", ""},
		{"en", model.Delivery{Channel: "webhook", Status: model.DeliveryFailed, ErrorCode: 502,
			Error: "temporary: code 502: webhook: Bad Gateway"}, "", "the webhook answered HTTP 502", ""},
		{"zh-CN", model.Delivery{Channel: "email", Status: model.DeliveryFailed, ErrorCode: 550,
			Error: "member unreachable on this channel: code 550: recipient refused: 550 5.1.1 mailbox unavailable"}, "", "收件邮箱不可用（550）", ""},
		{"en", model.Delivery{Channel: "wechat.text", Status: model.DeliveryFailed,
			Error: "post https://api.weixin.qq.com: connection reset by peer"}, "", "post https://api.weixin.qq.com: connection reset by peer", ""},
		{"en", model.Delivery{Channel: "wechat.text", Status: model.DeliverySent}, "sent", "", ""},
	} {
		words, _ := a.answer(tc.lang, tc.d)
		fb := a.fallback(tc.lang, tc.d, model.StepVisit{Outcome: tc.outcome})
		if words != tc.answer || fb != tc.fb {
			t.Errorf("%s %s %d %q: answer %q, fallback %q; want %q, %q", tc.lang, tc.d.Channel, tc.d.ErrorCode, tc.d.Error, words, fb, tc.answer, tc.fb)
		}
	}
}

// TestConsoleDeliveriesPages pages through 120 deliveries 50 at a time,
// newest first, with the filter kept on every page.
func TestConsoleDeliveriesPages(t *testing.T) {
	t.Parallel()
	app := newDeliveriesApp(t)
	now := time.Now().UTC()
	for i := range 120 {
		status := model.DeliverySent
		if i%2 == 1 {
			status = model.DeliveryFailed
		}
		if err := app.db.Create(&model.Delivery{StepVisitID: int64(1000 + i), Channel: "wechat.text", EnrollmentID: 1, JourneyID: 1,
			MemberID: 1, To: fmt.Sprintf("o_%03d", i), Status: status, CreatedAt: now.Add(time.Duration(i) * time.Second)}).Error; err != nil {
			t.Fatal(err)
		}
	}
	view := signedIn(t, app.adminApp, "view")
	page := view.do("GET", "/admin/deliveries?status=sent", nil).Body.String()
	rows := tableRows(t, page, "delivery-list")
	if len(rows) != 51 || !strings.Contains(rows[1], "o_118") || !strings.Contains(rows[50], "o_020") {
		t.Fatalf("first page: %d rows from %q to %q; want 50 sent ones, o_118 down to o_020", len(rows)-1, rows[1], rows[len(rows)-1])
	}
	older := regexp.MustCompile(`<a href="([^"]+)" id="older">`).FindStringSubmatch(page)
	if older == nil {
		t.Fatal("the first page has no link to older deliveries")
	}
	page = view.do("GET", html.UnescapeString(older[1]), nil).Body.String()
	rows = tableRows(t, page, "delivery-list")
	if len(rows) != 11 || !strings.Contains(rows[1], "o_018") || !strings.Contains(rows[10], "o_000") {
		t.Errorf("second page: %d rows %q; want the 10 oldest sent ones", len(rows)-1, rows)
	}
	if strings.Contains(page, `id="older"`) {
		t.Error("the last page links to older deliveries")
	}
	if rowWith(rows, "失败") != "" {
		t.Error("the second page lost the status filter")
	}
}
