package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
