package journey

import (
	"fmt"
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// BranchArm is one arm of a branch: the first whose When holds (or has no When) wins.
type BranchArm struct {
	When string `yaml:"when"`
	Next string `yaml:"next"`
}

// Branch sends the member down the first arm whose condition holds.
type Branch struct {
	Arms []BranchArm

	whens []*vm.Program
	lines []int
}

type branchKind struct{}

func (branchKind) Name() string { return KindBranch }

func (branchKind) Compile(n *yaml.Node, ck *Check) StepBody {
	b := &Branch{}
	if n.Kind != yaml.SequenceNode {
		ck.Decode(n, &b.Arms)
		return b
	}
	if len(n.Content) == 0 {
		ck.Problemf(n, "branch needs arms")
	}
	for j, an := range n.Content {
		var arm BranchArm
		ck.Decode(an, &arm)
		b.Arms = append(b.Arms, arm)
		b.lines = append(b.lines, an.Line)
		var p *vm.Program
		if arm.When != "" {
			// In a step, event is the event that entered the member.
			p = ck.Expr(fmt.Sprintf("branch[%d].when", j), valueOf(an, "when"), arm.When, ck.TriggerEvent())
		} else if j != len(n.Content)-1 {
			ck.Problemf(an, "branch[%d]: only the last arm may omit when", j)
		}
		b.whens = append(b.whens, p)
	}
	return b
}

// Waits implements StepBody.
func (*Branch) Waits() (time.Duration, bool) { return 0, false }

// Refs implements StepBody.
func (b *Branch) Refs() []Ref {
	var out []Ref
	for i, a := range b.Arms {
		out = append(out, Ref{Field: "branch next", ID: a.Next, Line: b.lines[i]})
	}
	return out
}

// Run implements StepBody.
func (b *Branch) Run(r *Run) (Result, error) {
	for i, arm := range b.Arms {
		if r.Eval(b.whens[i]) {
			return Result{Outcome: fmt.Sprintf("branch:%d", i), Next: arm.Next}, nil
		}
	}
	return Result{Outcome: "branch:none"}, nil
}
