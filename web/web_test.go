package web

import (
	"bytes"
	"html/template"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Every message file has its pair in the other language with the same
// ids: a text missing in English (or only in English) is a page that
// mixes languages.
func TestMessageFilesMatch(t *testing.T) {
	read := func(f string) map[string]string {
		b, err := os.ReadFile("locales/" + f)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		if err := toml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		return m
	}
	han := regexp.MustCompile(`\p{Han}`)
	all := 0
	for _, f := range Locales() {
		part, ok := strings.CutSuffix(f, ".zh-CN.toml")
		if !ok {
			if _, err := os.Stat("locales/" + strings.TrimSuffix(f, ".en.toml") + ".zh-CN.toml"); err != nil {
				t.Errorf("%s has no Chinese pair", f)
			}
			continue
		}
		zh, en := read(f), read(part+".en.toml")
		all += len(zh)
		for id, s := range zh {
			if en[id] == "" {
				t.Errorf("%s: %s has no English text", part, id)
			}
			if s == "" {
				t.Errorf("%s: %s has no Chinese text", part, id)
			}
		}
		for id, s := range en {
			if _, ok := zh[id]; !ok {
				t.Errorf("%s: %s is only in English", part, id)
			}
			if han.MatchString(s) && id != "other_lang" {
				t.Errorf("%s: the English text of %s is Chinese: %q", part, id, s)
			}
		}
	}
	c, err := NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.IDs()) != all {
		t.Errorf("the catalog has %d ids, the files %d", len(c.IDs()), all)
	}
}

func TestLang(t *testing.T) {
	c, err := NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ query, cookie, accept, want string }{
		{"", "", "", Chinese},
		{"en", "", "", English},
		{"", "en", "zh-CN", English},
		{"zh-CN", "en", "en", Chinese},
		{"fr", "", "", Chinese},
		{"", "", "en-US,en;q=0.9", English},
		{"", "", "zh-TW,zh;q=0.9", Chinese},
		{"", "", "fr-FR", Chinese},
		{"", "", "de-DE,en;q=0.5", English},
		{"", "", "zh-CN,zh;q=0.9,en;q=0.8", Chinese},
	} {
		if got := c.Lang(tc.query, tc.cookie, tc.accept); got != tc.want {
			t.Errorf("Lang(%q, %q, %q) = %s, want %s", tc.query, tc.cookie, tc.accept, got, tc.want)
		}
	}
	if got := c.T(Chinese, "too_many", map[string]any{"Minutes": 3}); got != "尝试次数过多，请 3 分钟后再试" {
		t.Errorf("too_many = %q", got)
	}
	if got := c.T(English, "too_many", map[string]any{"Minutes": 3}); got != "Too many attempts; try again in 3 min" {
		t.Errorf("too_many in English = %q", got)
	}
}

// The login page renders in both languages from the embedded files.
func TestTemplates(t *testing.T) {
	c, err := NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := Templates(template.FuncMap{"when": func(time.Time) string { return "" }, "msgid": func(a, b string) string { return a + b },
		"roles": func() []string { return nil }, "navItems": func() []struct{ ID, Path string } { return nil },
		"auditActions": func() []string { return nil }})
	for lang, want := range map[string]string{Chinese: "登录", English: "Log in"} {
		var b bytes.Buffer
		if err := tmpl.ExecuteTemplate(&b, "login.html", map[string]any{"Lang": lang, "T": c.Texts(lang)}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s login page lacks %q", lang, want)
		}
	}
}
