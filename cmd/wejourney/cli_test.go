package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the wejourney command line in-process, as a user would type
// args, and returns what it wrote and its error.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestCLIHelp: every command, asked for help, prints its usage and its
// flags to standard output and succeeds, touching nothing.
func TestCLIHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string // in stdout
	}{
		{[]string{"help"}, []string{"usage:", "journeys validate FILE|DIR", "apikeys revoke ID", "--help"}},
		{[]string{"--help"}, []string{"usage:", "wejourney migrate"}},
		{[]string{"-h"}, []string{"usage:", "wejourney bench"}},
		{[]string{"serve", "--help"}, []string{"usage: wejourney [serve]", "-role", "-config"}},
		{[]string{"--role=web", "-h"}, []string{"-role"}},
		{[]string{"migrate", "-h"}, []string{"usage: wejourney migrate", "-config"}},
		{[]string{"journeys", "--help"}, []string{"usage: wejourney journeys validate", "-config"}},
		{[]string{"journeys", "validate", "--help"}, []string{"usage: wejourney journeys validate", "FILE|DIR", "*.yaml and *.yml", "-config"}},
		{[]string{"journeys", "validate", "-h", "some.yaml"}, []string{"-config"}},
		{[]string{"journeys", "pause", "--help"}, []string{"usage: wejourney journeys pause KEY", "held until resume", "-config"}},
		{[]string{"journeys", "publish", "-h"}, []string{"usage: wejourney journeys publish FILE", "stay on the version they entered"}},
		{[]string{"simulate", "--help"}, []string{"usage: wejourney simulate KIND", "subscribe", "-scene", "-openid", "-target", "-appid", "WEJOURNEY_WECHAT_TOKEN"}},
		{[]string{"simulate", "subscribe", "-h"}, []string{"-scene"}},
		{[]string{"bench", "--help"}, []string{"usage: wejourney bench", "-rate", "-burst", "-target", "-fake-addr"}},
		{[]string{"admin", "--help"}, []string{"usage: wejourney admin passwd", "-password-stdin"}},
		{[]string{"admin", "passwd", "--help"}, []string{"-password-stdin", "-config"}},
		{[]string{"apikeys", "-h"}, []string{"usage: wejourney apikeys", "-name", "-scope"}},
		{[]string{"apikeys", "create", "--help"}, []string{"-name", "-scope"}},
		{[]string{"apikeys", "list", "-h"}, []string{"list: lists the API keys"}},
		{[]string{"apikeys", "revoke", "--help"}, []string{"revoke ID"}},
		{[]string{"help", "bench"}, []string{"usage: wejourney bench", "-rate"}},
		{[]string{"help", "journeys", "validate"}, []string{"FILE|DIR"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runCLI(t, tc.args...)
			if err != nil {
				t.Fatalf("wejourney %s: %v (stderr %q); want success", strings.Join(tc.args, " "), err, stderr)
			}
			for _, s := range tc.want {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, stdout)
				}
			}
			if stderr != "" {
				t.Errorf("help wrote to stderr: %q", stderr)
			}
		})
	}
}

// TestCLIVersion: --version and version print the binary's version.
func TestCLIVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"version"}, {"-version"}} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			stdout, _, err := runCLI(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(stdout, "wejourney ") || strings.Count(stdout, "\n") != 1 || len(stdout) < len("wejourney x\n") {
				t.Errorf("%s printed %q, want one line: wejourney VERSION ...", args[0], stdout)
			}
		})
	}
}

// TestCLIErrors: a command the binary does not have, or a value it cannot
// use, fails naming what the user typed or sets.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args       []string
		wantErr    string
		wantStderr string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`, "usage:"},
		{[]string{"serve", "--role=boss"}, "--role", ""},
		{[]string{"serve", "--nope"}, "-nope", "-role"},
		{[]string{"journeys"}, "usage: wejourney journeys validate", ""},
		{[]string{"journeys", "validate"}, "usage: wejourney journeys validate", ""},
		{[]string{"journeys", "validate", filepath.Join("testdata", "does-not-exist")}, "does-not-exist", ""},
		{[]string{"simulate"}, "KIND is one of", ""},
		{[]string{"simulate", "fax"}, `unknown KIND "fax"`, ""},
		{[]string{"simulate", "subscribe", "--target", "ftp://example.com"}, "--target", ""},
		{[]string{"bench", "--rate=0"}, "--rate", ""},
		{[]string{"bench", "--concurrency", "0"}, "--concurrency", ""},
		{[]string{"bench", "--role=worker"}, "--role", ""},
		{[]string{"apikeys", "rotate"}, `unknown apikeys command "rotate"`, ""},
		{[]string{"admin", "reset"}, "usage: wejourney admin passwd", ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			_, stderr, err := runCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one naming %q", err, tc.wantErr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantStderr, stderr)
			}
		})
	}
}

// writeFiles writes name → content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func journeyYAML(key, channel string) string {
	return "key: " + key + "\nname: " + key + "\ntrigger: { event: wechat.subscribe }\nsteps:\n" +
		"  - id: hello\n    send: { channel: " + channel + ", text: \"hi\", template: T1 }\n"
}

// TestCLIValidate: journeys validate takes files and directories (a
// directory: its *.yaml and *.yml, sorted, as the server reads it) and
// prints the same thing every time.
func TestCLIValidate(t *testing.T) {
	t.Parallel()
	good := t.TempDir()
	writeFiles(t, good, map[string]string{
		"b.yaml":    journeyYAML("second", "wechat.text"),
		"a.yml":     journeyYAML("first", "wechat.text"),
		"c.yaml":    journeyYAML("third", "wechat.text"),
		"notes.txt": "not a journey",
	})
	bad := t.TempDir()
	writeFiles(t, bad, map[string]string{
		"ok.yaml":     journeyYAML("ok", "wechat.text"),
		"broken.yaml": "key: broken\nname: x\ntrigger: { event: wechat.subscribe }\nsteps:\n  - id: s1\n    wait: soon\n",
		"twin.yaml":   journeyYAML("ok", "wechat.text"),
	})
	single := filepath.Join(t.TempDir(), "one.yaml")
	writeFiles(t, filepath.Dir(single), map[string]string{"one.yaml": journeyYAML("one", "wechat.text")})

	for _, tc := range []struct {
		name    string
		args    []string
		wantOut []string // lines, in order
		wantErr []string // substrings of the error; none: success
	}{
		{"a directory", []string{good}, []string{
			filepath.Join(good, "a.yml") + `: ok (journey "first", 1 steps, trigger wechat.subscribe)`,
			filepath.Join(good, "b.yaml") + `: ok (journey "second", 1 steps, trigger wechat.subscribe)`,
			filepath.Join(good, "c.yaml") + `: ok (journey "third", 1 steps, trigger wechat.subscribe)`,
		}, nil},
		{"a file and a directory", []string{single, good}, []string{
			single + `: ok (journey "one", 1 steps, trigger wechat.subscribe)`,
			filepath.Join(good, "a.yml") + `: ok (journey "first", 1 steps, trigger wechat.subscribe)`,
			filepath.Join(good, "b.yaml") + `: ok (journey "second", 1 steps, trigger wechat.subscribe)`,
			filepath.Join(good, "c.yaml") + `: ok (journey "third", 1 steps, trigger wechat.subscribe)`,
		}, nil},
		{"flags after the paths", []string{good, "--config", filepath.Join(t.TempDir(), "none.yaml")}, nil, []string{"none.yaml"}},
		{"invalid files are named with their step; the key used twice too", []string{bad},
			[]string{filepath.Join(bad, "ok.yaml") + `: ok (journey "ok", 1 steps, trigger wechat.subscribe)`},
			[]string{filepath.Join(bad, "broken.yaml"), "s1", filepath.Join(bad, "twin.yaml") + `: key "ok" is also used by ` + filepath.Join(bad, "ok.yaml")}},
		{"a directory without journeys", []string{t.TempDir()}, nil, []string{"no *.yaml or *.yml files"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"journeys", "validate"}, tc.args...)
			first, _, err := runCLI(t, args...)
			switch {
			case len(tc.wantErr) == 0 && err != nil:
				t.Fatalf("validate: %v", err)
			case len(tc.wantErr) > 0 && err == nil:
				t.Fatalf("validate succeeded, want an error naming %q", tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not name %q:\n%v", s, err)
				}
			}
			if tc.wantOut != nil {
				if want := strings.Join(tc.wantOut, "\n") + "\n"; first != want {
					t.Errorf("stdout:\n%s\nwant:\n%s", first, want)
				}
			}
			for i := range 29 { // the same output every run
				again, _, againErr := runCLI(t, args...)
				if again != first || (err == nil) != (againErr == nil) || (err != nil && againErr.Error() != err.Error()) {
					t.Fatalf("run %d differs:\n%s%v\nfirst:\n%s%v", i+2, again, againErr, first, err)
				}
			}
		})
	}
}

// TestCLIValidateChannels: a journey naming a channel a send step cannot
// use fails validation, naming the step; the channels every configuration
// serves pass.
func TestCLIValidateChannels(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "wejourney.yaml")
	writeFiles(t, dir, map[string]string{
		"wejourney.yaml": "sms_provider: log\n",
		"webhook.yaml":   journeyYAML("by-webhook", "webhook"),
		"wecom.yaml":     journeyYAML("by-wecom", "wecom.text"),
		"wechat.yaml":    journeyYAML("by-wechat", "wechat.text"),
	})
	for _, tc := range []struct {
		file    string
		wantErr string
	}{
		{"webhook.yaml", "write a webhook step"}, // a channel, but not of send steps
		{"wecom.yaml", ""},                       // served always: WeCom apps may be added in the admin
		{"wechat.yaml", ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			_, _, err := runCLI(t, "journeys", "validate", "--config", cfg, filepath.Join(dir, tc.file))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "hello") {
				t.Errorf("error = %v, want one saying the channel of step hello %s", err, tc.wantErr)
			}
		})
	}
}
