package journey

import (
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/model"
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
	for _, f := range []struct {
		field string
		tags  []string
	}{{"add_tags", u.AddTags}, {"remove_tags", u.RemoveTags}} {
		if slices.Contains(f.tags, model.TesterTag) {
			// A journey must not make its members testers: a test run
			// really sends to them.
			ck.Problemf(valueOf(n, f.field), "%s: the tag %q is reserved: testers are marked through the admin API (POST /api/v1/members/{id}/tester)", f.field, model.TesterTag)
		}
	}
	return u
}

// Waits implements StepBody.
func (*Update) Waits() (time.Duration, bool) { return 0, false }

// Refs implements StepBody.
func (*Update) Refs() []Ref { return nil }

// Run implements StepBody: tags and attributes change in one transaction.
func (u *Update) Run(r *Run) (Result, error) {
	ids, err := r.e.applyUpdate(r.e.cfg.DB.WithContext(r.Ctx), r.Member, u, r.Visit.ID, r.Now)
	if err != nil {
		return Result{}, err
	}
	if len(ids) > 0 && r.e.cfg.Queue != nil {
		// Should this fail, the sweeper routes them.
		if _, err := r.e.cfg.Queue.EnqueueContext(r.Ctx, NewRouteEventsTask(ids, QueueMarketing)); err != nil {
			r.e.log.Warn("enqueueing the attribute changes of an update step failed; the sweeper routes them", "events", len(ids), "err", err)
		}
	}
	return Result{Outcome: "updated", Next: r.Step.Next}, nil
}
