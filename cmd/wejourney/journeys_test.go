package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

// TestCLIJourneyLifecycle: journeys publish FILE, pause, resume and archive
// KEY act on the database the configuration names, as the admin API does:
// the member inside is held by the pause, ended by the archive, and an
// archived journey cannot be resumed.
func TestCLIJourneyLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbFile := filepath.Join(dir, "w.db")
	cfgFile := writeConfig(t, "sqlite:"+dbFile, "")
	writeFiles(t, dir, map[string]string{
		"welcome.yaml": journeyYAML("welcome", "wechat.text"),
		"loop.yaml": "key: loop\ntrigger: { event: wechat.subscribe }\nsteps:\n" +
			"  - { id: a, update: { add_tags: [x] }, next: b }\n  - { id: b, branch: [ { next: a } ] }\n",
	})
	welcome := filepath.Join(dir, "welcome.yaml")
	cli := func(args ...string) (string, error) {
		t.Helper()
		out, _, err := runCLI(t, append(append([]string{"journeys"}, args...), "--config", cfgFile)...)
		return out, err
	}
	if out, err := cli("publish", welcome); err != nil || out != `journey "welcome": version 1 published, active (0 members inside)`+"\n" {
		t.Fatalf("publish: %q, %v", out, err)
	}
	// A member inside the journey.
	db, err := model.Open("sqlite", dbFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	var j model.Journey
	if err := db.Where(&model.Journey{Key: "welcome"}).First(&j).Error; err != nil {
		t.Fatal(err)
	}
	activeKey := fmt.Sprintf("%d:1", j.ID)
	enr := model.Enrollment{JourneyID: j.ID, VersionID: j.CurrentVersionID, MemberID: 1, Status: model.EnrollmentActive,
		ActiveKey: &activeKey, StepID: "hello", TriggerEventID: 1, EnteredAt: time.Now().UTC()}
	if err := db.Create(&enr).Error; err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args    []string
		wantOut string // the line printed
		wantErr string // in the error; "": success
		status  string // the journey's status after
	}{
		{[]string{"publish", welcome}, `journey "welcome": unchanged: version 1 has this source, active (1 members inside)`, "", "active"},
		{[]string{"pause", "welcome"}, `journey "welcome": paused (version 1, 1 members inside; their due steps are held until resume)`, "", "paused"},
		{[]string{"resume", "welcome"}, `journey "welcome": active (version 1, 1 members inside)`, "", "active"},
		{[]string{"archive", "welcome"}, `journey "welcome": archived (version 1; 1 members left it)`, "", "archived"},
		{[]string{"resume", "welcome"}, "", `journey "welcome" is archived and cannot be resumed`, "archived"},
		{[]string{"pause", "nope"}, "", `no journey with key "nope"`, "archived"},
		{[]string{"pause"}, "", "usage: wejourney journeys pause KEY", "archived"},
		{[]string{"publish", filepath.Join(dir, "loop.yaml")}, "", `loop "a" → "b" → "a" has no wait or wait_for step`, "archived"},
	} {
		out, err := cli(tc.args...)
		name := strings.Join(tc.args, " ")
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v; want one naming %q", name, err, tc.wantErr)
		case tc.wantOut != "" && out != tc.wantOut+"\n":
			t.Errorf("%s printed %q; want %q", name, out, tc.wantOut)
		}
		var got model.Journey
		if err := db.Where(&model.Journey{Key: "welcome"}).First(&got).Error; err != nil || got.Status != tc.status {
			t.Errorf("after %s the journey is %q (%v); want %s", name, got.Status, err, tc.status)
		}
	}
	if err := db.First(&enr, enr.ID).Error; err != nil || enr.Status != model.EnrollmentExited || enr.EndReason != "archived" {
		t.Errorf("the member inside after the archive: %s %q (%v); want exited, archived", enr.Status, enr.EndReason, err)
	}
	var v model.JourneyVersion
	if err := db.First(&v, j.CurrentVersionID).Error; err != nil || v.Origin != "cli:"+welcome {
		t.Errorf("the version's origin: %q (%v); want cli:%s", v.Origin, err, welcome)
	}
	if n := db.Where(&model.Journey{Key: "loop"}).First(&model.Journey{}).RowsAffected; n != 0 {
		t.Errorf("the refused journey was stored")
	}
}
