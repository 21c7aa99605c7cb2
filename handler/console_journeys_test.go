package handler

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

// journeysApp is a console (as newConsoleApp's) with its engine and
// ingestor at hand, to drive members through journeys.
type journeysApp struct {
	*adminApp
}

func newJourneysApp(t *testing.T) *journeysApp {
	t.Helper()
	return &journeysApp{newConsoleApp(t)}
}

// follow stores a follow of each openid and routes it: the members enter
// the journeys it triggers and run their steps up to the first wait.
func (app *journeysApp) follow(t *testing.T, openids ...string) {
	t.Helper()
	app.event(t, "wechat.subscribe", openids...)
}

// event stores an event of type typ from each openid and routes it.
func (app *journeysApp) event(t *testing.T, typ string, openids ...string) {
	t.Helper()
	var evs []*model.Event
	for _, o := range openids {
		evs = append(evs, &model.Event{DedupeKey: typ + "-" + o, Type: typ, Source: strings.Split(typ, ".")[0],
			Member: model.MemberRef{AppID: "wx1", OpenID: o}, At: time.Now(), ReceivedAt: time.Now()})
	}
	if _, _, err := app.ing.Ingest(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	if err := app.eng.Route(t.Context(), ids...); err != nil {
		t.Fatal(err)
	}
}

// publish publishes a journey's YAML through the API as deploy-bot.
func (app *journeysApp) publish(t *testing.T, key, src string) {
	t.Helper()
	wantStatus(t, "publish "+key, withKey(app.adminApp, "bot-key", "POST", "/api/v1/journeys/"+key+"/publish", src), http.StatusOK)
}

// journeyStatusOf is the journey's status in the database.
func (app *journeysApp) journeyStatusOf(t *testing.T, key string) string {
	t.Helper()
	var j model.Journey
	if err := app.db.Where("key = ?", key).Take(&j).Error; err != nil {
		t.Fatal(err)
	}
	return j.Status
}

// visible is a page's text as a reader sees it: tags removed, entities
// decoded, spaces collapsed.
func visible(page string) string {
	page = regexp.MustCompile(`(?s)<style.*?</style>|<svg.*?</svg>`).ReplaceAllString(page, " ")
	page = html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(page, " "))
	return strings.Join(strings.Fields(page), " ")
}

const (
	// driveYAML: a welcome, then a day's wait, with a goal.
	driveYAML = "key: drive\nname: Drive\ntrigger: { event: wechat.subscribe }\ngoal: { event: order.paid }\nsteps:\n" +
		"  - { id: hello, send: { channel: wechat.text, text: welcome aboard }, next: later }\n" +
		"  - { id: later, wait: 1d, next: bye }\n" +
		"  - { id: bye, send: { channel: wechat.text, text: bye } }\n"
	// quietYAML: a journey nobody enters (its trigger is another event).
	quietYAML = "key: quiet\nname: Quiet\ntrigger: { event: wechat.scan }\nsteps:\n  - { id: only, send: { channel: wechat.text, text: hi } }\n"
)

// TestConsoleJourneys walks the journey pages as operators and viewers
// see them, each scenario on a fresh console.
func TestConsoleJourneys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *journeysApp)
	}{
		{"no journeys: the list says what to do next", func(t *testing.T, app *journeysApp) {
			view := signedIn(t, app.adminApp, "view")
			rec := view.do("GET", "/admin/journeys", nil)
			wantStatus(t, "empty list", rec, 200, "还没有旅程：在 journeys/ 放一个 YAML 文件，或新建旅程", `href="/admin/journeys/new"`)
			wantStatus(t, "empty list in English", view.do("GET", "/admin/journeys?lang=en", nil), 200, "No journeys yet: put a YAML file in journeys/")
		}},
		{"the list shows counts and translated statuses", func(t *testing.T, app *journeysApp) {
			app.publish(t, "drive", driveYAML)
			app.publish(t, "quiet", quietYAML)
			app.follow(t, "o1", "o2", "o3")
			app.event(t, "order.paid", "o1")
			op := signedIn(t, app.adminApp, "op")
			wantStatus(t, "pause quiet", op.post("/admin/journeys/quiet", "/admin/journeys/quiet/pause", url.Values{}), http.StatusSeeOther)
			rec := op.do("GET", "/admin/journeys", nil)
			wantStatus(t, "list", rec, 200)
			text := visible(rec.Body.String())
			// drive: 3 entered, 2 in progress (waiting a day), 1 paid.
			for _, want := range []string{"drive Drive 运行中 v1 3 2 0 1 (33.3%) 0 0", "quiet Quiet 已暂停 (由操作员暂停) v1 0 0 0 无目标 0 0", "目标达成率"} {
				if !strings.Contains(text, want) {
					t.Errorf("the list lacks %q:\n%s", want, text)
				}
			}
			en := visible(op.do("GET", "/admin/journeys?lang=en", nil).Body.String())
			for _, want := range []string{"drive Drive Active v1 3 2 0 1 (33.3%) 0 0", "quiet Quiet Paused (paused by an operator) v1 0 0 0 no goal 0 0", "Goal rate"} {
				if !strings.Contains(en, want) {
					t.Errorf("the English list lacks %q:\n%s", want, en)
				}
			}
			wantStatus(t, "a wrong date", op.do("GET", "/admin/journeys?lang=zh-CN&from=yesterday", nil), 200, "日期不对", "下面显示的是最近 30 天")
			// A range before today counts nobody.
			old := visible(op.do("GET", "/admin/journeys?lang=zh-CN&from=2020-01-01&to=2020-01-31", nil).Body.String())
			if !strings.Contains(old, "drive Drive 运行中 v1 0 0 0 0 (–) 0 0") {
				t.Errorf("the list for January 2020 counts members:\n%s", old)
			}
		}},
		{"a journey without a published version is a draft", func(t *testing.T, app *journeysApp) {
			if err := app.db.Create(&model.Journey{Key: "wip", Name: "WIP", Status: model.JourneyActive}).Error; err != nil {
				t.Fatal(err)
			}
			view := signedIn(t, app.adminApp, "view")
			if text := visible(view.do("GET", "/admin/journeys", nil).Body.String()); !strings.Contains(text, "wip WIP 草稿 –") {
				t.Errorf("the draft's row: %s", text)
			}
			wantStatus(t, "draft page", view.do("GET", "/admin/journeys/wip?lang=en", nil), 200, "Draft", "no published version yet", `href="/admin/journeys/wip/edit"`)
		}},
		{"the journey page draws each step with its counts", func(t *testing.T, app *journeysApp) {
			app.publish(t, "drive", driveYAML)
			app.follow(t, "o1", "o2")
			view := signedIn(t, app.adminApp, "view")
			rec := view.do("GET", "/admin/journeys/drive", nil)
			wantStatus(t, "journey page", rec, 200, "<svg", `viewBox="0 0 `, "旅程图")
			body := rec.Body.String()
			svg := regexp.MustCompile(`(?s)<svg.*?</svg>`).FindString(body)
			for _, step := range []string{"hello", "later", "bye"} {
				if !strings.Contains(svg, `data-step="`+step+`"`) {
					t.Errorf("the graph has no box for step %s", step)
				}
			}
			if n := strings.Count(svg, "<rect"); n != 3 {
				t.Errorf("the graph has %d boxes, want 3", n)
			}
			for _, want := range []string{"公众号文本消息: welcome aboard", "等待 1d", "到达 2 · 通过 2", "到达 2 · 通过 0", "等待 2 · 失败 0", "到达 0 · 通过 0"} {
				if !strings.Contains(svg, want) {
					t.Errorf("the graph lacks %q", want)
				}
			}
			text := visible(body)
			for _, want := range []string{"进入 2 100%", "hello 2 100%", "later 2 100%", "bye 0 0%", "达成目标 0 0%", "公众号文本消息 wechat.text 2 0"} {
				if !strings.Contains(text, want) {
					t.Errorf("the page lacks %q:\n%s", want, text)
				}
			}
			en := op(t, app).do("GET", "/admin/journeys/drive?lang=en", nil).Body.String()
			for _, want := range []string{"reached 2 · passed 2", "waiting 2 · failed 0", "Funnel to the goal", "Official Account text"} {
				if !strings.Contains(en, want) {
					t.Errorf("the English page lacks %q", want)
				}
			}
			wantStatus(t, "an unknown journey", view.do("GET", "/admin/journeys/nope", nil), 404, "没有这个旅程")
		}},
		{"a viewer sees no lifecycle buttons and is refused them", func(t *testing.T, app *journeysApp) {
			app.publish(t, "drive", driveYAML)
			view := signedIn(t, app.adminApp, "view")
			rec := view.do("GET", "/admin/journeys/drive", nil)
			wantStatus(t, "viewer's page", rec, 200, "只有操作员和管理员可以暂停")
			if strings.Contains(rec.Body.String(), `action="/admin/journeys/drive/pause"`) {
				t.Error("the viewer's page has a pause form")
			}
			for _, action := range []string{"pause", "archive"} {
				wantStatus(t, "viewer "+action, view.post("/admin/journeys/drive", "/admin/journeys/drive/"+action, url.Values{"confirm": {"yes"}}), 403, "你没有权限")
			}
			if st := app.journeyStatusOf(t, "drive"); st != model.JourneyActive {
				t.Errorf("after the viewer's refused pause the journey is %s", st)
			}
			if hasEntry(auditLog(t, app.adminApp, ""), "view", AuditJourneyPause, "drive") {
				t.Error("a refused pause is in the audit log as done")
			}
		}},
		{"an operator pauses, resumes and archives, audited; a form without its token is refused", func(t *testing.T, app *journeysApp) {
			app.publish(t, "drive", driveYAML)
			op := signedIn(t, app.adminApp, "op")
			wantStatus(t, "pause without the token", op.do("POST", "/admin/journeys/drive/pause", url.Values{}), 403, "CSRF")
			if st := app.journeyStatusOf(t, "drive"); st != model.JourneyActive {
				t.Fatalf("a form without its token paused the journey: %s", st)
			}
			rec := op.post("/admin/journeys/drive", "/admin/journeys/drive/pause", url.Values{})
			wantStatus(t, "pause", rec, http.StatusSeeOther)
			if loc := rec.Header().Get("Location"); loc != "/admin/journeys/drive?done=pause" {
				t.Errorf("pause redirects to %q", loc)
			}
			if st := app.journeyStatusOf(t, "drive"); st != model.JourneyPaused {
				t.Fatalf("after pause the journey is %s", st)
			}
			wantStatus(t, "page after pause", op.do("GET", "/admin/journeys/drive?done=pause", nil), 200, "旅程已暂停", "已暂停", "由操作员暂停", `id="resume"`)
			// A paused journey takes no one in.
			app.follow(t, "o9")
			var n int64
			app.db.Model(&model.Enrollment{}).Count(&n)
			if n != 0 {
				t.Errorf("%d members entered the paused journey", n)
			}
			wantStatus(t, "resume", op.post("/admin/journeys/drive", "/admin/journeys/drive/resume", url.Values{}), http.StatusSeeOther)
			wantStatus(t, "archive unconfirmed", op.post("/admin/journeys/drive", "/admin/journeys/drive/archive", url.Values{}), 400, "请先勾选")
			if st := app.journeyStatusOf(t, "drive"); st != model.JourneyActive {
				t.Fatalf("an unconfirmed archive left the journey %s", st)
			}
			wantStatus(t, "archive", op.post("/admin/journeys/drive", "/admin/journeys/drive/archive", url.Values{"confirm": {"yes"}}), http.StatusSeeOther)
			if st := app.journeyStatusOf(t, "drive"); st != model.JourneyArchived {
				t.Fatalf("after archive the journey is %s", st)
			}
			wantStatus(t, "pause an archived journey", op.post("/admin/journeys/drive", "/admin/journeys/drive/pause", url.Values{}), http.StatusConflict, "不允许")
			es := auditLog(t, app.adminApp, "?user=op")
			for _, action := range []string{AuditJourneyPause, AuditJourneyResume, AuditJourneyArchive} {
				if !hasEntry(es, "op", action, "drive") {
					t.Errorf("no audit entry op %s drive in %+v", action, es)
				}
			}
			for _, e := range es {
				if e.Action == AuditJourneyPause && strings.Contains(string(e.Detail), `"status":303`) &&
					(e.Via != model.ViaSession || !strings.Contains(string(e.Detail), `"journey_status":"paused"`)) {
					t.Errorf("pause entry = %+v %s, want via session and the paused status", e, e.Detail)
				}
			}
		}},
		{"compare shows a changed line", func(t *testing.T, app *journeysApp) {
			app.publish(t, "drive", driveYAML)
			app.publish(t, "drive", strings.Replace(driveYAML, "welcome aboard", "welcome friend", 1))
			view := signedIn(t, app.adminApp, "view")
			rec := view.do("GET", "/admin/journeys/drive?a=1&b=2", nil)
			wantStatus(t, "compare", rec, 200, "比较版本 v1 与 v2", "有 1 行不同")
			row := regexp.MustCompile(`(?s)<tr class="changed">.*?</tr>`).FindString(rec.Body.String())
			if !strings.Contains(row, "welcome aboard") || !strings.Contains(row, "welcome friend") {
				t.Errorf("the changed row is %q", row)
			}
			if n := strings.Count(rec.Body.String(), `<tr class="changed">`); n != 1 {
				t.Errorf("%d changed rows, want 1", n)
			}
			wantStatus(t, "the versions listed", rec, 200, "v2 <span class=\"badge\">当前</span>", "api")
			wantStatus(t, "compare a missing version", view.do("GET", "/admin/journeys/drive?a=1&b=7", nil), 200, "请选择这个旅程的两个版本")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newJourneysApp(t))
		})
	}
}

// op is the app signed in as the operator.
func op(t *testing.T, app *journeysApp) *browser { return signedIn(t, app.adminApp, "op") }
