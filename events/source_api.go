package events

import "github.com/wejourney/wejourney/model"

// API is the events API source (POST /api/v1/events): brand events of any
// type outside the reserved namespaces, and member.updated.
type API struct{}

// Name implements Source.
func (API) Name() string { return "api" }

// Namespace implements Source: brand events own no namespace.
func (API) Namespace() string { return "" }

// Events implements Source.
func (API) Events() []Spec {
	return []Spec{
		{Type: MemberUpdated, Open: true, Doc: "sets member attributes from its props; nickname also sets the member's nickname"},
	}
}

// Apply implements Source: member.updated copies its props into the
// member's attributes; a nickname that fits its column becomes the
// member's nickname.
func (API) Apply(m *model.Member, ev *model.Event) {
	if ev.Type != MemberUpdated {
		return
	}
	if m.Attrs == nil {
		m.Attrs = map[string]any{}
	}
	for k, v := range ev.Props {
		m.Attrs[k] = v
	}
	if nick, ok := ev.Props["nickname"].(string); ok && model.Fits(nick, model.MaxNickname) {
		m.Nickname = nick
	}
}
