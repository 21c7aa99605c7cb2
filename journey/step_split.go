package journey

import (
	"fmt"
	"hash/fnv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/model"
)

// SplitArm is one arm of an A/B split.
type SplitArm struct {
	Weight int    `yaml:"weight"`
	Next   string `yaml:"next"`
}

// Split sends members down weighted arms, deterministically per enrollment.
type Split struct {
	Arms  []SplitArm
	lines []int
}

type splitKind struct{}

func (splitKind) Name() string { return KindSplit }

func (splitKind) Compile(n *yaml.Node, ck *Check) StepBody {
	s := &Split{}
	if n.Kind != yaml.SequenceNode {
		ck.Decode(n, &s.Arms)
		return s
	}
	total := 0
	for j, an := range n.Content {
		var arm SplitArm
		ck.Decode(an, &arm)
		if arm.Weight <= 0 {
			ck.Problemf(an, "split[%d]: weight must be positive", j)
		}
		total += max(arm.Weight, 0)
		s.Arms = append(s.Arms, arm)
		s.lines = append(s.lines, an.Line)
	}
	if total == 0 {
		ck.Problemf(n, "split needs arms")
	}
	return s
}

// Waits implements StepBody.
func (*Split) Waits() (time.Duration, bool) { return 0, false }

// Refs implements StepBody.
func (s *Split) Refs() []Ref {
	var out []Ref
	for i, a := range s.Arms {
		out = append(out, Ref{Field: "split next", ID: a.Next, Line: s.lines[i]})
	}
	return out
}

// Run implements StepBody. The visit records the arm taken by the step it
// leads to (ArmOutcome), which the statistics count per arm.
func (s *Split) Run(r *Run) (Result, error) {
	i := pickSplit(s.Arms, r.Enrollment.ID, r.Step.ID)
	return Result{Outcome: ArmOutcome(s.Arms[i].Next), Next: s.Arms[i].Next}, nil
}

// ArmOutcome is the outcome a split's visit records when it sends the
// member down the arm leading to step next: "arm:" and the step id, fitted
// to leave room in the outcome column for the prefix "goal/" it gets once
// the enrollment reaches the goal (GoalArmOutcome); only a step id longer
// than 55 characters is fitted. Visits recorded before arms were recorded
// by step read "split:" and the arm's index.
func ArmOutcome(next string) string {
	return model.FitKey("arm:"+next, maxOutcome-len(goalArm))
}

// GoalArmOutcome is the outcome of a split's visit down the arm leading
// to next once its enrollment reached the journey's goal.
func GoalArmOutcome(next string) string { return goalArm + ArmOutcome(next) }

// maxOutcome is the size of StepVisit.Outcome.
const maxOutcome = 64

// pickSplit chooses an arm by weight, deterministically per enrollment, so a
// retried split sends the member down the same arm.
func pickSplit(arms []SplitArm, enrollmentID int64, stepID string) int {
	total := 0
	for _, a := range arms {
		total += a.Weight
	}
	h := fnv.New32a()
	fmt.Fprintf(h, "%d/%s", enrollmentID, stepID)
	n := int(h.Sum32() % uint32(total))
	for i, a := range arms {
		if n < a.Weight {
			return i
		}
		n -= a.Weight
	}
	return len(arms) - 1
}
