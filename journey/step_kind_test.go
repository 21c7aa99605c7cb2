package journey_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// stampKind is a step kind only this test knows: `stamp: { label: gold }`
// records "stamped:<label>" on its visit and goes on to next. It needs a
// label, and a wait of its own when `hold` is set.
type stampKind struct{}

type stamp struct {
	Label string        `yaml:"label"`
	Hold  time.Duration `yaml:"hold"`
}

func (stampKind) Name() string { return "stamp" }

func (stampKind) Compile(n *yaml.Node, ck *journey.Check) journey.StepBody {
	s := &stamp{}
	if ck.Decode(n, s) && s.Label == "" {
		ck.Problemf(n, "stamp needs label")
	}
	return s
}

func (s *stamp) Waits() (time.Duration, bool) { return s.Hold, s.Hold > 0 }
func (s *stamp) Refs() []journey.Ref          { return nil }
func (s *stamp) Run(r *journey.Run) (journey.Result, error) {
	return journey.Result{Outcome: "stamped:" + s.Label, Next: r.Step.Next}, nil
}

const stampJourney = `
key: stamped
trigger: { event: wechat.subscribe }
steps:
  - id: hello
    send: { channel: wechat.text, text: hi }
    next: mark
  - id: mark
    stamp: { label: gold }
`

// A step kind added through Config.StepKinds is validated, runs, and its
// outcome is recorded on the visit; without it the same file is refused.
func TestAddedStepKindRuns(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(c *journey.Config) { c.StepKinds = []journey.StepKind{stampKind{}} })
	c, err := h.e.Parse("stamped.yaml", []byte(stampJourney))
	if err != nil {
		t.Fatalf("engine Parse with the stamp kind: %v", err)
	}
	if got := func() string { s, _ := c.Step("mark"); return s.Kind() }(); got != "stamp" {
		t.Errorf("Kind() of the stamp step = %q; want stamp", got)
	}
	if _, err := h.e.Publish(h.ctx, c, "test"); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	h.subscribe("o1", "")
	want := []visit{{"hello", model.VisitDone, "sent"}, {"mark", model.VisitDone, "stamped:gold"}}
	if diff := cmp.Diff(want, h.visits()); diff != "" {
		t.Errorf("visits mismatch (-want +got):\n%s", diff)
	}

	_, err = journey.Parse("stamped.yaml", []byte(stampJourney))
	if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), `stamped.yaml:9: step "mark": unknown field "stamp"`) {
		t.Errorf("Parse without the stamp kind = %v; want the stamp field refused at line 9", err)
	}
	_, err = journey.Parse("stamped.yaml", []byte(strings.Replace(stampJourney, "label: gold", "hold: 1h", 1)),
		journey.WithStepKinds(stampKind{}))
	if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), `stamped.yaml:9: step "mark": stamp needs label`) {
		t.Errorf("Parse of a stamp without label = %v; want the kind's own message at its line", err)
	}
}

// Publish checks a journey against the engine's senders; a stored version
// is not re-checked: it keeps running and its send fails with no sender.
func TestPublishChecksSenders(t *testing.T) {
	t.Parallel()
	rec := &sendRecorder{}
	h := newHarnessWith(t, func(c *journey.Config) {
		reg := channels.NewRegistry()
		for ch, caps := range wechat.Capabilities() {
			reg.Register(ch, rec.send(), caps)
		}
		c.Senders = reg
	})
	h.rec = rec
	src := `
key: by-sms
trigger: { event: wechat.subscribe }
steps:
  - id: text
    send: { channel: sms, template: SMS_1 }
`
	c, err := journey.Parse("by-sms.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse without channels: %v", err)
	}
	_, err = h.e.Publish(h.ctx, c, "by-sms.yaml")
	if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), `by-sms.yaml:6: step "text": channel sms has no sender (set WEJOURNEY_SMS_PROVIDER=log`) {
		t.Fatalf("Publish of an sms journey without an sms sender = %v; want it refused naming the step and line", err)
	}
	if n := h.count(&model.JourneyVersion{}); n != 0 {
		t.Errorf("%d versions stored after a refused publish; want 0", n)
	}

	// A version stored earlier (when sms had a sender) still runs.
	j := model.Journey{Key: "by-sms", Name: "by-sms", Status: model.JourneyActive, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := h.db.Create(&j).Error; err != nil {
		t.Fatal(err)
	}
	v := model.JourneyVersion{JourneyID: j.ID, Version: 1, Source: src, Hash: "h", Origin: "by-sms.yaml", CreatedAt: time.Now()}
	if err := h.db.Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	if err := h.db.Model(&j).Update("current_version_id", v.ID).Error; err != nil {
		t.Fatal(err)
	}
	h.subscribe("o1", "")
	want := []visit{{"text", model.VisitFailed, "failed"}}
	if diff := cmp.Diff(want, h.visits()); diff != "" {
		t.Errorf("visits of the stored sms version mismatch (-want +got):\n%s", diff)
	}
}
