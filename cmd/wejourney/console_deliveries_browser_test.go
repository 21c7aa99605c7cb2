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

// TestBrowserConsoleDeliveries reads the Deliveries page in Chromium as a
// viewer would after a follow: the welcome's row in words, filtered by
// status with the form (no script), in Chinese and English, on a laptop
// and on a phone (the page fits 390 px); screenshots of both.
func TestBrowserConsoleDeliveries(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	h := newHarness(t, testJourneys)
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_deliv", Scene: "store_001"})
	h.eventually("the welcome delivery recorded as sent", 5*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ? AND status = ?", "wechat.text", model.DeliverySent) == 1
	})
	b := newChromeTab(t)
	b.do("prepare the browser", chromedp.EmulateViewport(1280, 900))
	chromeSignIn(b, h.base, "admin", "admin-pass")
	b.do("wait for the dashboard", chromedp.WaitVisible(chromedp.ID("follows")))
	if r := findRow(b.table("follows"), "场景", "store_001"); r == nil || r["今天关注"] != "1" {
		t.Errorf("dashboard #follows: no store_001 row with 1 follow today: %q", b.table("follows"))
	}
	b.do("open the deliveries", chromedp.Click(`//nav//a[normalize-space()="发送记录"]`), chromedp.WaitVisible(chromedp.ID("delivery-list")))
	row := findRow(b.table("delivery-list"), "渠道", "微信文本")
	if row == nil || row["会员"] != "o_deliv" || row["状态"] != "已发送" || row["步骤"] != "hello" || !strings.HasSuffix(row["时间"], "CST") {
		t.Errorf("deliveries: o_deliv's row = %q, want 微信文本 已发送 at step hello with a CST time", row)
	}
	b.do("filter failed ones with the form",
		chromedp.SetValue(chromedp.CSS(`#delivery-filter select[name=status]`), "failed"),
		chromedp.Click(chromedp.CSS(`#delivery-filter button`)),
		chromedp.WaitVisible(chromedp.ID("deliveries-empty")),
	)
	if got := chromeRun(b, "read the empty state", chromedp.Text(chromedp.ID("deliveries-empty"))); !strings.Contains(got, "wejourney simulate subscribe") {
		t.Errorf("the empty state says %q, want what to do next", got)
	}
	b.do("in English", chromedp.Navigate(h.base+"/admin/deliveries?lang=en"), chromedp.WaitVisible(chromedp.ID("delivery-list")))
	if row := findRow(b.table("delivery-list"), "Channel", "WeChat text"); row == nil || row["Member"] != "o_deliv" || row["Status"] != "sent" {
		t.Errorf("English deliveries: o_deliv's row = %q, want WeChat text, sent", row)
	}
	shot := func(name string) {
		png := chromeRun(b, "screenshot "+name, chromedp.FullScreenshot(100))
		if err := os.WriteFile("/tmp/"+name, png, 0o644); err == nil {
			t.Logf("screenshot: /tmp/%s", name)
		}
	}
	shot("wejourney-deliveries-en.png")
	b.do("on a phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(h.base+"/admin/deliveries?lang=zh-CN"),
		chromedp.WaitVisible(chromedp.ID("delivery-list")))
	if w := chromeRun(b, "measure the page", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("the deliveries page is %d px wide on a 390 px screen", w)
	}
	if n := chromeRun(b, "count scripts", chromedp.Evaluate[int](`document.scripts.length`)); n != 0 {
		t.Errorf("the deliveries page has %d scripts; it needs none", n)
	}
	shot("wejourney-deliveries-390.png")
	b.do("the dashboard on a phone", chromedp.Navigate(h.base+"/admin/"), chromedp.WaitVisible(chromedp.ID("follows")))
	if w := chromeRun(b, "measure the dashboard", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("the dashboard is %d px wide on a 390 px screen", w)
	}
	shot("wejourney-dashboard-390.png")
}
