package journey

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Wait pauses the member for a duration.
type Wait struct {
	Duration Duration
}

type waitKind struct{}

func (waitKind) Name() string { return KindWait }

func (waitKind) Compile(n *yaml.Node, ck *Check) StepBody {
	w := &Wait{}
	if ck.Decode(n, &w.Duration) && w.Duration <= 0 {
		ck.Problemf(n, "wait must be positive")
	}
	return w
}

// Waits implements StepBody: the visit waits out the duration.
func (w *Wait) Waits() (time.Duration, bool) { return time.Duration(w.Duration), true }

// Refs implements StepBody.
func (*Wait) Refs() []Ref { return nil }

// Run implements StepBody.
func (*Wait) Run(r *Run) (Result, error) {
	return Result{Outcome: "waited", Next: r.Step.Next}, nil
}
