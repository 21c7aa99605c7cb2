package journey

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/model"
)

// WaitFor pauses until an event matches or the timeout passes; the step's
// on_timeout names where a timed-out member goes (none: the enrollment ends
// with reason timeout).
type WaitFor struct {
	Event   string   `yaml:"event"`
	Where   string   `yaml:"where"`
	Timeout Duration `yaml:"timeout"`
	// Match names props the awaited event must carry with the same values
	// as the event that entered the member (the enrollment's trigger
	// event): an order for this cart, not any order.
	Match PropNames `yaml:"match"`
	// Within is a grace for late events: one arriving up to Within after
	// the timeout still counts if its at is not after the timeout. The
	// timeout branch is then taken at Timeout + Within.
	Within Duration `yaml:"within"`

	where *vm.Program
}

// PropNames is one event prop name or a list of them (YAML: cart_id or
// [cart_id, store]).
type PropNames []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (p *PropNames) UnmarshalYAML(n *yaml.Node) error {
	bad := &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: match: want a prop name or a list of prop names (match: cart_id, match: [cart_id, store])", n.Line)}}
	switch n.Kind {
	case yaml.ScalarNode:
		*p = PropNames{n.Value}
	case yaml.SequenceNode:
		out := make(PropNames, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return bad
			}
			out = append(out, c.Value)
		}
		*p = out
	default:
		return bad
	}
	return nil
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
	w.checkMatch(valueOf(n, "match"), ck)
	return w
}

// checkMatch checks the match prop names: each once, a prop (not type or
// at) that both the awaited event and the trigger event may carry.
func (w *WaitFor) checkMatch(n *yaml.Node, ck *Check) {
	if n == nil {
		return
	}
	if n.Kind == yaml.SequenceNode && len(w.Match) == 0 {
		ck.Problemf(n, "wait_for.match: empty list (name the props to compare, or leave match out)")
	}
	if len(w.Match) > 0 && ck.TriggerEvent() == "" && !ck.opts.stored {
		ck.Problemf(n, "wait_for.match compares with the event that entered the member: the journey needs trigger: { event: … }")
	}
	for i, p := range w.Match {
		switch {
		case strings.TrimSpace(p) == "":
			ck.Problemf(n, "wait_for.match: empty prop name")
			continue
		case p == "type" || p == "at":
			ck.Problemf(n, "wait_for.match: %q is not a prop (match compares props such as cart_id)", p)
			continue
		case strings.HasPrefix(p, "event."):
			ck.Problemf(n, "wait_for.match: %q: name the prop alone (%s)", p, strings.TrimPrefix(p, "event."))
			continue
		case slices.Contains(w.Match[:i], p):
			ck.Problemf(n, "wait_for.match: %q twice", p)
			continue
		}
		if msg := ck.checkName([]string{"event", p}, w.Event); msg != "" {
			ck.Problemf(n, "wait_for.match: awaited %s", msg)
		}
		if trig := ck.TriggerEvent(); trig != "" {
			if msg := ck.checkName([]string{"event", p}, trig); msg != "" {
				ck.Problemf(n, "wait_for.match: trigger %s", msg)
			}
		}
	}
}

// Waits implements StepBody: the visit waits until the timeout, and the
// grace for late events after it.
func (w *WaitFor) Waits() (time.Duration, bool) {
	return time.Duration(w.Timeout) + time.Duration(w.Within), true
}

// Refs implements StepBody.
func (*WaitFor) Refs() []Ref { return nil }

// Run implements StepBody: running the visit means the timeout (and the
// grace after it) passed; a matching event resumes it through resumes
// instead.
func (*WaitFor) Run(r *Run) (Result, error) {
	res := Result{Outcome: "timeout", Next: r.Step.OnTimeout}
	if res.Next == "" {
		res.EndReason = ReasonTimeout
	}
	return res, nil
}

// resumes reports whether ev (vars: it and the member) ends the wait of
// enr: its type, where, and the match props equal to those of the event
// that entered the member.
func (w *WaitFor) resumes(e *Engine, ev *model.Event, vars env, enr *model.Enrollment) bool {
	if w.Event != ev.Type || !e.eval(w.where, vars) {
		return false
	}
	for _, p := range w.Match {
		if !sameProp(enr.Event[p], ev.Props[p]) {
			return false
		}
	}
	return true
}

// inTime reports whether ev, routed at now, counts for the waiting visit
// v. Without within every event routed while v waits does. With it, v
// waits until the timeout plus within: an event that arrived by the
// timeout counts, and one arriving later only if its at is not after the
// timeout.
func (w *WaitFor) inTime(ev *model.Event, v *model.StepVisit, now time.Time) bool {
	if w.Within <= 0 {
		return true
	}
	timeout := v.DueAt.Add(-time.Duration(w.Within))
	arrived := ev.ReceivedAt
	if arrived.IsZero() {
		arrived = now
	}
	return !arrived.After(timeout) || !ev.At.After(timeout)
}

// sameProp reports whether two prop values are the same id: compared as
// text, so 42 and "42" are; a missing or empty value never matches.
func sameProp(a, b any) bool {
	x, ok := propText(a)
	if !ok {
		return false
	}
	y, ok := propText(b)
	return ok && x == y
}

// propText is a prop value as text ("" and false for nil and "").
func propText(v any) (string, bool) {
	var s string
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		s = x
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		s = strconv.FormatFloat(float64(x), 'f', -1, 32)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	return s, s != ""
}
