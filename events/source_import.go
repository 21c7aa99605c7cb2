package events

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/wejourney/wejourney/model"
)

// WeChatFollowerImported is an Official Account follower from before
// wejourney was connected, found by the follower import (package
// followers).
const WeChatFollowerImported = "wechat.follower_imported"

// Import is the follower import's source (`wejourney followers sync`,
// POST /api/v1/followers/sync): one wechat.follower_imported per follower.
// Its type lies in the Official Account's namespace, which the events API
// refuses, so only the import emits it.
type Import struct{}

// Name implements Source.
func (Import) Name() string { return "import" }

// Namespace implements Source: its one type is in "wechat.", which the
// Official Account source owns.
func (Import) Namespace() string { return "" }

// Events implements Source.
func (Import) Events() []Spec {
	return []Spec{{
		Type:  WeChatFollowerImported,
		Props: []string{"tags", "subscribe_time", "subscribe_scene", "scene", "remark"},
		Doc:   "an existing follower found by the follower import: tags (names), subscribe_time (unix seconds), subscribe_scene (ADD_SCENE_…), scene (the QR code's scene string), remark",
	}}
}

// Apply implements Source: the member follows the event's account, since
// subscribe_time; the follower's tags are added to the member's (once
// each, but for the reserved model.TesterTag); the QR scene they followed by becomes the first scene of a member
// who has none.
func (Import) Apply(m *model.Member, ev *model.Event) {
	if ev.Type != WeChatFollowerImported {
		return
	}
	m.SetSubscription(ev.Member.AppID, model.SubscriptionSubscribed)
	if sec := propInt(ev.Props["subscribe_time"]); sec > 0 {
		at := time.Unix(sec, 0).UTC()
		m.SubscribedAt = &at
	}
	for _, t := range propStrings(ev.Props["tags"]) {
		// A WeChat tag named "tester" does not make a tester: only the
		// admin API marks one (model.TesterTag).
		if t != "" && t != model.TesterTag && !slices.Contains(m.Tags, t) {
			m.Tags = append(m.Tags, t)
		}
	}
	if scene, _ := ev.Props["scene"].(string); scene != "" && m.FirstScene == "" && model.Fits(scene, model.MaxScene) {
		m.FirstScene = scene
	}
}

// propInt reads a number prop as it is built (int, int64) or as it is
// loaded from the database (float64, json.Number).
func propInt(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
}

// propStrings reads a list-of-strings prop as it is built ([]string) or
// as it is loaded from the database ([]any).
func propStrings(v any) []string {
	switch l := v.(type) {
	case []string:
		return l
	case []any:
		out := make([]string, 0, len(l))
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
