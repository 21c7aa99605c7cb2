package events

import "github.com/wejourney/wejourney/model"

// MemberAttributeChanged is emitted by the engine for each member attribute
// a member.updated event changed: props name, old (nil when it was unset)
// and new.
const MemberAttributeChanged = "member.attribute_changed"

// Engine is the source of the events the engine itself emits.
type Engine struct{}

// Name implements Source.
func (Engine) Name() string { return "engine" }

// Namespace implements Source: the engine owns no namespace.
func (Engine) Namespace() string { return "" }

// Events implements Source.
func (Engine) Events() []Spec {
	return []Spec{
		{Type: MemberAttributeChanged, Props: []string{"name", "old", "new"},
			Doc: "a member attribute changed (emitted once per attribute a member.updated event changed)"},
	}
}

// Apply implements Source: the change is already on the member.
func (Engine) Apply(*model.Member, *model.Event) {}
