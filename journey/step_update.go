package journey

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Update changes the member.
type Update struct {
	AddTags    []string       `yaml:"add_tags"`
	RemoveTags []string       `yaml:"remove_tags"`
	Set        map[string]any `yaml:"set"`
}

type updateKind struct{}

func (updateKind) Name() string { return KindUpdate }

func (updateKind) Compile(n *yaml.Node, ck *Check) StepBody {
	u := &Update{}
	ck.Decode(n, u)
	return u
}

// Waits implements StepBody.
func (*Update) Waits() (time.Duration, bool) { return 0, false }

// Refs implements StepBody.
func (*Update) Refs() []Ref { return nil }

// Run implements StepBody: tags and attributes change in one transaction.
func (u *Update) Run(r *Run) (Result, error) {
	if err := r.e.applyUpdate(r.e.cfg.DB.WithContext(r.Ctx), r.Member, u, r.Now); err != nil {
		return Result{}, err
	}
	return Result{Outcome: "updated", Next: r.Step.Next}, nil
}
