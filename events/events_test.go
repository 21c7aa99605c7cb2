package events

import (
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := Default()
	for _, tc := range []struct {
		typ             string
		known, reserved bool
	}{
		{WeChatSubscribe, true, true},
		{"wechat.follow", false, true},       // no source emits it
		{"WeCom.contact_added", false, true}, // reserved for the WeCom source, any case
		{"order.paid", true, false},          // a brand event
		{MemberUpdated, true, false},
		{MiniProgramClosed, true, true},     // the mini-program source's
		{"miniprogram.shared", false, true}, // in its namespace, but no source emits it
		{"MiniProgram.opened", false, true}, // reserved in any case
	} {
		if got := r.Known(tc.typ); got != tc.known {
			t.Errorf("Known(%q) = %v, want %v", tc.typ, got, tc.known)
		}
		if got := r.Reserved(tc.typ); got != tc.reserved {
			t.Errorf("Reserved(%q) = %v, want %v", tc.typ, got, tc.reserved)
		}
	}
}

// What an event changes on the member comes from its source; a WeChat event
// with no name of its own still counts as the member interacting, and a
// brand event changes nothing.
func TestApply(t *testing.T) {
	t.Parallel()
	r := Default()
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	apply := func(typ string, props map[string]any) model.Member {
		m := model.Member{AppID: "wxapp"}
		r.Apply(&m, &model.Event{Type: typ, At: at, Props: props, Member: model.MemberRef{AppID: "wxapp", OpenID: "o1"}})
		return m
	}
	if m := apply(WeChatSubscribe, map[string]any{"scene": "store_1"}); !m.Subscribed || m.FirstScene != "store_1" || m.LastScene != "store_1" {
		t.Errorf("after a follow: subscribed %v, scenes %q/%q; want subscribed, store_1 both", m.Subscribed, m.FirstScene, m.LastScene)
	}
	if m := apply("wechat.some_new_event", nil); !m.Subscribed || m.LastInteractionAt == nil {
		t.Errorf("after an unnamed WeChat event: subscribed %v, last interaction %v; want an interaction", m.Subscribed, m.LastInteractionAt)
	}
	if m := apply(MemberUpdated, map[string]any{"nickname": "小王", "tier": "gold"}); m.Nickname != "小王" || m.Attrs["tier"] != "gold" {
		t.Errorf("after member.updated: nickname %q, attrs %v", m.Nickname, m.Attrs)
	}
	if m := apply(WeChatUnsubscribe, nil); m.Subscribed || m.Subscription("wxapp") != model.SubscriptionUnsubscribed {
		t.Errorf("after an unfollow: subscribed %v, subscription %q", m.Subscribed, m.Subscription("wxapp"))
	}
	if m := apply(MiniProgramClosed, map[string]any{"page": "pages/index/index", "duration_s": 12.5}); m.LastInteractionAt == nil || !m.LastInteractionAt.Equal(at) || m.Subscription("wxapp") != model.SubscriptionUnknown {
		t.Errorf("after a mini-program page closed: last interaction %v, subscription %q; want %v, unknown", m.LastInteractionAt, m.Subscription("wxapp"), at)
	}
	if m := apply("order.paid", map[string]any{"amount": 1}); m.Subscribed || m.Attrs != nil || m.Subscription("") != model.SubscriptionUnknown {
		t.Errorf("a brand event changed the member: %+v", m)
	}
}
