package events

import "github.com/wejourney/wejourney/model"

// MemberAttributeChanged is emitted by the engine for each member attribute
// a member.updated event changed: props name, old (nil when it was unset)
// and new.
const MemberAttributeChanged = "member.attribute_changed"

// JourneyEnroll is an operator's manual enrollment of a member into the
// journey named by its prop journey (POST /api/v1/journeys/{key}/enroll).
// Only the engine's own source may store one: the same type from the
// events API enters nobody.
const JourneyEnroll = "journey.enroll"

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
		{Type: JourneyEnroll, Props: []string{"journey", "by"},
			Doc: "an operator enrolled the member into the journey through the admin API (the journey's where is not checked; its entry rules are)"},
	}
}

// Apply implements Source: the change is already on the member.
func (Engine) Apply(*model.Member, *model.Event) {}
