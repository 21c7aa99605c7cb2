package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/internal/fakewecom"
)

// TestCLIChannels: `wejourney channels` lists the channels served and
// their providers; `channels test` sends one message through the same
// senders as the server (here WeCom's, on a fake) and exits with an error
// when the provider refuses it.
func TestCLIChannels(t *testing.T) {
	t.Parallel()
	const corp = "ww00000000000000dd"
	wc := fakewecom.New()
	t.Cleanup(wc.Close)
	wc.AddCorp(corp, "corp-secret")
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "wejourney.yaml")
	src := "database_url: sqlite:" + filepath.Join(dir, "w.db") + "\nsecret_key: " + testSecretKey +
		"\nwecom_corpid: " + corp + "\nwecom_agentid: \"1000002\"\nwecom_secret: corp-secret\nwecom_token: wctok\nwecom_aes_key: " + testAESKey +
		"\nwecom_api_base: " + wc.URL + "\nsms_provider: log\n"
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}

	out, _, err := runCLI(t, "channels", "--config", cfgFile)
	if err != nil {
		t.Fatalf("channels: %v", err)
	}
	for _, want := range []string{"wecom.welcome", "wecom.group_message", "default app " + corp + "/1000002", "sms ", "log (development: nothing is sent)", "wechat.text"} {
		if !strings.Contains(out, want) {
			t.Errorf("channels output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runCLI(t, "channels", "test", "wecom.text", "--to", "rep1", "--text", "a customer from store_001 just added you", "--config", cfgFile)
	if err != nil || !strings.Contains(out, "ok, sent") {
		t.Fatalf("channels test wecom.text: %v\n%s", err, out)
	}
	reqs := wc.Requests(fakewecom.MessageSendPath)
	var sent struct {
		ToUser  string `json:"touser"`
		AgentID int    `json:"agentid"`
		Text    struct{ Content string }
	}
	if len(reqs) != 1 || json.Unmarshal(reqs[0].Body, &sent) != nil || sent.ToUser != "rep1" || sent.AgentID != 1000002 ||
		sent.Text.Content != "a customer from store_001 just added you" {
		t.Fatalf("message/send got %d requests: %+v", len(reqs), sent)
	}

	code := wc.IssueWelcomeCode()
	welcome := []string{"channels", "test", "wecom.welcome", "--to", "wmX", "--text", "hi", "--extra", "welcome_code=" + code, "--config", cfgFile}
	if out, _, err := runCLI(t, welcome...); err != nil {
		t.Fatalf("welcome: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, welcome...)
	if err == nil || !strings.Contains(out, "code 41051") || !strings.Contains(out, "class unreachable") {
		t.Errorf("a used welcome code: %v\n%s", err, out)
	}

	out, _, err = runCLI(t, "channels", "test", "sms", "--to", "13800000000", "--template", "SMS_1", "--param", "code=1234", "--config", cfgFile)
	if err != nil || !strings.Contains(out, "sandbox") {
		t.Errorf("sms: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "channels", "test", "pigeon", "--to", "x", "--config", cfgFile); err == nil || !strings.Contains(err.Error(), "unknown channel") {
		t.Errorf("unknown channel: %v", err)
	}
	if _, _, err := runCLI(t, "channels", "test", "wecom.text", "--config", cfgFile); err == nil || !strings.Contains(err.Error(), "--to") {
		t.Errorf("no --to: %v", err)
	}
	if out, _, err := runCLI(t, "channels", "test", "--help"); err != nil || !strings.Contains(out, "-extra") {
		t.Errorf("help: %v\n%s", err, out)
	}
}
