package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/model"
)

// TestUsersCommands manages console users from the command line as an
// operator of the server would: add with roles, list, change a role,
// remove; the last admin stays; every change is in the audit log.
func TestUsersCommands(t *testing.T) {
	parallel(t)
	path := filepath.Join(t.TempDir(), "u.db")
	cfg := writeConfig(t, "sqlite:"+path, "")
	steps := []struct {
		stdin   string
		args    []string
		wantOut string
		wantErr string
	}{
		{"boss-password\n", []string{"add", "boss", "--role", "admin", "--password-stdin"}, "added user boss with role admin", ""},
		{"alice-password\n", []string{"add", "alice", "--role", "operator", "--password-stdin"}, "added user alice with role operator", ""},
		{"vic-password\n", []string{"add", "vic", "--password-stdin"}, "added user vic with role viewer", ""},
		{"alice-password\n", []string{"add", "alice", "--password-stdin"}, "", "exists"},
		{"x-password\n", []string{"add", "x", "--role", "root", "--password-stdin"}, "", "admin, operator or viewer"},
		{"short\n", []string{"add", "y", "--password-stdin"}, "", "at least 8"},
		{"", []string{"remove", "boss"}, "", "last admin"},
		{"", []string{"role", "boss", "viewer"}, "", "last admin"},
		{"", []string{"role", "nobody", "viewer"}, "", "no such user"},
		{"", []string{"role", "alice", "admin"}, "alice is now admin (was operator)", ""},
		{"", []string{"remove", "boss"}, "removed user boss", ""},
		{"carol-password\n", []string{"admin", "passwd", "carol", "--password-stdin"}, "created admin user carol", ""},
	}
	for _, s := range steps {
		args := append([]string{"users"}, s.args...)
		if s.args[0] == "admin" {
			args = s.args
		}
		args = append(args, "--config", cfg)
		out, _, err := cli(t, s.stdin, args...)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%q: err %v, want %q", s.args, err, s.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out, s.wantOut) {
			t.Fatalf("%q: out %q, err %v; want %q", s.args, out, err, s.wantOut)
		}
	}
	list, _, err := cli(t, "", "users", "list", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice": "admin", "vic": "viewer", "carol": "admin"}
	for name, role := range want {
		var row []string
		for _, l := range strings.Split(list, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[0] == name {
				row = f
			}
		}
		if row == nil || row[1] != role || row[2] != "enabled" {
			t.Errorf("list row of %s = %q, want role %s, enabled:\n%s", name, row, role, list)
		}
	}
	if strings.Contains(list, "boss") {
		t.Errorf("boss is still listed:\n%s", list)
	}
	db, err := model.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s, _ := db.DB(); s.Close() }()
	es, err := model.AuditLog(t.Context(), db, model.AuditQuery{Action: "user."})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		if e.Via != model.ViaCLI {
			t.Errorf("entry %+v not via cli", e)
		}
		got = append(got, e.Action+" "+e.Object)
	}
	wantLog := "user.add carol,user.remove boss,user.role alice,user.add vic,user.add alice,user.add boss"
	if strings.Join(got, ",") != wantLog {
		t.Errorf("audit log (newest first) = %s, want %s", strings.Join(got, ","), wantLog)
	}
}
