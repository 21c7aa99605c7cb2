// Package web holds the admin page's templates and static assets, embedded
// into the binary. Pages speak Chinese (zh-CN) first; every text has an
// English version chosen with ?lang=en.
package web

import (
	"embed"
	"html/template"
)

//go:embed templates/*.html
var files embed.FS

// Messages are the page texts by language ("zh-CN", "en") and key.
var Messages = map[string]map[string]string{
	"zh-CN": {
		"title": "wejourney 旅程管理", "login": "登录", "username": "用户名", "password": "密码",
		"bad_login": "用户名或密码错误", "logout": "退出", "journeys": "旅程", "key": "标识", "name": "名称",
		"version": "版本", "status": "状态", "entered": "进入", "active": "进行中", "completed": "已完成",
		"goal": "达成目标", "exited": "退出", "dropped": "流失", "deliveries": "最近发送", "time": "时间", "member": "会员",
		"channel": "渠道", "content": "内容", "journey": "旅程", "none": "暂无", "callback": "回调地址",
		"other_lang": "English", "other_lang_code": "en", "sandbox_note": "沙箱账号：消息只记录不发送。",
		"too_many": "尝试次数过多，请 %d 分钟后再试", "busy": "服务器繁忙，请稍后再试",
		"db_error": "暂时无法访问数据库，请稍后再试", "csrf_failed": "表单已过期或无效（CSRF 校验失败），请刷新页面后重试",
		"back_to_login": "返回登录",
	},
	"en": {
		"title": "wejourney journeys", "login": "Log in", "username": "Username", "password": "Password",
		"bad_login": "Wrong username or password", "logout": "Log out", "journeys": "Journeys", "key": "Key", "name": "Name",
		"version": "Version", "status": "Status", "entered": "Entered", "active": "Active", "completed": "Completed",
		"goal": "Reached goal", "exited": "Exited", "dropped": "Dropped", "deliveries": "Recent deliveries", "time": "Time", "member": "Member",
		"channel": "Channel", "content": "Content", "journey": "Journey", "none": "None yet", "callback": "Callback URL",
		"other_lang": "中文", "other_lang_code": "zh-CN", "sandbox_note": "Sandbox account: messages are recorded, not sent.",
		"too_many": "Too many attempts; try again in %d min", "busy": "The server is busy; try again in a moment",
		"db_error": "The database cannot be reached; try again shortly", "csrf_failed": "This form has expired or is not valid (CSRF check failed); reload the page and try again",
		"back_to_login": "Back to sign-in",
	},
}

// Lang returns a supported language for a ?lang= value, zh-CN by default.
func Lang(v string) string {
	if _, ok := Messages[v]; ok {
		return v
	}
	return "zh-CN"
}

// Templates parses the admin page templates.
func Templates() *template.Template {
	return template.Must(template.New("").ParseFS(files, "templates/*.html"))
}
