package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// `wejourney journeys test` walks a journey file for a member and prints
// the path and the rendered messages, touching no member.
func TestJourneysTestCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("wejourney.yaml", "database_url: sqlite:"+filepath.Join(dir, "wj.db")+"\n")
	file := write("bind.yaml", `
key: bind
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: "欢迎 {{ .event.scene }}" }, next: ask }
  - { id: ask, wait_for: { event: form.submitted, timeout: 48h }, next: thanks, on_timeout: remind }
  - { id: remind, send: { channel: sms, template: SMS_1 } }
  - { id: thanks, send: { channel: wechat.text, text: 谢谢 } }
`)
	ev := write("ev.json", `{"type": "wechat.subscribe", "props": {"scene": "store_001"}}`)
	later := write("later.json", `[{"type": "form.submitted"}]`)
	tests := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{"no form: the reminder", []string{"--member", "o_new", "--event", ev, file},
			[]string{"test run, nothing sent", `"text":"欢迎 store_001"`, "ask            wait_for  timeout", `"template":"SMS_1"`, "end: completed"}, []string{"谢谢"}},
		{"the form while waiting: thanks", []string{"--member", "o_new", "--event", ev, "--later", later, file},
			[]string{"ask            wait_for  matched", `"text":"谢谢"`}, []string{"SMS_1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { // one after another: they share the database file
			out, errOut, err := runCLI(t, append([]string{"journeys", "test", "--config", cfg}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
	if _, _, err := runCLI(t, "journeys", "test", file); err == nil || !strings.Contains(err.Error(), "usage: wejourney journeys test") {
		t.Errorf("without --member: %v, want the usage", err)
	}
}

// `wejourney journeys test --send` delivers the messages of the path to a
// tester through the configured senders (here WeChat's, on a fake) and
// prints each provider's answer; it refuses any other member and exits
// with an error when a message is not sent. Nothing is recorded.
func TestJourneysTestCLISend(t *testing.T) {
	t.Parallel()
	const oa = "wx00000000000000ab"
	wx := fakewx.New(fakewx.Config{Secrets: map[string]string{oa: "oa-secret"}})
	t.Cleanup(wx.Close)
	wx.SetError("o_refused", 45015)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "wejourney.yaml")
	src := "database_url: sqlite:" + filepath.Join(dir, "w.db") + "\nsecret_key: " + testSecretKey + "\nwechat_appid: " + oa +
		"\nwechat_appsecret: oa-secret\nwechat_token: tok\nwechat_api_base: " + wx.URL + "\n"
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, box, err := openStore(context.Background(), cfg, Options{AutoMigrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := model.UpsertAccount(db, box, model.Account{Kind: model.AccountWeChatOA, AppID: oa, AppSecret: "oa-secret"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []model.Member{
		{OpenID: "o_tester", AppID: oa, Nickname: "小王", Tags: []string{model.TesterTag}},
		{OpenID: "o_member", AppID: oa, Nickname: "小李"},
		{OpenID: "o_refused", AppID: oa, Tags: []string{model.TesterTag}},
	} {
		if err := db.Create(&m).Error; err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "welcome.yaml")
	if err := os.WriteFile(file, []byte(`
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: "欢迎 {{ .member.nickname }}" }, next: later }
  - { id: later, wait: 24h, next: bye }
  - { id: bye, send: { channel: wechat.text, text: 再见 } }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		wantErr   string // "": exits 0
		want      []string
		wantTexts []string // what the fake WeChat received, to o_tester
	}{
		{name: "a tester gets the messages", args: []string{"--member", "o_tester", "--send"},
			want:      []string{"test run, sending to the tester (nothing recorded)", "wechat.text: ok, sent", "end: completed"},
			wantTexts: []string{"欢迎 小王", "再见"}},
		{name: "not a tester: refused", args: []string{"--member", "o_member", "--send"},
			wantErr: `not a tester: member 2 does not carry the reserved tag "tester"`},
		{name: "a follower the database does not know: refused", args: []string{"--member", "o_new", "--send"},
			wantErr: "POST /api/v1/members/ID/tester"},
		{name: "without --send: nothing sent", args: []string{"--member", "o_tester"},
			want: []string{"test run, nothing sent", `"text":"再见"`}},
		{name: "WeChat refuses: its answer and an error exit", args: []string{"--member", "o_refused", "--send"},
			wantErr: "1 of the test run's messages were not sent", want: []string{"wechat.text: not sent:", "code 45015", "end: unreachable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { // one after another: they share the fake and the database
			before := len(wx.Messages())
			out, errOut, err := runCLI(t, append([]string{"journeys", "test", "--config", cfgFile, file}, tc.args...)...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("%v\n%s\n%s", err, out, errOut)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want %q\n%s", err, tc.wantErr, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			var texts []string
			for _, m := range wx.Messages()[before:] {
				if m.ToUser != "o_tester" {
					t.Errorf("WeChat got %q for %s", m.Text, m.ToUser)
				}
				texts = append(texts, m.Text)
			}
			if strings.Join(texts, "|") != strings.Join(tc.wantTexts, "|") {
				t.Errorf("WeChat got %q, want %q", texts, tc.wantTexts)
			}
		})
	}
	for _, table := range []any{&model.Delivery{}, &model.Enrollment{}, &model.StepVisit{}} {
		var n int64
		db.Model(table).Count(&n)
		if n != 0 {
			t.Errorf("the test runs recorded %d %T", n, table)
		}
	}
	s, _ := db.DB()
	s.Close()
}
