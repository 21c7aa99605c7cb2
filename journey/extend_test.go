package journey_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// kioskSource is an event source only this test knows: a check-in kiosk in
// a store emits kiosk.checked_in with the store's code, and a check-in
// records the store as the member's last scene. Adding a source is this
// type plus its line in the registry.
type kioskSource struct{}

func (kioskSource) Name() string      { return "kiosk" }
func (kioskSource) Namespace() string { return "kiosk." }
func (kioskSource) Events() []events.Spec {
	return []events.Spec{{Type: "kiosk.checked_in", Props: []string{"store"}, Doc: "a member checked in at a store's kiosk"}}
}
func (kioskSource) Apply(m *model.Member, ev *model.Event) {
	if store, ok := ev.Props["store"].(string); ok {
		m.LastScene = store
	}
}

// pigeonChannel is a channel only this test has a sender for; the member is
// addressed by phone and a message needs text.
const pigeonChannel = "pigeon"

var pigeonCaps = channels.Capabilities{Address: channels.ByPhone, Requires: []string{"text"}}

const kioskJourney = `
key: kiosk-welcome
trigger:
  event: kiosk.checked_in
  where: event.store == "s1"
steps:
  - id: hello
    send: { channel: pigeon, text: "welcome to {{ .member.last_scene }}" }
`

// A sender and an event source added through the engine's configuration
// (a registry line each) are validated against and used end to end: the
// source's event enters the journey, changes the member as the source
// says, and the message goes out on the added channel to the address its
// capabilities pick.
func TestAddedSenderAndSource(t *testing.T) {
	t.Parallel()
	rec := &sendRecorder{}
	h := newHarnessWith(t, func(c *journey.Config) {
		reg := rec.sender()
		reg.Register(pigeonChannel, rec.send(), pigeonCaps)
		c.Senders = reg
		c.Sources = events.NewRegistry(append(events.Builtin(), kioskSource{})...)
	})
	h.rec = rec
	c, err := h.e.Parse("kiosk.yaml", []byte(kioskJourney))
	if err != nil {
		t.Fatalf("engine Parse with the pigeon sender and the kiosk source: %v", err)
	}
	if _, err := h.e.Publish(h.ctx, c, "test"); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	const phone = "13800000001"
	h.route(&model.Event{Type: "kiosk.checked_in", Source: "kiosk", Member: model.MemberRef{Phone: phone},
		Props: map[string]any{"store": "s1"}})
	want := []sent{{Channel: pigeonChannel, Phone: phone, Text: "welcome to s1"}}
	if diff := cmp.Diff(want, h.rec.sent()); diff != "" {
		t.Errorf("sent mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]delivery{{"hello", pigeonChannel, phone, model.DeliverySent}}, h.deliveries()); diff != "" {
		t.Errorf("deliveries mismatch (-want +got):\n%s", diff)
	}

	// The source's props are checked: a misspelt prop fails validation.
	_, err = h.e.Parse("kiosk.yaml", []byte(strings.Replace(kioskJourney, "event.store", "event.stor", 1)))
	if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), `has no prop "stor"`) {
		t.Errorf("Parse with event.stor = %v; want the misspelt prop refused", err)
	}
	// Without the sender the channel is unknown; a send missing the text
	// the channel requires is refused.
	_, err = journey.Parse("kiosk.yaml", []byte(kioskJourney))
	if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), `kiosk.yaml:8: step "hello": unknown channel "pigeon"`) {
		t.Errorf("Parse without the pigeon sender = %v; want the channel refused at its line", err)
	}
	_, err = h.e.Parse("kiosk.yaml", []byte(strings.Replace(kioskJourney, `text: "welcome to {{ .member.last_scene }}"`, `subject: hi`, 1)))
	if !errors.Is(err, journey.ErrInvalid) || !strings.Contains(err.Error(), "pigeon needs text") {
		t.Errorf("Parse of a pigeon send without text = %v; want it refused", err)
	}
}
