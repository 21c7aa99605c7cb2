package journey

import (
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// WaitFor pauses until an event matches or the timeout passes; the step's
// on_timeout names where a timed-out member goes (none: the enrollment ends
// with reason timeout).
type WaitFor struct {
	Event   string   `yaml:"event"`
	Where   string   `yaml:"where"`
	Timeout Duration `yaml:"timeout"`

	where *vm.Program
}

type waitForKind struct{}

func (waitForKind) Name() string { return KindWaitFor }

func (waitForKind) Compile(n *yaml.Node, ck *Check) StepBody {
	w := &WaitFor{}
	decoded := ck.Decode(n, w)
	if w.Event == "" {
		ck.Problemf(n, "wait_for needs event")
	} else {
		ck.Event("wait_for.event", valueOf(n, "event"), w.Event)
	}
	if w.Timeout <= 0 && (decoded || valueOf(n, "timeout") == nil) {
		ck.Problemf(n, "wait_for needs a positive timeout")
	}
	w.where = ck.Expr("wait_for.where", valueOf(n, "where"), w.Where, w.Event)
	return w
}

// Waits implements StepBody: the visit waits until the timeout.
func (w *WaitFor) Waits() (time.Duration, bool) { return time.Duration(w.Timeout), true }

// Refs implements StepBody.
func (*WaitFor) Refs() []Ref { return nil }

// Run implements StepBody: running the visit means the timeout passed (a
// matching event resumes it through resumes instead).
func (*WaitFor) Run(r *Run) (Result, error) {
	res := Result{Outcome: "timeout", Next: r.Step.OnTimeout}
	if res.Next == "" {
		res.EndReason = ReasonTimeout
	}
	return res, nil
}

// resumes reports whether an event of this type with these vars ends the wait.
func (w *WaitFor) resumes(e *Engine, eventType string, vars env) bool {
	return w.Event == eventType && e.eval(w.where, vars)
}
