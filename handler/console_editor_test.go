package handler

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/model"
)

// editorPage is a page's HTML with its entities decoded.
func editorPage(rec *httptest.ResponseRecorder) string { return html.UnescapeString(rec.Body.String()) }

// wantText checks a page's status and that its text has each of in.
func wantText(t *testing.T, what string, rec *httptest.ResponseRecorder, status int, in ...string) string {
	t.Helper()
	body := editorPage(rec)
	shown := body
	if _, after, ok := strings.Cut(body, "<main>"); ok {
		shown = after
	}
	if rec.Code != status {
		t.Errorf("%s: status %d, want %d; page %.1500s", what, rec.Code, status, shown)
	}
	for _, s := range in {
		if !strings.Contains(body, s) {
			t.Errorf("%s: the page does not show %q; page %.6000s", what, s, shown)
		}
	}
	return body
}

// textarea is the YAML side of an editor page.
func textarea(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<textarea name="yaml"[^>]*>(.*?)</textarea>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the page has no YAML textarea: %.500s", body)
	}
	return m[1]
}

// followWelcomeYAML is the journey TestJourneyEditor builds with the forms.
const followWelcomeYAML = `key: follow-welcome
name: 关注欢迎
trigger:
  event: wechat.subscribe
entry:
  once: true
steps:
  - id: hello
    send:
      channel: wechat.text
      text: 欢迎关注，{{ .member.nickname }}！
    next: wait
  - id: wait
    wait: 1h
    next: branch
  - id: branch
    branch:
      - when: event.scene startsWith "store_"
        next: store_tip
      - next: tip
  - id: store_tip
    send:
      channel: wechat.text
      text: 您在门店 {{ .event.scene }} 扫码关注
  - id: tip
    send:
      channel: wechat.text
      text: 欢迎常来
`

// editorWelcome is a published journey the test-run scenarios use.
const editorWelcome = "key: welcome\nname: Welcome\ntrigger: { event: wechat.subscribe }\nsteps:\n" +
	"  - { id: hello, send: { channel: wechat.text, text: \"你好 {{ .member.nickname }}，门店 {{ .event.scene }}\" }, next: pause }\n" +
	"  - { id: pause, wait: 2h }\n"

// TestJourneyEditor walks the journey editor as operators and viewers:
// building a journey with the forms, the YAML side, publishing, test runs,
// and what each role is refused.
func TestJourneyEditor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, app *adminApp)
	}{
		{"an operator builds a journey with the forms and publishes it", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			wantText(t, "new journey page", op.do("GET", "/admin/journeys/new", nil), 200, "新建旅程", "wechat.subscribe", "{{ .member.nickname }}")
			form := url.Values{"key": {"follow-welcome"}, "name": {"关注欢迎"}, "trigger_event": {"wechat.subscribe"},
				"once": {"yes"}, "steps": {"0"}, "op": {"add"}, "add_kind": {"send"}}
			rec := op.post("/admin/journeys/new", "/admin/journeys/new", form)
			wantStatus(t, "add a send step", rec, http.StatusSeeOther)
			edit := "/admin/journeys/follow-welcome/edit"
			if loc := rec.Header().Get("Location"); loc != edit+"?done=saved" {
				t.Fatalf("after the first save: Location %q", loc)
			}
			body := wantText(t, "the draft with a send step", op.do("GET", edit+"?done=saved", nil), 200, "草稿已保存", `name="s.0.channel"`)
			if !strings.Contains(body, `id="step-0" data-step="send" data-kind="send"`) {
				t.Errorf("the added step is not a send fieldset: %.2000s", body)
			}
			// Fill the send in, then add a wait: the send's next links to it.
			form.Set("steps", "1")
			form.Set("s.0.id", "hello")
			form.Set("s.0.kind", "send")
			form.Set("s.0.channel", "wechat.text")
			form.Set("s.0.text", "欢迎关注，{{ .member.nickname }}！")
			form.Set("add_kind", "wait")
			wantStatus(t, "add a wait", op.post(edit, edit, form), http.StatusSeeOther)
			body = wantText(t, "the draft with a wait", op.do("GET", edit, nil), 200, `name="s.1.duration"`)
			if !strings.Contains(body, `name="s.0.next" value="wait"`) {
				t.Errorf("the send does not lead to the added wait")
			}
			form.Set("steps", "2")
			form.Set("s.0.next", "wait")
			form.Set("s.1.id", "wait")
			form.Set("s.1.kind", "wait")
			form.Set("s.1.duration", "1h")
			form.Set("add_kind", "branch")
			wantStatus(t, "add a branch", op.post(edit, edit, form), http.StatusSeeOther)
			form.Set("steps", "3")
			form.Set("s.1.next", "branch")
			form.Set("s.2.id", "branch")
			form.Set("s.2.kind", "branch")
			form["s.2.when"] = []string{`event.scene startsWith "store_"`, ""}
			form["s.2.arm_next"] = []string{"store_tip", ""}
			form.Set("s.2.else", "tip")
			form.Set("add_kind", "send")
			wantStatus(t, "add the store tip", op.post(edit, edit, form), http.StatusSeeOther)
			form.Set("steps", "4")
			form.Set("s.3.id", "store_tip")
			form.Set("s.3.kind", "send")
			form.Set("s.3.channel", "wechat.text")
			form.Set("s.3.text", "您在门店 {{ .event.scene }} 扫码关注")
			wantStatus(t, "add the plain tip", op.post(edit, edit, form), http.StatusSeeOther)
			form.Set("steps", "5")
			form.Set("s.4.id", "tip")
			form.Set("s.4.kind", "send")
			form.Set("s.4.channel", "wechat.text")
			form.Set("s.4.text", "欢迎常来")
			form.Set("op", "save")
			wantStatus(t, "save the forms", op.post(edit, edit, form), http.StatusSeeOther)
			body = wantText(t, "the finished draft", op.do("GET", edit, nil), 200, "校验通过", "草稿，最后保存： <strong>op</strong>")
			if got := textarea(t, body); html.UnescapeString(got) != followWelcomeYAML {
				t.Errorf("the YAML side of the forms:\n%s\nwant:\n%s", html.UnescapeString(got), followWelcomeYAML)
			}
			if strings.Contains(body, `id="publish" disabled`) {
				t.Error("a valid draft cannot be published")
			}
			rec = op.post(edit, "/admin/journeys/follow-welcome/publish", url.Values{})
			wantStatus(t, "publish", rec, http.StatusSeeOther)
			if loc := rec.Header().Get("Location"); loc != "/admin/journeys/follow-welcome?done=published" {
				t.Errorf("after publishing: Location %q", loc)
			}
			var j model.Journey
			if err := app.db.Where(&model.Journey{Key: "follow-welcome"}).Take(&j).Error; err != nil {
				t.Fatalf("the published journey: %v", err)
			}
			var v model.JourneyVersion
			app.db.Take(&v, j.CurrentVersionID)
			if v.Version != 1 || v.Source != followWelcomeYAML || j.Status != "active" {
				t.Errorf("the live journey: status %s, version %d, source\n%s", j.Status, v.Version, v.Source)
			}
			if !hasEntry(auditLog(t, app, "?action=journey.publish"), "op", AuditJourneyPublish, "follow-welcome") {
				t.Error("the publish is not in the audit log")
			}
			if !hasEntry(auditLog(t, app, "?action=journey.draft"), "op", AuditJourneyDraft, "follow-welcome") {
				t.Error("the draft saves are not in the audit log")
			}
			if _, err := model.GetDraft(t.Context(), app.db, "follow-welcome"); err == nil {
				t.Error("the draft is still there after publishing")
			}
			// The editor now starts from the live version.
			body = wantText(t, "editor after publishing", op.do("GET", edit, nil), 200, "从线上版本开始编辑", "线上版本 1")
			if html.UnescapeString(textarea(t, body)) != followWelcomeYAML {
				t.Error("the editor does not start from the live version's YAML")
			}
		}},
		{"the YAML side: a mistake shows the engine's message with its line, and cannot be published", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			good := "key: follow-welcome\ntrigger: { event: wechat.subscribe }\nsteps:\n  - id: hello\n    send: { channel: wechat.text, text: hi }\n    next: pause\n  - id: pause\n    wait: 1h\n"
			wantStatus(t, "save good YAML", op.post("/admin/journeys/new", "/admin/journeys/new", url.Values{"op": {"yaml"}, "yaml": {good}}), http.StatusSeeOther)
			edit := "/admin/journeys/follow-welcome/edit"
			body := wantText(t, "good YAML in the forms", op.do("GET", edit, nil), 200, "校验通过")
			if !strings.Contains(body, `name="s.1.duration" value="1h"`) || !strings.Contains(body, `name="s.0.text" rows="3">hi</textarea>`) {
				t.Errorf("the YAML was not read back into the forms: %.4000s", body)
			}
			bad := strings.Replace(good, "wait: 1h", "wait: 10 minutes", 1)
			wantStatus(t, "save bad YAML", op.post(edit, edit, url.Values{"op": {"yaml"}, "yaml": {bad}}), http.StatusSeeOther)
			wantText(t, "bad YAML (zh-CN)", op.do("GET", edit, nil), 200, "引擎发现以下问题", `行 8</span> <code>step "pause"</code>: bad duration "10 minutes": want 30s, 10m, 48h or 7d`, `id="publish" disabled`)
			wantText(t, "bad YAML (en)", op.do("GET", edit+"?lang=en", nil), 200, "The engine found these problems", `line 8</span> <code>step "pause"</code>`)
			rec := op.post(edit, "/admin/journeys/follow-welcome/publish?lang=zh-CN", url.Values{})
			wantText(t, "publish the bad draft", rec, http.StatusBadRequest, "草稿有错误，不能发布", `bad duration "10 minutes"`)
			var n int64
			app.db.Model(&model.Journey{}).Count(&n)
			if n != 0 {
				t.Error("an invalid draft was published")
			}
			// Broken YAML: the forms cannot show it; the messages say where.
			wantStatus(t, "save broken YAML", op.post(edit, edit, url.Values{"op": {"yaml"}, "yaml": {"key: follow-welcome\nsteps: [\n"}}), http.StatusSeeOther)
			wantText(t, "broken YAML", op.do("GET", edit, nil), 200, "YAML 无法解析", "行 2", "did not find expected node content")
		}},
		{"the validate route answers the messages of the posted forms", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			form := url.Values{"key": {"x"}, "trigger_event": {"wechat.follow"}, "steps": {"1"}, "s.0.id": {"a"}, "s.0.kind": {"wait"}, "s.0.duration": {"1h"}}
			rec := op.post("/admin/journeys/new", "/admin/journeys/new/validate", form)
			body := wantText(t, "validate", rec, 200, `no source emits event "wechat.follow"`)
			if strings.Contains(body, "<html") {
				t.Error("the validate route answers a whole page, not the fragment")
			}
		}},
		{"a viewer reads the editor but cannot save or publish", func(t *testing.T, app *adminApp) {
			op, view := signedIn(t, app, "op"), signedIn(t, app, "view")
			wantStatus(t, "op saves", op.post("/admin/journeys/new", "/admin/journeys/new", url.Values{"op": {"yaml"}, "yaml": {editorWelcome}}), http.StatusSeeOther)
			edit := "/admin/journeys/welcome/edit"
			if body := wantText(t, "viewer reads", view.do("GET", edit, nil), 200, "编辑旅程"); strings.Contains(body, `id="publish"`) || strings.Contains(body, "/discard") {
				t.Error("the viewer sees the draft's publish or discard button")
			}
			if body := wantText(t, "op reads", op.do("GET", edit, nil), 200, "编辑旅程"); !strings.Contains(body, `id="publish"`) {
				t.Error("the operator sees no publish button for the draft")
			}
			wantText(t, "viewer saves", view.post(edit, edit, url.Values{"op": {"yaml"}, "yaml": {"key: welcome\n"}}), http.StatusForbidden, "你没有权限")
			wantStatus(t, "viewer starts a journey", view.post(edit, "/admin/journeys/new", url.Values{"op": {"yaml"}, "yaml": {"key: other\n"}}), http.StatusForbidden)
			wantStatus(t, "viewer publishes", view.post(edit, "/admin/journeys/welcome/publish", url.Values{}), http.StatusForbidden)
			wantStatus(t, "viewer test-runs", view.post(edit, "/admin/journeys/welcome/test", url.Values{"member": {"1"}}), http.StatusForbidden)
			d, err := model.GetDraft(t.Context(), app.db, "welcome")
			if err != nil || d.Source != editorWelcome {
				t.Errorf("the draft after the viewer's refused save: %q, %v", d.Source, err)
			}
			var n int64
			app.db.Model(&model.Journey{}).Count(&n)
			if _, err := model.GetDraft(t.Context(), app.db, "other"); n != 0 || err == nil {
				t.Error("a viewer's refused change happened")
			}
		}},
		{"a draft is discarded only when confirmed, and the live version stays", func(t *testing.T, app *adminApp) {
			op, view := signedIn(t, app, "op"), signedIn(t, app, "view")
			wantStatus(t, "publish welcome", op.call("POST", "/api/v1/journeys/welcome/publish", editorWelcome), 200)
			edit := "/admin/journeys/welcome/edit"
			draft := strings.Replace(editorWelcome, "wait: 2h", "wait: 3h", 1)
			wantStatus(t, "save a draft", op.post(edit, edit, url.Values{"op": {"yaml"}, "yaml": {draft}}), http.StatusSeeOther)
			discard := "/admin/journeys/welcome/discard"
			wantStatus(t, "viewer discards", view.post(edit, discard, url.Values{"confirm": {"yes"}}), http.StatusForbidden)
			wantText(t, "discard unconfirmed", op.post(edit, discard, url.Values{}), http.StatusBadRequest, "请勾选“确认丢弃”")
			if d, err := model.GetDraft(t.Context(), app.db, "welcome"); err != nil || d.Source != draft {
				t.Fatalf("the draft after refused discards: %v", err)
			}
			rec := op.post(edit, discard, url.Values{"confirm": {"yes"}})
			wantStatus(t, "discard", rec, http.StatusSeeOther)
			body := wantText(t, "after discarding", op.do("GET", rec.Header().Get("Location"), nil), 200, "草稿已丢弃", "从线上版本开始编辑")
			if !strings.Contains(textarea(t, body), "wait: 2h") {
				t.Error("the editor does not show the live version after the discard")
			}
			if !hasEntry(auditLog(t, app, "?action=journey.draft_discard"), "op", AuditJourneyDraftDiscard, "welcome") {
				t.Error("the discard is not in the audit log")
			}
		}},
		{"a form posted without its CSRF token is refused", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			wantText(t, "save without a token", op.do("POST", "/admin/journeys/new", url.Values{"op": {"yaml"}, "yaml": {editorWelcome}}), http.StatusForbidden, "CSRF")
			if _, err := model.GetDraft(t.Context(), app.db, "welcome"); err == nil {
				t.Fatal("a form without its token saved a draft")
			}
			wantStatus(t, "save with the token", op.post("/admin/journeys/new", "/admin/journeys/new", url.Values{"op": {"yaml"}, "yaml": {editorWelcome}}), http.StatusSeeOther)
			wantStatus(t, "publish without a token", op.do("POST", "/admin/journeys/welcome/publish", url.Values{}), http.StatusForbidden)
			var n int64
			if app.db.Model(&model.Journey{}).Count(&n); n != 0 {
				t.Error("a publish without its token happened")
			}
		}},
		{"a new journey's key must be free", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			wantStatus(t, "publish welcome", op.call("POST", "/api/v1/journeys/welcome/publish", editorWelcome), 200)
			wantText(t, "new with a taken key", op.post("/admin/journeys/new", "/admin/journeys/new", url.Values{"op": {"yaml"}, "yaml": {editorWelcome}}),
				http.StatusConflict, `已有标识为 “welcome” 的旅程或草稿`)
			wantText(t, "no such journey", op.do("GET", "/admin/journeys/nope/edit", nil), http.StatusNotFound, "没有标识为 “nope” 的旅程或草稿")
		}},
		{"test run on a member shows the path and the rendered text", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			wantStatus(t, "publish welcome", op.call("POST", "/api/v1/journeys/welcome/publish", editorWelcome), 200)
			m := model.Member{OpenID: "o_test", AppID: "wx1", Nickname: "小明"}
			app.db.Create(&m)
			test := "/admin/journeys/welcome/test"
			wantText(t, "test page", op.do("GET", test, nil), 200, "试运行", "发送给此测试员")
			run := url.Values{"member": {"o_test"}, "source": {"live"}, "event": {`{"type": "wechat.subscribe", "props": {"scene": "store_001"}}`}}
			body := wantText(t, "test run (zh-CN)", op.post(test, test, run), 200, "经过的路径", "你好 小明，门店 store_001", "已渲染", "已等待", "公众号文本", "结束方式： <strong>完成</strong>", "仅渲染，未发送")
			if !strings.Contains(body, `data-step="hello"`) || !strings.Contains(body, `data-step="pause"`) {
				t.Error("the path does not list hello then pause")
			}
			wantText(t, "test run (en)", op.post(test+"?lang=en", test+"?lang=en", run), 200, "Path taken", "你好 小明，门店 store_001", "rendered", "waited", "WeChat text", "Ends as: <strong>completed</strong>")
			if !hasEntry(auditLog(t, app, "?action=journey.test"), "op", AuditJourneyTest, "welcome") {
				t.Error("the test run is not in the audit log")
			}
			test += "?lang=zh-CN"
			run.Set("send", "yes")
			wantText(t, "send to a non-tester", op.post(test, test, run), http.StatusForbidden, "不能发送：会员 o_test 不是测试员")
			m.Tags = []string{model.TesterTag}
			app.db.Save(&m)
			wantText(t, "send to a tester", op.post(test, test, run), 200, "已真实发送", "已发送")
			run.Set("member", "o_nobody")
			wantText(t, "an unknown member", op.post(test, test, run), http.StatusNotFound, "没有找到会员 “o_nobody”")
		}},
		{"the editor previews a send step for a member and test-runs the draft", func(t *testing.T, app *adminApp) {
			op := signedIn(t, app, "op")
			app.db.Create(&model.Member{OpenID: "o_p", AppID: "wx1", Nickname: "阿青"})
			wantStatus(t, "save", op.post("/admin/journeys/new", "/admin/journeys/new", url.Values{"op": {"yaml"}, "yaml": {editorWelcome}}), http.StatusSeeOther)
			edit := "/admin/journeys/welcome/edit"
			form := url.Values{"key": {"welcome"}, "name": {"Welcome"}, "trigger_event": {"wechat.subscribe"}, "steps": {"2"},
				"s.0.id": {"hello"}, "s.0.kind": {"send"}, "s.0.channel": {"wechat.text"}, "s.0.text": {"{{ .member.nickname }}，欢迎"}, "s.0.next": {"pause"},
				"s.1.id": {"pause"}, "s.1.kind": {"wait"}, "s.1.duration": {"2h"}, "op": {"preview"}, "preview_member": {"o_p"}}
			wantText(t, "preview", op.post(edit, edit, form), 200, "渲染结果：", "阿青，欢迎")
			test := "/admin/journeys/welcome/test"
			wantText(t, "test the draft", op.post(test, test, url.Values{"member": {"o_p"}, "source": {"draft"}}), 200, "阿青，欢迎", "草稿")
			bad := strings.Replace(editorWelcome, "wait: 2h", "wait: soon", 1)
			wantStatus(t, "save a bad draft", op.post(edit, edit, url.Values{"op": {"yaml"}, "yaml": {bad}}), http.StatusSeeOther)
			wantText(t, "test the bad draft", op.post(test, test, url.Values{"member": {"o_p"}, "source": {"draft"}}), http.StatusBadRequest,
				"草稿有错误，无法试运行", `bad duration "soon"`)
			form.Set("s.1.duration", "soon")
			wantText(t, "preview the bad draft", op.post(edit, edit, form), 200, "草稿有错误，无法预览", `bad duration "soon"`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newConsoleApp(t))
		})
	}
}

// TestJourneyEditorRoundTrip reads every shipped journey into the forms
// and writes it back: the YAML means the same (nothing the forms do not
// show is lost), and reading it again gives the same forms.
func TestJourneyEditorRoundTrip(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../journeys/*.yaml")
	if len(files) == 0 {
		t.Fatal("no journeys to read")
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := edFromYAML(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out, err := j.yaml()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var want, got any
		yaml.Unmarshal(src, &want)
		yaml.Unmarshal(out, &got)
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s changed through the forms:\n%s", f, out)
		}
		j2, _ := edFromYAML(out)
		if !reflect.DeepEqual(j, j2) {
			t.Errorf("%s: the forms differ after a round trip:\n%+v\n%+v", f, j, j2)
		}
	}
}
