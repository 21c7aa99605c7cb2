package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// envScreenshots names the directory the README's screenshots are written
// to, relative to the repository unless absolute (docs/screenshots
// regenerates them); without it they go to the test's temporary directory.
const envScreenshots = "WEJOURNEY_SCREENSHOTS"

// readmeShots are the screenshots the README shows: the only ones written
// to $WEJOURNEY_SCREENSHOTS (the others stay in the test's temporary
// directory, so that the repository keeps few, small images).
var readmeShots = []string{"journey-graph", "member-timeline"}

// TestConsoleEndToEnd is the console's end-to-end test: in headless
// Chromium, against a running wejourney whose WeChat is simulated, an
// admin adds an operator and a viewer; the operator builds a follow
// welcome journey (a message, a wait, a branch on the scene) with the
// editor's forms, test-runs it on a member, publishes it, sees a real
// follow move the counts on the journey's graph, finds the member and
// reads the timeline, pauses the journey and sees the next follow not
// enter. The viewer gets no controls and is refused a publish (403); a
// form posted without its CSRF token is refused (403). Along the way it
// takes the screenshots of the main pages, in Chinese and English, at
// laptop and phone widths.
func TestConsoleEndToEnd(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	const (
		key    = "e2e-welcome"
		tester = "o_e2e_tester_0123456789abcd" // follows before the journey exists: the test run's member
		member = "o_e2e_member_0123456789abcd" // follows once the journey is live
		late   = "o_e2e_paused_0123456789abcd" // follows once the journey is paused
	)
	h := newHarness(t, nil)
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: tester, Scene: "store_001"})
	h.eventually("the first follower recorded", 5*time.Second, func() bool {
		return h.count(&model.Member{}, "open_id = ?", tester) == 1
	})

	// The admin adds an operator and a viewer on the users page.
	admin := newChromeTab(t)
	chromeSignIn(admin, h.base, "admin", "admin-pass")
	for _, u := range []struct{ name, role, label string }{{"olga", "operator", "运营"}, {"vera", "viewer", "只读"}} {
		admin.do("add the user "+u.name,
			chromedp.Navigate(h.base+"/admin/users"),
			chromedp.WaitVisible(chromedp.ID("add-user")),
			chromedp.SendKeys(chromedp.CSS(`#add-user input[name=username]`), u.name),
			chromedp.SetValue(chromedp.CSS(`#add-user select[name=role]`), u.role),
			chromedp.SendKeys(chromedp.CSS(`#add-user input[name=password]`), u.name+"-password"),
			chromedp.Click(chromedp.CSS(`#add-user button`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-user=`+u.name+`]`)),
		)
		if got := textOf(admin, `[data-user=`+u.name+`]`); !strings.Contains(got, u.label) {
			t.Errorf("the users page lists %s as %q, want the role %s", u.name, got, u.label)
		}
	}

	// The operator signs in and builds the journey with the forms.
	op := newChromeTab(t)
	chromeSignIn(op, h.base, "olga", "olga-password")
	if got := textOf(op, "#role"); got != "运营" {
		t.Errorf("olga's header shows the role %q, want 运营", got)
	}
	op.do("open a new journey",
		chromedp.Navigate(h.base+"/admin/journeys/new"),
		chromedp.WaitVisible(chromedp.ID("ed-forms")),
		setField(`#f-journey input[name=key]`, key),
		setField(`#f-journey input[name=name]`, "端到端关注欢迎"),
		setField(`#f-trigger input[name=trigger_event]`, "wechat.subscribe"),
	)
	// The new journey starts from a template: remove its steps, one
	// button at a time, to build ours.
	for n := stepsShown(op); n > 0; n-- {
		op.submit("remove a template step", `#step-0 button[value="remove.0"]`,
			chromedp.WaitNotPresent(chromedp.CSS("#step-"+strconv.Itoa(n-1))))
	}
	op.do("the steps are empty", chromedp.WaitVisible(chromedp.ID("no-steps")))
	addStep := func(kind string, index int) {
		t.Helper()
		op.do("choose a "+kind+" step", chromedp.SetValue(chromedp.CSS(`#add-step select[name=add_kind]`), kind))
		op.submit("add a "+kind+" step", `#add-step button`,
			chromedp.WaitVisible(chromedp.CSS("#step-"+strconv.Itoa(index))))
		if got := attrOf(op, "#step-"+strconv.Itoa(index), "data-kind"); got != kind {
			t.Fatalf("the step added is a %q, want a %s", got, kind)
		}
	}
	addStep("send", 0)
	op.do("write the welcome", setField(`textarea[name="s.0.text"]`, "欢迎关注！您在 {{ .event.scene }} 扫码。"))
	addStep("wait", 1)
	op.do("wait a second", setField(`input[name="s.1.duration"]`, "1s"))
	addStep("branch", 2)
	op.do("branch on the scene",
		setField(`input[name="s.2.when"]`, `event.scene startsWith "store_"`),
		setField(`input[name="s.2.arm_next"]`, "send_2"))
	addStep("send", 3)
	op.do("write the store tip", setField(`textarea[name="s.3.text"]`, "到店出示本消息领取礼品（{{ .event.scene }}）"))
	op.submit("save the forms", `#save-forms`, chromedp.WaitVisible(chromedp.ID("done")))
	if ok := exists(op, "#valid"); !ok {
		t.Fatalf("the saved journey is not valid: %s", textOf(op, "#problems-box"))
	}
	if got := stepIDs(op, "#ed-forms fieldset.ed-step", "data-step"); !slices.Equal(got, []string{"send", "wait", "branch", "send_2"}) {
		t.Errorf("the editor shows the steps %q, want send, wait, branch, send_2", got)
	}
	yaml := valueOf(op, "#yaml")
	for _, want := range []string{"key: " + key, "event: wechat.subscribe", "wait: 1s", "branch:", `event.scene startsWith "store_"`, "next: send_2"} {
		if !strings.Contains(yaml, want) {
			t.Errorf("the YAML the forms made lacks %q:\n%s", want, yaml)
		}
	}

	// A test run on the first follower: the path and the rendered message.
	op.do("test-run on a member",
		chromedp.Navigate(h.base+"/admin/journeys/"+key+"/test"),
		chromedp.WaitVisible(chromedp.ID("test-form")),
		setField(`#test-form input[name=member]`, tester),
		setField(`#test-form textarea[name=event]`, `{"type": "wechat.subscribe", "props": {"scene": "store_001"}}`),
	)
	op.submit("run the test", "#run", chromedp.WaitVisible(chromedp.ID("test-result")))
	if got := stepIDs(op, "#path tr.path-step", "data-step"); !slices.Equal(got, []string{"send", "wait", "branch", "send_2"}) {
		t.Errorf("the test run's path is %q, want send, wait, branch, send_2", got)
	}
	if got := textOf(op, `#path tr[data-step=send] pre.rendered`); got != "欢迎关注！您在 store_001 扫码。" {
		t.Errorf("the test run renders the welcome as %q", got)
	}
	if got := textOf(op, `#path tr[data-step=send_2] pre.rendered`); got != "到店出示本消息领取礼品（store_001）" {
		t.Errorf("the test run renders the store tip as %q", got)
	}
	if n := len(h.fake.MessagesTo(tester)); n != 0 {
		t.Errorf("a test run without 'send' sent %d messages to the member", n)
	}

	// Publish.
	op.do("open the editor", chromedp.Navigate(h.base+"/admin/journeys/"+key+"/edit"), chromedp.WaitVisible(chromedp.ID("publish")))
	op.submit("publish", "#publish", chromedp.WaitVisible(chromedp.ID("lifecycle")))
	if got := attrOf(op, "#status [data-status]", "data-status"); got != "active" {
		t.Fatalf("after publishing the journey is %q, want active", got)
	}
	if got := textOf(op, "#status"); !strings.Contains(got, "v1") {
		t.Errorf("the journey page's status reads %q, want version v1", got)
	}
	if got := boxCounts(op, "send"); !strings.Contains(got, "到达 0") {
		t.Errorf("before any follow the first step's box reads %q, want 到达 0", got)
	}

	// A follow from a store's QR code: the graph's counts move.
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: member, Scene: "store_001"})
	journeyPage := h.base + "/admin/journeys/" + key
	waitBox(op, journeyPage, "send", "到达 1")
	waitBox(op, journeyPage, "send_2", "到达 1") // after the 1 s wait
	op.do("reload the journey page", chromedp.Navigate(journeyPage), chromedp.WaitVisible(chromedp.ID("graph")))
	for _, s := range []string{"send", "wait", "branch", "send_2"} {
		if got := boxCounts(op, s); !strings.Contains(got, "到达 1 · 通过 1") {
			t.Errorf("the graph's %s box reads %q, want 到达 1 · 通过 1", s, got)
		}
	}
	totals := op.table("totals")
	if len(totals) != 1 || totals[0]["进入"] != "1" || totals[0]["已完成"] != "1" {
		t.Errorf("the journey's totals read %q, want 1 entered and 1 completed", totals)
	}
	if got := h.waitMessages(member, 2, 5*time.Second); len(got) != 2 {
		t.Errorf("the member got %d messages, want the welcome and the store tip", len(got))
	}

	// Find the member and read the timeline.
	op.do("search the member",
		chromedp.Navigate(h.base+"/admin/members"),
		chromedp.WaitVisible(chromedp.ID("member-search")),
		setField(`#member-search input[name=q]`, member),
	)
	op.submit("search", "#member-search button", chromedp.WaitVisible(chromedp.ID("members")))
	if rows := op.table("members"); len(rows) != 1 || rows[0]["OpenID"] != member {
		t.Fatalf("the search for %s found %q", member, rows)
	}
	op.submit("open the member", "#members a", chromedp.WaitVisible(chromedp.ID("timeline")))
	memberPage := chromeRun(op, "read the member page's address", chromedp.Location())
	tl := op.table("timeline")
	var follow, visits, sent int
	for _, r := range tl {
		switch r["类型"] {
		case "事件":
			if strings.Contains(r["内容"], "wechat.subscribe") {
				follow++
			}
		case "旅程步骤":
			if strings.Contains(r["内容"], key) {
				visits++
			}
		case "消息投递":
			if strings.Contains(r["内容"], key) && (strings.HasPrefix(r["状态"], "已发送") || strings.HasPrefix(r["状态"], "沙箱")) {
				sent++
			}
		}
	}
	if follow != 1 || visits != 4 || sent != 2 {
		t.Errorf("the timeline shows %d follows, %d step visits of %s, %d deliveries sent; want 1, 4, 2:\n%q", follow, visits, key, sent, tl)
	}

	// Pause: the next follow does not enter.
	op.do("open the journey page", chromedp.Navigate(journeyPage), chromedp.WaitVisible(chromedp.ID("pause")))
	op.submit("pause the journey", "#pause", chromedp.WaitVisible(chromedp.ID("resume")))
	if got := attrOf(op, "#status [data-status]", "data-status"); got != "paused" {
		t.Fatalf("after pausing the journey is %q, want paused", got)
	}
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: late, Scene: "store_002"})
	h.eventually("the late follower recorded", 5*time.Second, func() bool {
		return h.count(&model.Member{}, "open_id = ?", late) == 1
	})
	var lateID int64
	if err := h.db.Model(&model.Member{}).Where("open_id = ?", late).Pluck("id", &lateID).Error; err != nil {
		t.Fatal(err)
	}
	latePage := h.base + "/admin/members/" + strconv.FormatInt(lateID, 10)
	op.do("wait for the late follow on the member's timeline",
		chromedp.Navigate(latePage),
		chromedp.WaitVisible(chromedp.ID("timeline")),
	)
	waitPage(op, latePage, `#timeline tr.tl-event`, "wechat.subscribe")
	// The follow was routed to the journeys (so a live journey would
	// have taken the member in by now).
	h.eventually("the late follow routed", 5*time.Second, func() bool {
		return h.count(&model.Event{}, "routed_at IS NULL") == 0
	})
	op.do("reload the late member", chromedp.Navigate(latePage), chromedp.WaitVisible(chromedp.ID("enrollments")))
	if exists(op, "#timeline tr.tl-visit") || exists(op, `#enrollments [data-journey]`) {
		t.Errorf("a follow after the pause entered the journey: %s", textOf(op, "#enrollments"))
	}
	op.do("reload the journey page", chromedp.Navigate(journeyPage), chromedp.WaitVisible(chromedp.ID("totals")))
	if got := op.table("totals"); got[0]["进入"] != "1" {
		t.Errorf("after a follow while paused the journey shows %s entered, want still 1", got[0]["进入"])
	}
	if n := h.count(&model.Enrollment{}, "1 = 1"); n != 1 {
		t.Errorf("%d enrollments in the database, want the one before the pause", n)
	}

	// A form posted without its CSRF token is refused.
	op.do("drop the resume form's CSRF token",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#resume').form.querySelector('input[name=csrf_token]').remove()`))
	op.submit("resume without a token", "#resume", chromedp.WaitVisible(chromedp.ID("error")))
	if got := textOf(op, "#error"); !strings.Contains(got, "CSRF 校验失败") {
		t.Errorf("a form without its CSRF token was not refused; the page shows %q", got)
	}
	if st := postFrom(op, "/admin/journeys/"+key+"/resume", false); st != 403 {
		t.Errorf("a POST without a CSRF token answered %d, want 403", st)
	}
	op.do("reload the journey page", chromedp.Navigate(journeyPage), chromedp.WaitVisible(chromedp.ID("resume")))
	if got := attrOf(op, "#status [data-status]", "data-status"); got != "paused" {
		t.Errorf("after the refused resume the journey is %q, want still paused", got)
	}

	// The operator starts a new draft (the next version): a publish
	// button appears in the editor, for operators only.
	op.do("open the editor", chromedp.Navigate(journeyPage+"/edit"), chromedp.WaitVisible(chromedp.ID("ed-forms")),
		setField(`textarea[name="s.0.text"]`, "欢迎关注！"))
	op.submit("save a new draft", "#save-forms", chromedp.WaitVisible(chromedp.ID("publish")))

	// The viewer reads but gets no controls, and a publish is refused.
	viewer := newChromeTab(t)
	chromeSignIn(viewer, h.base, "vera", "vera-password")
	viewer.do("open the journey as a viewer", chromedp.Navigate(journeyPage), chromedp.WaitVisible(chromedp.ID("lifecycle")))
	for _, sel := range []string{"#pause", "#resume", "#archive", "#publish"} {
		if exists(viewer, sel) {
			t.Errorf("the viewer sees the control %s on the journey page", sel)
		}
	}
	if got := textOf(viewer, "#lifecycle"); !strings.Contains(got, "只有操作员和管理员可以暂停") {
		t.Errorf("the viewer's lifecycle panel reads %q, want the note that operators pause journeys", got)
	}
	viewer.do("open the editor as a viewer", chromedp.Navigate(journeyPage+"/edit"), chromedp.WaitVisible(chromedp.ID("ed-forms")))
	if exists(viewer, "#publish") {
		t.Errorf("the viewer sees a publish button in the editor")
	}
	for _, path := range []string{"/admin/journeys/" + key + "/publish", "/admin/journeys/" + key + "/resume"} {
		if st := postFrom(viewer, path, true); st != 403 {
			t.Errorf("the viewer's POST %s (with its CSRF token) answered %d, want 403", path, st)
		}
	}

	// Screenshots of the main pages.
	shots := []shot{
		{"dashboard", "/admin/", "#whoami"},
		{"journeys", "/admin/journeys", "#journeys"},
		{"journey-graph", "/admin/journeys/" + key, "#graph"},
		{"editor", "/admin/journeys/" + key + "/edit", "#ed-forms"},
		{"member-timeline", strings.TrimPrefix(memberPage, h.base), "#timeline"},
	}
	for _, lang := range []string{"zh-CN", "en"} {
		takeShots(t, h.base, lang, shots)
	}
}

// shot is a page to take a screenshot of: its name, its path, and what to
// wait for before the picture.
type shot struct{ name, path, ready string }

// takeShots signs in a fresh browser as the operator and takes the
// screenshots of pages in lang, at laptop (1280 px) and phone (390 px)
// widths: named NAME.LANG.laptop.png and NAME.LANG.phone.png.
func takeShots(t *testing.T, base, lang string, pages []shot) {
	t.Helper()
	dir, readme := t.TempDir(), os.Getenv(envScreenshots)
	if readme != "" && !filepath.IsAbs(readme) {
		// Relative to the repository, not to the package's directory
		// where go test runs.
		readme = filepath.Join("..", "..", readme)
	}
	if readme != "" {
		if err := os.MkdirAll(readme, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := newChromeTab(t)
	chromeSignIn(b, base, "olga", "olga-password")
	for _, w := range []struct {
		name string
		w, h int64
	}{{"laptop", 1280, 800}, {"phone", 390, 844}} {
		for _, p := range pages {
			sep := "?"
			if strings.Contains(p.path, "?") {
				sep = "&"
			}
			b.do("open "+p.name+" ("+lang+", "+w.name+")",
				chromedp.EmulateViewport(w.w, w.h),
				chromedp.Navigate(base+p.path+sep+"lang="+lang),
				chromedp.WaitVisible(chromedp.CSS(p.ready)),
			)
			if got := attrOf(b, "html", "lang"); got != lang {
				t.Errorf("%s in %s: the page's language is %q", p.name, lang, got)
			}
			img := chromeRun(b, "screenshot "+p.name, chromedp.FullScreenshot(100))
			to := dir
			if readme != "" && slices.Contains(readmeShots, p.name) {
				to = readme
			}
			file := filepath.Join(to, p.name+"."+lang+"."+w.name+".png")
			if to == readme {
				img = smallPNG(t, img)
			}
			if err := os.WriteFile(file, img, 0o644); err != nil {
				t.Fatalf("write %s: %v", file, err)
			}
			t.Logf("screenshot: %s", file)
		}
	}
}

// smallPNG makes a screenshot small enough to keep in the repository: its
// 256 most frequent colours (a page has few; the others, mostly
// anti-aliased edges, take the nearest), with the best compression.
func smallPNG(t *testing.T, img []byte) []byte {
	t.Helper()
	m, err := png.Decode(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	r := m.Bounds()
	counts := map[color.RGBA]int{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			counts[color.RGBAModel.Convert(m.At(x, y)).(color.RGBA)]++
		}
	}
	colors := slices.Collect(maps.Keys(counts))
	slices.SortFunc(colors, func(a, b color.RGBA) int { return counts[b] - counts[a] })
	var pal color.Palette
	for _, c := range colors[:min(256, len(colors))] {
		pal = append(pal, c)
	}
	p, index := image.NewPaletted(r, pal), map[color.RGBA]uint8{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.RGBAModel.Convert(m.At(x, y)).(color.RGBA)
			i, ok := index[c]
			if !ok {
				i = uint8(pal.Index(c))
				index[c] = i
			}
			p.SetColorIndex(x, y, i)
		}
	}
	var out bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&out, p); err != nil {
		t.Fatal(err)
	}
	if out.Len() > len(img) {
		return img
	}
	return out.Bytes()
}

// chromeSignIn signs in with the login form and waits for the signed-in header.
func chromeSignIn(b *chromeTab, base, user, pass string) {
	b.t.Helper()
	b.do("sign in as "+user,
		chromedp.Navigate(base+"/admin/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)),
		setField(`input[name=username]`, user),
		setField(`input[name=password]`, pass),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("whoami")),
	)
}

// setField empties the form field sel and types v into it.
func setField(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector(`+strconv.Quote(sel)+`).value = ""`),
		chromedp.SendKeys(chromedp.CSS(sel), v))
}

// submit clicks the submit button sel and waits for the next page: the
// current page is marked, the mark gone means the browser left it; then
// the actions then run (wait for what the next page shows).
func (b *chromeTab) submit(step, sel string, then ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.do(step,
		chromedp.Evaluate[chromedp.Void](`document.body.insertAdjacentHTML("beforeend", '<i id="e2e-left-behind"></i>')`),
		chromedp.Click(chromedp.CSS(sel)),
		chromedp.WaitNotPresent(chromedp.ID("e2e-left-behind")),
		chromedp.Steps(then...),
	)
}

// eval evaluates a JavaScript expression in the tab.
func eval[T any](b *chromeTab, what, js string) T {
	b.t.Helper()
	return chromeRun(b, what, chromedp.Evaluate[T](js))
}

// textOf is the visible text of the first element sel matches ("" when none).
func textOf(b *chromeTab, sel string) string {
	b.t.Helper()
	return eval[string](b, "read "+sel, `(e => e ? (e.innerText ?? e.textContent).trim() : "")(document.querySelector(`+strconv.Quote(sel)+`))`)
}

// valueOf is the value of the form field sel.
func valueOf(b *chromeTab, sel string) string {
	b.t.Helper()
	return eval[string](b, "read "+sel, `document.querySelector(`+strconv.Quote(sel)+`).value`)
}

// attrOf is the attribute name of the first element sel matches.
func attrOf(b *chromeTab, sel, name string) string {
	b.t.Helper()
	return eval[string](b, "read "+sel, `(e => e ? e.getAttribute(`+strconv.Quote(name)+`) || "" : "")(document.querySelector(`+strconv.Quote(sel)+`))`)
}

// exists reports whether sel matches an element of the page.
func exists(b *chromeTab, sel string) bool {
	b.t.Helper()
	return eval[bool](b, "look for "+sel, `document.querySelector(`+strconv.Quote(sel)+`) !== null`)
}

// stepIDs is the attribute name of every element sel matches, in order.
func stepIDs(b *chromeTab, sel, name string) []string {
	b.t.Helper()
	return eval[[]string](b, "read "+sel, `Array.from(document.querySelectorAll(`+strconv.Quote(sel)+`), e => e.getAttribute(`+strconv.Quote(name)+`))`)
}

// stepsShown is the number of steps the editor's forms show.
func stepsShown(b *chromeTab) int {
	b.t.Helper()
	return eval[int](b, "count the steps", `document.querySelectorAll("#ed-forms fieldset.ed-step").length`)
}

// boxCounts is the counts line of a step's box on the journey graph
// ("到达 1 · 通过 1").
func boxCounts(b *chromeTab, step string) string {
	b.t.Helper()
	return eval[string](b, "read the box of "+step, `(e => e ? e.textContent : "")(document.querySelector('#graph g[data-step="`+step+`"] text.counts'))`)
}

// waitPage polls the page at url (fetched by the signed-in tab, as a
// reload would show it) until an element sel's text contains want.
func waitPage(b *chromeTab, url, sel, want string) string {
	b.t.Helper()
	got, err := chromedp.Run(b.ctx, chromedp.PollFunction[string](`async (url, sel, want) => {
		const r = await fetch(url, {credentials: "same-origin"});
		const d = new DOMParser().parseFromString(await r.text(), "text/html");
		for (const e of d.querySelectorAll(sel)) if (e.textContent.includes(want)) return e.textContent;
		return false;
	}`, chromedp.WithPollingArgs(url, sel, want), chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil || got == "" {
		b.t.Fatalf("waiting for %s on %s to show %q: %v\n%s", sel, url, want, err, b.shows())
	}
	return got
}

// waitBox polls the journey page until the graph's box of step shows want.
func waitBox(b *chromeTab, url, step, want string) {
	b.t.Helper()
	waitPage(b, url, `g[data-step="`+step+`"] text.counts`, want)
}

// postFrom posts an empty form to path from the tab's page with fetch,
// with the page's CSRF token when withToken, and returns the status.
func postFrom(b *chromeTab, path string, withToken bool) int {
	b.t.Helper()
	body := "new URLSearchParams()"
	if withToken {
		body = `new URLSearchParams({csrf_token: document.querySelector("input[name=csrf_token]").value})`
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	st, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch(`+strconv.Quote(path)+`, {method: "POST", body: `+body+`, credentials: "same-origin", redirect: "manual"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("POST %s from the page: %v", path, err)
	}
	return st
}
