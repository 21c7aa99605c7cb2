package events

import (
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

func TestOptOutReply(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]bool{
		"TD": true, "td": true, " Td\n": true, "T": true, "n": true, "退订": true, "退订。": true, "TD!": true, "ＴＤ": true,
		"": false, "TD谢谢": false, "不要退订": false, "yes": false, "NO": false, "T D": false,
	} {
		if got := OptOutReply(text); got != want {
			t.Errorf("OptOutReply(%q) = %v; want %v", text, got, want)
		}
	}
}

func TestSMSApply(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	reg := Default()
	if reg.Reserved(SMSReceived) || reg.Reserved(SMSUnsubscribed) {
		t.Fatal("sms.* types are reserved: the events API would refuse the brand's sms.received")
	}
	for _, tc := range []struct {
		ev   model.Event
		want bool
	}{
		{model.Event{Type: SMSReceived, At: at, Props: map[string]any{"text": "TD"}}, true},
		{model.Event{Type: SMSReceived, At: at, Props: map[string]any{"text": "什么时候发货?"}}, false},
		{model.Event{Type: SMSUnsubscribed, At: at}, true},
	} {
		var m model.Member
		reg.Apply(&m, &tc.ev)
		if m.OptedOut("sms") != tc.want {
			t.Errorf("%s %v: opted out %v; want %v", tc.ev.Type, tc.ev.Props, m.OptedOut("sms"), tc.want)
		}
		if tc.want && !m.OptOuts["sms"].Equal(at) {
			t.Errorf("opt-out recorded at %v; want the event's time", m.OptOuts["sms"])
		}
	}
}
