package events

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

// TestImportApply: an imported follower is subscribed to the event's
// account since subscribe_time, gains its tags once each (but not the
// reserved tag tester: a WeChat tag does not make a tester), and keeps a
// first scene it had; props read back from the database (JSON) work the
// same as freshly built ones.
func TestImportApply(t *testing.T) {
	t.Parallel()
	ev := &model.Event{Type: WeChatFollowerImported, Source: "import",
		Member: model.MemberRef{AppID: "wxa", OpenID: "o1", UnionID: "u1"},
		Props:  map[string]any{"tags": []string{"vip", "门店会员", "tester"}, "subscribe_time": int64(1700000000), "scene": "store_3", "subscribe_scene": "ADD_SCENE_QR_CODE", "remark": ""}}
	raw, err := json.Marshal(ev.Props)
	if err != nil {
		t.Fatal(err)
	}
	loaded := *ev
	if err := json.Unmarshal(raw, &loaded.Props); err != nil {
		t.Fatal(err)
	}
	reg := Default()
	for name, e := range map[string]*model.Event{"built": ev, "loaded": &loaded} {
		m := &model.Member{AppID: "wxa", Tags: []string{"vip"}}
		reg.Apply(m, e)
		if m.Subscription("wxa") != model.SubscriptionSubscribed || !m.Subscribed {
			t.Errorf("%s: subscription %q", name, m.Subscription("wxa"))
		}
		if m.SubscribedAt == nil || !m.SubscribedAt.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: subscribed at %v", name, m.SubscribedAt)
		}
		if !slices.Equal(m.Tags, []string{"vip", "门店会员"}) || m.FirstScene != "store_3" {
			t.Errorf("%s: tags %v, first scene %q", name, m.Tags, m.FirstScene)
		}
		kept := &model.Member{FirstScene: "earlier"}
		reg.Apply(kept, e)
		if kept.FirstScene != "earlier" {
			t.Errorf("%s: first scene overwritten with %q", name, kept.FirstScene)
		}
	}
	if !reg.Reserved(WeChatFollowerImported) {
		t.Error("the events API would accept wechat.follower_imported")
	}
	if props, open := reg.Props(WeChatFollowerImported); open || !slices.Contains(props, "tags") {
		t.Errorf("props %v open %v", props, open)
	}
}
