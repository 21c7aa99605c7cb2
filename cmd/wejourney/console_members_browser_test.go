package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// TestBrowserConsoleMember finds, on a phone-sized screen and with the
// forms alone, the member a simulated follow made, and reads their page:
// the follow in the timeline, the welcome message's delivery above it,
// the customer-service allowance the follow opened; then marks them a
// tester.
func TestBrowserConsoleMember(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	const openid = "o_members_browser_0123456789abcdef"
	h := newHarness(t, testJourneys)
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: openid, Scene: "store_001"})
	h.eventually("a delivery recorded", 5*time.Second, func() bool {
		return h.count(&model.Delivery{}, "1 = 1") >= 1
	})

	b := newChromeTab(t)
	b.do("prepare the browser", chromedp.EmulateViewport(390, 844))
	chromeSignIn(b, h.base, "admin", "admin-pass")
	b.do("wait for the dashboard", chromedp.WaitVisible(chromedp.ID("deliveries")))
	b.do("search the member by openid",
		chromedp.Navigate(h.base+"/admin/members"),
		chromedp.WaitVisible(chromedp.ID("empty")),
		chromedp.SendKeys(chromedp.CSS(`#member-search input[name=q]`), openid),
		chromedp.Click(chromedp.CSS(`#member-search button`)),
		chromedp.WaitVisible(chromedp.ID("members")),
	)
	rows := b.table("members")
	if len(rows) != 1 || rows[0]["OpenID"] != openid || rows[0]["已关注"] != "是" || rows[0]["首次场景"] != "store_001" {
		t.Fatalf("search results %q; want the member, following, first scene store_001", rows)
	}
	b.do("open the member", chromedp.Click(chromedp.CSS(`#members a`)), chromedp.WaitVisible(chromedp.ID("timeline")))
	if w := chromeRun(b, "measure the member page", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("the member page is %d px wide on a 390 px screen", w)
	}
	tl := b.table("timeline")
	ev, del := -1, -1
	for i, r := range tl {
		switch {
		case r["类型"] == "事件" && strings.Contains(r["内容"], "wechat.subscribe"):
			ev = i
		case r["类型"] == "消息投递" && strings.HasPrefix(r["状态"], "已发送") || r["类型"] == "消息投递" && strings.HasPrefix(r["状态"], "沙箱"):
			del = i
		}
		if !strings.HasSuffix(r["时间"], "CST") {
			t.Errorf("timeline time %q is not in CST", r["时间"])
		}
	}
	if ev < 0 || del < 0 || del > ev {
		t.Errorf("timeline %q: want the follow event and the welcome delivery above it", tl)
	}
	if got := chromeRun(b, "read the allowance", chromedp.Text(chromedp.ID("allowance"))); !strings.Contains(got, "条可发") {
		t.Errorf("allowance reads %q; want the messages the follow allows", got)
	}
	png := chromeRun(b, "take a screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile("/tmp/wejourney-console-member-390.png", png, 0o644); err == nil {
		t.Log("screenshot: /tmp/wejourney-console-member-390.png")
	}
	b.do("mark a tester", chromedp.Click(chromedp.CSS(`#tester-form button`)), chromedp.WaitVisible(chromedp.ID("done")))
	if got := chromeRun(b, "read the tags", chromedp.Text(chromedp.ID("tags"))); !strings.Contains(got, "tester") {
		t.Errorf("tags read %q after marking a tester", got)
	}
}
