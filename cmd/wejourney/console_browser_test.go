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

// TestBrowserConsolePhone uses the console on a phone-sized screen (390
// px wide) as an admin does: every page fits the width (tables scroll
// inside their box), the navigation is there, and a user added with the
// form (no script) shows in the list and in the audit log.
func TestBrowserConsolePhone(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	h := newHarness(t, testJourneys)
	h.send(h.plain, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_phone_member_with_a_long_openid_0123456789", Scene: "store_001"})
	h.eventually("a delivery recorded", 5*time.Second, func() bool {
		return h.count(&model.Delivery{}, "1 = 1") >= 1
	})

	b := newChromeTab(t)
	b.do("prepare the browser", chromedp.EmulateViewport(390, 844))
	chromeSignIn(b, h.base, "admin", "admin-pass")
	b.do("wait for the dashboard", chromedp.WaitVisible(chromedp.ID("deliveries")))
	fits := func(page string) {
		t.Helper()
		w := chromeRun(b, "measure "+page, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		if w > 390 {
			t.Errorf("%s is %d px wide on a 390 px screen", page, w)
		}
		if n := chromeRun(b, "count scripts on "+page, chromedp.Evaluate[int](`document.scripts.length`)); n != 0 {
			t.Errorf("%s has %d scripts; the console needs none", page, n)
		}
	}
	fits("the dashboard")
	nav := chromeRun(b, "read the nav", chromedp.Text(chromedp.ID("nav")))
	for _, w := range []string{"仪表盘", "旅程", "会员", "发送记录", "账号与渠道", "二维码", "用户", "审计日志"} {
		if !strings.Contains(nav, w) {
			t.Errorf("nav %q lacks %s", nav, w)
		}
	}
	if who := chromeRun(b, "read who is signed in", chromedp.Text(chromedp.ID("whoami"))); !strings.Contains(who, "admin") || !strings.Contains(who, "管理员") {
		t.Errorf("the header shows %q, want the user admin and the role 管理员", who)
	}

	b.do("add an operator with the form",
		chromedp.Navigate(h.base+"/admin/users"),
		chromedp.WaitVisible(chromedp.ID("add-user")),
		chromedp.SendKeys(chromedp.CSS(`#add-user input[name=username]`), "carol"),
		chromedp.SetValue(chromedp.CSS(`#add-user select[name=role]`), "operator"),
		chromedp.SendKeys(chromedp.CSS(`#add-user input[name=password]`), "carol-password"),
		chromedp.Click(chromedp.CSS(`#add-user button`)),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	fits("the users page")
	if got := chromeRun(b, "read carol's entry", chromedp.Text(chromedp.CSS(`[data-user=carol]`))); !strings.Contains(got, "运营") {
		t.Errorf("carol's entry reads %q, want role 运营", got)
	}
	b.do("open the audit log", chromedp.Navigate(h.base+"/admin/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	fits("the audit log")
	audit := b.table("audit")
	if r := findRow(audit, "操作", "添加用户"); r == nil || r["对象"] != "carol" || !strings.HasPrefix(r["操作者"], "admin") || !strings.HasSuffix(r["时间"], "CST") {
		t.Errorf("audit log has no row admin 添加用户 carol with a CST time: %q", audit)
	}
	if findRow(audit, "操作", "登录") == nil {
		t.Errorf("audit log has no sign-in: %q", audit)
	}
	b.do("open the QR codes page", chromedp.Navigate(h.base+"/admin/qrcodes"), chromedp.WaitVisible(chromedp.ID("create-qr")))
	fits("the QR codes page")
	b.do("open the accounts page", chromedp.Navigate(h.base+"/admin/accounts"), chromedp.WaitVisible(chromedp.ID("accounts")))
	fits("the accounts page")
	if got := chromeRun(b, "read the accounts", chromedp.Text(chromedp.ID("accounts"))); !strings.Contains(got, "/wechat/oa/") {
		t.Errorf("the accounts page shows no callback URL: %q", got)
	}
	png := chromeRun(b, "take a screenshot", chromedp.FullScreenshot(100))
	os.WriteFile("/tmp/wejourney-console-accounts-390.png", png, 0o644)
	b.do("open the API keys page", chromedp.Navigate(h.base+"/admin/apikeys"), chromedp.WaitVisible(chromedp.ID("create-key")))
	fits("the API keys page")
	b.do("switch to English", chromedp.Navigate(h.base+"/admin/?lang=en"), chromedp.WaitVisible(chromedp.ID("journeys")))
	fits("the English dashboard")
	png = chromeRun(b, "take a screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile("/tmp/wejourney-console-390.png", png, 0o644); err == nil {
		t.Log("screenshot: /tmp/wejourney-console-390.png")
	}
	b.do("back to Chinese, users page", chromedp.Navigate(h.base+"/admin/users?lang=zh-CN"), chromedp.WaitVisible(chromedp.ID("users")))
	png = chromeRun(b, "take a screenshot", chromedp.FullScreenshot(100))
	os.WriteFile("/tmp/wejourney-console-users-390.png", png, 0o644)
}
