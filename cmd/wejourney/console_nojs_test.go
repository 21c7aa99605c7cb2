package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// TestBrowserConsoleWithoutJavaScript reads every page of the console in
// Chromium with JavaScript turned off, as an admin: signing in is a plain
// form, and each page shows its heading and its content, in Chinese, at
// laptop and phone widths, never wider than the screen.
func TestBrowserConsoleWithoutJavaScript(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	h := newHarness(t, testJourneys)
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_nojs_member_with_a_long_openid_01234567", Scene: "store_001"})
	h.eventually("a delivery recorded", 5*time.Second, func() bool {
		return h.count(&model.Delivery{}, "1 = 1") >= 1
	})
	var m model.Member
	if err := h.db.Where("open_id = ?", "o_nojs_member_with_a_long_openid_01234567").First(&m).Error; err != nil {
		t.Fatal(err)
	}

	b := newChromeTab(t)
	noScript := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})
	b.do("turn JavaScript off", noScript)
	chromeSignIn(b, h.base, "admin", "admin-pass")
	pages := []struct{ path, heading, content string }{
		{"/admin/", "仪表盘", "门店扫码关注欢迎"},
		{"/admin/journeys", "旅程", "welcome-store"},
		{"/admin/journeys/welcome-store", "welcome-store", "到达"},
		{"/admin/journeys/new", "新建旅程", "YAML"},
		{"/admin/journeys/welcome-store/test", "试运行", "welcome-store"},
		{"/admin/members?q=o_nojs_member_with_a_long_openid_01234567", "会员", "store_001"},
		{fmt.Sprintf("/admin/members/%d", m.ID), fmt.Sprintf("#%d", m.ID), "wechat.subscribe"},
		{"/admin/deliveries", "发送记录", "hello"},
		{"/admin/accounts", "账号与渠道", "wxtest"},
		{"/admin/apikeys", "API", ""},
		{"/admin/qrcodes", "二维码", ""},
		{"/admin/users", "用户", "admin"},
		{"/admin/audit", "审计日志", "admin"},
	}
	for _, width := range []int64{1280, 390} {
		b.do(fmt.Sprintf("a %d px screen", width), chromedp.EmulateViewport(width, 900))
		for _, p := range pages {
			b.do("open "+p.path, chromedp.Navigate(h.base+p.path), chromedp.WaitVisible(chromedp.CSS(`main h2`)))
			heading := chromeRun(b, "read the heading of "+p.path, chromedp.Text(chromedp.CSS(`main h2`)))
			main := chromeRun(b, "read "+p.path, chromedp.Text(chromedp.CSS(`main`)))
			wide := chromeRun(b, "measure "+p.path, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
			if !strings.Contains(heading, p.heading) {
				t.Errorf("%s at %d px: heading %q, want %q", p.path, width, heading, p.heading)
			}
			if !strings.Contains(main, p.content) {
				t.Errorf("%s at %d px: the page does not show %q without JavaScript:\n%.600s", p.path, width, p.content, main)
			}
			if wide > int(width) {
				t.Errorf("%s is %d px wide on a %d px screen", p.path, wide, width)
			}
		}
	}
}
