package journey

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/model"
)

// tickTrigger is a trigger kind only this test knows, shaped like the
// schedule trigger to come: `trigger: { tick: nightly }` indexes the
// journey under its tick's name.
type tickTrigger struct{}

func (tickTrigger) Name() string { return "tick" }

func (tickTrigger) Compile(n *yaml.Node, ck *Check) []string {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		ck.Problemf(n, "tick needs a name")
		return nil
	}
	return []string{n.Value}
}

// A trigger kind added through Config.TriggerKinds is validated, and its
// journeys are indexed under it, not under event types.
func TestAddedTriggerKindIsIndexed(t *testing.T) {
	t.Parallel()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		t.Cleanup(func() { sqlDB.Close() })
	}
	e := New(Config{DB: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BaseContext: t.Context(),
		TriggerKinds: []TriggerKind{tickTrigger{}}})
	src := "key: nightly\ntrigger: { tick: nightly }\nsteps:\n  - { id: w, wait: 1h }\n"

	_, err = Parse("nightly.yaml", []byte(src))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `nightly.yaml:2: trigger: unknown field "tick"`) {
		t.Errorf("Parse without the tick kind = %v; want tick refused", err)
	}
	_, err = e.Parse("nightly.yaml", []byte(strings.Replace(src, "tick: nightly", "tick: ''", 1)))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `nightly.yaml:2: trigger: tick needs a name`) {
		t.Errorf("engine Parse of an empty tick = %v; want the kind's own message", err)
	}
	_, err = e.Parse("both.yaml", []byte(strings.Replace(src, "tick: nightly", "tick: nightly, event: wechat.subscribe", 1)))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `both.yaml:2: trigger: needs exactly one of event, schedule, segment, tick`) {
		t.Errorf("engine Parse of two trigger kinds = %v; want them refused", err)
	}

	c, err := e.Parse("nightly.yaml", []byte(src))
	if err != nil {
		t.Fatalf("engine Parse: %v", err)
	}
	if _, err := e.Publish(t.Context(), c, "nightly.yaml"); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	keys := func(kind, key string) []string {
		t.Helper()
		live, err := e.triggers(db, kind, key)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, lj := range live {
			out = append(out, lj.c.Def.Key)
		}
		return out
	}
	got := map[string][]string{
		"tick nightly":           keys("tick", "nightly"),
		"tick weekly":            keys("tick", "weekly"),
		"event nightly":          keys(triggerEvent, "nightly"),
		"event wechat.subscribe": keys(triggerEvent, "wechat.subscribe"),
	}
	want := map[string][]string{"tick nightly": {"nightly"}, "tick weekly": nil, "event nightly": nil, "event wechat.subscribe": nil}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trigger index mismatch (-want +got):\n%s", diff)
	}
}
