package journey

// knownEventTypes are the documented event types (docs/events.md): the only
// values the type label of wejourney_events_total and
// wejourney_events_routed_total takes besides "other", so that callers
// cannot create a metric series per distinct type they send.
var knownEventTypes = map[string]bool{
	// Official Account callbacks.
	"wechat.subscribe":     true,
	"wechat.unsubscribe":   true,
	"wechat.scan":          true,
	"wechat.menu_click":    true,
	"wechat.menu_view":     true,
	"wechat.message":       true,
	"wechat.location":      true,
	"wechat.template_sent": true,
	// WeCom.
	"wecom.contact_added":   true,
	"wecom.contact_edited":  true,
	"wecom.contact_removed": true,
	"wecom.group_joined":    true,
	"wecom.group_left":      true,
	"wecom.group_changed":   true,
	"wecom.message":         true,
	// Mini-program.
	"miniprogram.opened": true,
	"miniprogram.closed": true,
	// Brand events documented as examples.
	"form.submitted": true,
	"order.paid":     true,
	"cart.abandoned": true,
	"member.updated": true,
	"sms.received":   true,
	// Email and SMS tracking.
	"email.opened":       true,
	"email.clicked":      true,
	"email.unsubscribed": true,
	"sms.unsubscribed":   true,
	// Engine events.
	"member.attribute_changed": true,
}

// EventLabel is the metric label for an event type: the type itself when it
// is one of the known types, "other" otherwise. It keeps label sets bounded
// whatever types the brand posts or WeChat invents.
func EventLabel(eventType string) string {
	if knownEventTypes[eventType] {
		return eventType
	}
	return "other"
}
