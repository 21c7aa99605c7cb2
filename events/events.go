// Package events is the one place that knows event types and where they
// come from. Each source (the Official Account callback, the WeCom
// callback, the mini-program, the events API, the follower import, the
// engine itself) lives in its own file: the event types it emits with their
// props, how it normalizes its input into a model.Event, and what each of
// its events changes on the member. A Registry puts the sources together
// for the engine (member updates) and for journey validation (which types
// and props exist).
//
// Adding a source is one new file with a type implementing Source, plus one
// line in Builtin.
package events

import (
	"slices"
	"strings"

	"github.com/wejourney/wejourney/model"
)

// Event types of the Official Account callback (source_wechat.go).
const (
	WeChatSubscribe    = "wechat.subscribe"
	WeChatUnsubscribe  = "wechat.unsubscribe"
	WeChatScan         = "wechat.scan"
	WeChatMenuClick    = "wechat.menu_click"
	WeChatMenuView     = "wechat.menu_view"
	WeChatMessage      = "wechat.message"
	WeChatLocation     = "wechat.location"
	WeChatTemplateSent = "wechat.template_sent"
	// WeChatSubscribeAuthorized is a subscription-message authorisation of
	// the Official Account (source_wechat.go, source_wechat_subscribe.go).
	WeChatSubscribeAuthorized = "wechat.subscribe_message_authorized"
)

// Event types of the WeCom callback (source_wecom.go).
const (
	WeComContactAdded   = "wecom.contact_added"
	WeComContactEdited  = "wecom.contact_edited"
	WeComContactRemoved = "wecom.contact_removed"
	WeComGroupJoined    = "wecom.group_joined"
	WeComGroupLeft      = "wecom.group_left"
	WeComGroupChanged   = "wecom.group_changed"
	WeComMessage        = "wecom.message"
)

// Event types of the events API (source_api.go).
const (
	// MemberUpdated sets member attributes from its props (and nickname).
	MemberUpdated = "member.updated"
)

// Spec describes one event type a source emits.
type Spec struct {
	// Type is the event type, e.g. "wechat.subscribe".
	Type string
	// Props are the props the source sets on it. Open is true when any
	// prop may occur (brand events, member.updated).
	Props []string
	Open  bool
	// Doc is one line for docs and validation messages.
	Doc string
}

// Source is where events come from.
type Source interface {
	// Name is the source's name, recorded as model.Event.Source.
	Name() string
	// Namespace is the type prefix the source owns ("wechat."): the events
	// API refuses types under it, and validation refuses types under it
	// that Events does not list. "" owns nothing.
	Namespace() string
	// Events lists the event types the source emits.
	Events() []Spec
	// Apply changes the member the way ev says (subscription, scene,
	// attributes): one of the source's events, or a type in its namespace
	// it has no name for. It does not save.
	Apply(m *model.Member, ev *model.Event)
}

// Registry holds the sources of a process. Build it once with NewRegistry;
// it is then read-only and safe for concurrent use.
type Registry struct {
	sources []Source
	specs   map[string]Spec
	owner   map[string]Source // by event type
}

// NewRegistry returns a registry of these sources.
func NewRegistry(sources ...Source) *Registry {
	r := &Registry{sources: sources, specs: map[string]Spec{}, owner: map[string]Source{}}
	for _, s := range sources {
		for _, sp := range s.Events() {
			r.specs[sp.Type] = sp
			r.owner[sp.Type] = s
		}
	}
	return r
}

// Builtin returns the sources wejourney ships.
func Builtin() []Source {
	return []Source{
		OfficialAccount{},
		WeCom{},
		API{},
		MiniProgram{},
		Email{},
		Import{},
		Engine{},
		SMS{},
	}
}

// Default returns a registry of the built-in sources.
func Default() *Registry { return NewRegistry(Builtin()...) }

// Spec returns the spec of an event type some source emits.
func (r *Registry) Spec(eventType string) (Spec, bool) {
	sp, ok := r.specs[eventType]
	return sp, ok
}

// Reserved reports whether eventType lies in a source's namespace, so only
// that source may emit it (and the events API refuses it).
func (r *Registry) Reserved(eventType string) bool {
	t := strings.ToLower(eventType)
	for _, s := range r.sources {
		if ns := s.Namespace(); ns != "" && strings.HasPrefix(t, ns) {
			return true
		}
	}
	return false
}

// Namespaces lists the reserved type prefixes, sorted.
func (r *Registry) Namespaces() []string {
	var out []string
	for _, s := range r.sources {
		if ns := s.Namespace(); ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

// Known reports whether an event of this type can occur: a source emits it,
// or it is a brand event (outside every reserved namespace; anything the
// events API accepts).
func (r *Registry) Known(eventType string) bool {
	_, ok := r.specs[eventType]
	return ok || !r.Reserved(eventType)
}

// Props returns the props an event of this type carries, and whether the
// set is open (any prop may occur: brand events).
func (r *Registry) Props(eventType string) (props []string, open bool) {
	sp, ok := r.specs[eventType]
	if !ok {
		return nil, true
	}
	return sp.Props, sp.Open
}

// Types lists every event type a source emits, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.specs))
	for t := range r.specs {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Apply changes the member the way ev says, through the source that emits
// ev's type or, for a type it has no name for (a new WeChat event becomes
// wechat.<event>), the source whose namespace holds it. Brand events change
// nothing.
func (r *Registry) Apply(m *model.Member, ev *model.Event) {
	if s, ok := r.owner[ev.Type]; ok {
		s.Apply(m, ev)
		return
	}
	for _, s := range r.sources {
		if ns := s.Namespace(); ns != "" && strings.HasPrefix(ev.Type, ns) {
			s.Apply(m, ev)
			return
		}
	}
}
