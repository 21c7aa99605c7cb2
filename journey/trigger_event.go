package journey

import "gopkg.in/yaml.v3"

// eventTrigger enters members when an event of one type occurs:
// trigger: { event: wechat.subscribe, where: … }.
type eventTrigger struct{}

// triggerEvent is the name of the event trigger kind.
const triggerEvent = "event"

func (eventTrigger) Name() string { return triggerEvent }

func (eventTrigger) Compile(n *yaml.Node, ck *Check) []string {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		ck.Problemf(n, "event is required (e.g. wechat.subscribe)")
		return nil
	}
	ck.Event("", n, n.Value)
	return []string{n.Value}
}
