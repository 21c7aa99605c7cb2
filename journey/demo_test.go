package journey_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

func TestDemoFlagParses(t *testing.T) {
	t.Parallel()
	const base = "key: k\ntrigger: { event: wechat.subscribe }\nsteps: [ { id: s, wait: 1m } ]\n"
	for _, tc := range []struct {
		line     string
		wantDemo bool
		wantErr  string
	}{
		{"", false, ""},
		{"demo: true\n", true, ""},
		{"demo: false\n", false, ""},
		{"demo: maybe\n", false, "demo"},
	} {
		c, err := journey.Parse("j.yaml", []byte(tc.line+base))
		switch {
		case tc.wantErr != "":
			if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q): %v; want an ErrInvalid naming %q", tc.line, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("Parse(%q): %v", tc.line, err)
		case c.Def.Demo != tc.wantDemo:
			t.Errorf("Parse(%q).Def.Demo = %v; want %v", tc.line, c.Def.Demo, tc.wantDemo)
		}
	}
}

// TestShippedJourneysAreDemos: every journey in the repository's journeys/
// is marked demo, so none of them reaches a real account's followers
// unless the operator chose demos.
func TestShippedJourneysAreDemos(t *testing.T) {
	t.Parallel()
	cs, err := journey.LoadDir(filepath.Join("..", "journeys"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) == 0 {
		t.Fatal("no journeys in ../journeys")
	}
	for _, c := range cs {
		if !c.Def.Demo {
			t.Errorf("journeys/ holds %q without demo: true", c.Def.Key)
		}
	}
}

func TestSyncDirRefusesDemos(t *testing.T) {
	t.Parallel()
	const (
		demo = `
key: demo-welcome
demo: true
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 10m, next: invite }
  - { id: invite, send: { channel: wechat.template, template_id: BIND_MEMBER_TEMPLATE_ID } }
`
		// The same journey as published before the demo flag existed.
		oldDemo = `
key: demo-welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 10m, next: invite }
  - { id: invite, send: { channel: wechat.template, template_id: BIND_MEMBER_TEMPLATE_ID } }
`
		real = `
key: brand-welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`
	)
	dir := t.TempDir()
	for name, src := range map[string]string{"demo.yaml": demo, "real.yaml": real} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t)
	// An earlier start (or version) published the demo, and a follower
	// entered it: they wait for the placeholder template.
	h.publish(oldDemo)
	h.subscribe("o1", "")
	statuses := func() map[string]string {
		var js []model.Journey
		if err := h.db.Find(&js).Error; err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, j := range js {
			out[j.Key] = j.Status
		}
		return out
	}

	why := "the default account has real credentials; set WEJOURNEY_DEMO_JOURNEYS=on to keep it"
	published, err := h.e.SyncDir(h.ctx, dir, journey.RefuseDemo(why))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"brand-welcome"}, published); diff != "" {
		t.Errorf("published with demos refused (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"demo-welcome": model.JourneyPaused, "brand-welcome": model.JourneyActive}, statuses()); diff != "" {
		t.Errorf("journey statuses with demos refused (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]enrollment{{"o1", model.EnrollmentExited, "pause", journey.EndReasonDemoPaused}}, h.enrollments()); diff != "" {
		t.Errorf("the follower inside the demo (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]visit{{"pause", model.VisitCancelled, journey.EndReasonDemoPaused}}, h.visits()); diff != "" {
		t.Errorf("the demo's open wait (-want +got):\n%s", diff)
	}
	// A new follower enters only the brand's journey.
	h.subscribe("o2", "")
	h.drain()
	if diff := cmp.Diff([]sent{{Channel: "wechat.text", OpenID: "o2", Text: "hi"}}, h.rec.sent()); diff != "" {
		t.Errorf("sent with demos refused (-want +got):\n%s", diff)
	}

	// The operator chose demos: the demo is published and live again.
	published, err = h.e.SyncDir(h.ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"demo-welcome"}, published); diff != "" {
		t.Errorf("published with demos allowed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"demo-welcome": model.JourneyActive, "brand-welcome": model.JourneyActive}, statuses()); diff != "" {
		t.Errorf("journey statuses with demos allowed (-want +got):\n%s", diff)
	}

	// Refused again: the live version now says demo: true, even with the
	// file gone from the directory.
	if err := os.Remove(filepath.Join(dir, "demo.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.e.SyncDir(h.ctx, dir, journey.RefuseDemo(why)); err != nil {
		t.Fatal(err)
	}
	if got := statuses()["demo-welcome"]; got != model.JourneyPaused {
		t.Errorf("a live demo version with its file gone is %q with demos refused; want paused", got)
	}
}
