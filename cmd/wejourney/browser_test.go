package main

import (
	"context"
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

// chromiumPath is Debian's chromium, which the browser tests drive.
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds all the page steps of one browser test.
const browserTimeout = 60 * time.Second

// TestBrowserAdmin walks the admin page in a real browser as an operator
// does: log in (once wrongly), read the journey and the delivery a follow
// produced, switch to English, and take a screenshot.
func TestBrowserAdmin(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	h := newHarness(t, testJourneys)

	// A member follows from a store QR code: one welcome message is sent.
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_x", Scene: "store_001"})
	h.waitMessages("o_x", 1, 5*time.Second)
	h.eventually("the welcome delivery recorded as sent", 5*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ? AND status = ?", "wechat.text", model.DeliverySent) == 1
	})

	// Not logged in: /admin/ shows the login page, in Chinese.
	b := newChromeTab(t)
	b.do("open /admin/",
		chromedp.Navigate(h.base+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)),
	)
	if loc := chromeRun(b, "read the address", chromedp.Location()); !strings.HasSuffix(loc, "/admin/login") {
		t.Errorf("/admin/ without a session went to %s, want the login page", loc)
	}
	if got := chromeRun(b, "read the login button", chromedp.Text(chromedp.CSS(`button[type=submit]`))); got != "登录" {
		t.Errorf("login button says %q, want 登录", got)
	}

	// A wrong password: the login page comes back with an error.
	b.do("log in with a wrong password",
		chromedp.Clear(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "wrong-pass"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if got := chromeRun(b, "read the login error", chromedp.Text(chromedp.ID("error"))); got != "用户名或密码错误" {
		t.Errorf("login error says %q, want 用户名或密码错误", got)
	}

	// The right password: the dashboard.
	b.do("log in as admin",
		chromedp.Clear(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "admin-pass"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("journeys")),
		chromedp.WaitVisible(chromedp.ID("deliveries")),
	)
	wantHeadings := []string{"关注与取关（按场景）", "旅程", "消息（按渠道）", "主要失败原因（近 7 天）", "最近事件", "最近发送"}
	if got := b.headings(); !slices.Equal(got, wantHeadings) {
		t.Errorf("dashboard headings = %q, want %q", got, wantHeadings)
	}
	if f := findRow(b.table("follows"), "场景", "store_001"); f == nil || f["今天关注"] != "1" {
		t.Errorf("#follows has no row of store_001 with 1 follow today: %q", b.table("follows"))
	}
	journeys := b.table("journeys")
	if j := findRow(journeys, "标识", "welcome-store"); j == nil {
		t.Errorf("#journeys has no row for welcome-store: %q", journeys)
	} else {
		if j["名称"] != "门店扫码关注欢迎" {
			t.Errorf("welcome-store is named %q on the page, want 门店扫码关注欢迎", j["名称"])
		}
		if j["今天进入"] != "1" {
			t.Errorf("welcome-store shows %q entered today, want 1", j["今天进入"])
		}
	}
	deliveries := b.table("deliveries")
	if d := findRow(deliveries, "渠道", "微信文本"); d == nil {
		t.Errorf("#deliveries has no wechat.text (微信文本) row: %q", deliveries)
	} else {
		want := map[string]string{"旅程": "welcome-store", "会员": "o_x", "状态": "已发送", "内容": "欢迎来到 store_001!"}
		for col, v := range want {
			if d[col] != v {
				t.Errorf("#deliveries wechat.text row: %s = %q, want %q (row %q)", col, d[col], v, d)
			}
		}
	}

	// The language link switches the page to English.
	b.do("switch to English",
		chromedp.Click(`//header//a[normalize-space()="English"]`),
		chromedp.WaitVisible(`//h3[normalize-space()="Journeys"]`),
	)
	wantHeadings = []string{"Follows and unfollows by scene", "Journeys", "Messages by channel", "Top failure reasons (7 days)", "Recent events", "Recent deliveries"}
	if got := b.headings(); !slices.Equal(got, wantHeadings) {
		t.Errorf("English headings = %q, want %q", got, wantHeadings)
	}
	if d := findRow(b.table("deliveries"), "Channel", "WeChat text"); d == nil || d["Member"] != "o_x" || d["Status"] != "sent" {
		t.Errorf("English #deliveries: WeChat text row = %q, want one sent to member o_x", d)
	}

	// A screenshot of what the operator sees.
	png := chromeRun(b, "take a screenshot", chromedp.FullScreenshot(100))
	shot := filepath.Join(t.TempDir(), "admin-en.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	const shared = "/tmp/wejourney-admin.png"
	if err := os.WriteFile(shared, png, 0o644); err != nil {
		t.Errorf("copy the screenshot: %v", err)
	} else {
		t.Logf("screenshot: %s (copy at %s)", shot, shared)
	}
}

// chromeTab is one headless Chromium tab, driven with chromedp, that lives
// until its test ends.
type chromeTab struct {
	t   *testing.T
	tab context.Context // the tab itself, without a deadline
	ctx context.Context // the tab with the test's deadline (browserTimeout)
}

// newChromeTab starts Chromium with a fresh profile and opens a tab, or
// skips the test when Chromium is not installed.
func newChromeTab(t *testing.T) *chromeTab {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s not found; .ci/run installs it (apt-get install chromium): %v", chromiumPath, err)
	}
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		// A Chinese operator's browser: it asks for Chinese pages
		// (Accept-Language), as headless Chromium's default en-US would
		// get the console in English.
		chromedp.Flag("lang", "zh-CN"),
		chromedp.Flag("accept-lang", "zh-CN,zh"),
		// The machine has no network: keep Chromium from reaching out
		// (it stalls otherwise), and from any proxy the environment names.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
	)
	// The hard limit stops the browser even if it hangs while starting.
	limit, cancelLimit := context.WithTimeout(context.Background(), 2*browserTimeout)
	alloc, cancelAlloc := chromedp.NewExecAllocator(limit, opts...)
	tab, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelCtx := context.WithTimeout(tab, browserTimeout)
	t.Cleanup(func() {
		cancelCtx()
		cancelTab()
		cancelAlloc()
		cancelLimit()
	})
	// Start the browser now, bound to the tab's context, so that the
	// deadline of ctx ends the steps and not the browser.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return &chromeTab{t: t, tab: tab, ctx: ctx}
}

// do runs actions in the tab, and on an error fails the test with the step
// and what the page shows.
func (b *chromeTab) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\n%s", step, err, b.shows())
	}
}

// chromeRun runs one action in the tab and returns its value; on an error it
// fails the test with the step and what the page shows.
func chromeRun[T any](b *chromeTab, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v\n%s", step, err, b.shows())
	}
	return v
}

// shows describes the page for a failure message: its address and its
// visible text.
func (b *chromeTab) shows() string {
	ctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(the page cannot be read: " + err.Error() + ")"
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		text = "(no text: " + err.Error() + ")"
	}
	return "the page at " + loc + " shows:\n" + text
}

// headings returns the visible text of the page's section headings (h3).
func (b *chromeTab) headings() []string {
	b.t.Helper()
	return chromeRun(b, "read the headings", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("h3"), h => h.innerText.trim())`))
}

// table returns the rows of the table with the given id as the operator
// reads them: each row maps a column's header text to the cell's visible
// text.
func (b *chromeTab) table(id string) []map[string]string {
	b.t.Helper()
	cells := chromeRun(b, "read #"+id, chromedp.Evaluate[[][]string](
		`Array.from(document.getElementById(`+strconv.Quote(id)+`).rows,
			r => Array.from(r.cells, c => c.innerText.trim()))`))
	if len(cells) == 0 {
		b.t.Fatalf("#%s has no rows, not even a header", id)
	}
	header := cells[0]
	var rows []map[string]string
	for _, r := range cells[1:] {
		row := map[string]string{}
		for i, v := range r {
			if i < len(header) {
				row[header[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// findRow returns the first row whose column col reads want, or nil.
func findRow(rows []map[string]string, col, want string) map[string]string {
	for _, r := range rows {
		if r[col] == want {
			return r
		}
	}
	return nil
}
