package events

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

const weComApp = "wwcorp0001/1000002"

func normalizeWeCom(t *testing.T, body string) []*model.Event {
	t.Helper()
	var msg WeComCallback
	if err := xml.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatal(err)
	}
	evs, err := NormalizeWeCom(weComApp, &msg, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatalf("NormalizeWeCom: %v", err)
	}
	return evs
}

func contactXML(changeType, userID, externalID, state string) string {
	return `<xml><ToUserName><![CDATA[wwcorp0001]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>` +
		`<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>` +
		`<ChangeType><![CDATA[` + changeType + `]]></ChangeType><UserID><![CDATA[` + userID + `]]></UserID>` +
		`<ExternalUserID><![CDATA[` + externalID + `]]></ExternalUserID><State><![CDATA[` + state + `]]></State>` +
		`<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>`
}

func TestNormalizeWeCom(t *testing.T) {
	t.Parallel()
	chat := func(changeType, detail string, items ...string) string {
		list := ""
		for _, it := range items {
			list += "<Item>" + it + "</Item>"
		}
		return `<xml><ToUserName>wwcorp0001</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000000</CreateTime>` +
			`<MsgType>event</MsgType><Event>change_external_chat</Event><ChatId>wrchat1</ChatId><ChangeType>` + changeType +
			`</ChangeType><UpdateDetail>` + detail + `</UpdateDetail><JoinScene>1</JoinScene><MemChangeList>` + list + `</MemChangeList></xml>`
	}
	tests := []struct {
		name, body string
		want       []model.Event // Type, Member, Scene and the props below
		props      map[string]any
	}{
		{"add", contactXML("add_external_contact", "rep1", "wmcust1", "store_7"),
			[]model.Event{{Type: WeComContactAdded, Member: model.MemberRef{ExternalUserID: "wmcust1"}, Scene: "store_7"}},
			map[string]any{"state": "store_7", "welcome_code": "WELCOMECODE", "user_id": "rep1", "change_type": "add_external_contact", "wecom_app": weComApp}},
		{"half add", contactXML("add_half_external_contact", "rep1", "wmcust1", ""),
			[]model.Event{{Type: WeComContactAdded, Member: model.MemberRef{ExternalUserID: "wmcust1"}}},
			map[string]any{"change_type": "add_half_external_contact"}},
		{"edit", contactXML("edit_external_contact", "rep1", "wmcust1", ""),
			[]model.Event{{Type: WeComContactEdited, Member: model.MemberRef{ExternalUserID: "wmcust1"}}}, nil},
		{"rep deletes customer", contactXML("del_external_contact", "rep1", "wmcust1", ""),
			[]model.Event{{Type: WeComContactRemoved, Member: model.MemberRef{ExternalUserID: "wmcust1"}}},
			map[string]any{"user_id": "rep1", "change_type": "del_external_contact"}},
		{"customer deletes rep", contactXML("del_follow_user", "rep1", "wmcust1", ""),
			[]model.Event{{Type: WeComContactRemoved, Member: model.MemberRef{ExternalUserID: "wmcust1"}}},
			map[string]any{"change_type": "del_follow_user"}},
		{"unknown contact change", contactXML("transfer_fail", "rep1", "wmcust1", ""),
			[]model.Event{{Type: "wecom.transfer_fail", Member: model.MemberRef{ExternalUserID: "wmcust1"}}}, nil},
		{"two join a group", chat("update", "add_member", "wmcust1", "zhangsan"),
			[]model.Event{
				{Type: WeComGroupJoined, Member: model.MemberRef{ExternalUserID: "wmcust1"}},
				{Type: WeComGroupJoined, Member: model.MemberRef{UserID: "wecom:wwcorp0001/zhangsan"}},
			},
			map[string]any{"chat_id": "wrchat1", "update_detail": "add_member", "change_type": "update", "join_scene": 1}},
		{"one leaves a group", chat("update", "del_member", "wocust2"),
			[]model.Event{{Type: WeComGroupLeft, Member: model.MemberRef{ExternalUserID: "wocust2"}}},
			map[string]any{"chat_id": "wrchat1"}},
		{"a group renamed", chat("update", "change_name"),
			[]model.Event{{Type: WeComGroupChanged, Member: model.MemberRef{UserID: "wecom:wwcorp0001/chat/wrchat1"}}},
			map[string]any{"chat_id": "wrchat1", "update_detail": "change_name"}},
		{"a text to the app",
			`<xml><ToUserName>wwcorp0001</ToUserName><FromUserName>zhangsan</FromUserName><CreateTime>1700000000</CreateTime>` +
				`<MsgType>text</MsgType><Content>你好</Content><MsgId>1234567890123456</MsgId><AgentID>1000002</AgentID></xml>`,
			[]model.Event{{Type: WeComMessage, Member: model.MemberRef{UserID: "wecom:wwcorp0001/zhangsan"}}},
			map[string]any{"text": "你好", "msg_type": "text", "msg_id": "1234567890123456", "user_id": "zhangsan"}},
		{"an app event",
			`<xml><ToUserName>wwcorp0001</ToUserName><FromUserName>zhangsan</FromUserName><CreateTime>1700000000</CreateTime>` +
				`<MsgType>event</MsgType><Event>enter_agent</Event><AgentID>1000002</AgentID></xml>`,
			[]model.Event{{Type: "wecom.enter_agent", Member: model.MemberRef{UserID: "wecom:wwcorp0001/zhangsan"}}},
			map[string]any{"user_id": "zhangsan"}},
		{"a tag change names nobody",
			`<xml><ToUserName>wwcorp0001</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000000</CreateTime>` +
				`<MsgType>event</MsgType><Event>change_external_tag</Event><ChangeType>create</ChangeType></xml>`,
			nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := normalizeWeCom(t, tt.body)
			if len(evs) != len(tt.want) {
				t.Fatalf("%d events, want %d: %+v", len(evs), len(tt.want), evs)
			}
			for i, ev := range evs {
				w := tt.want[i]
				if ev.Type != w.Type || ev.Member != w.Member || ev.Scene != w.Scene || ev.Source != "wecom" {
					t.Errorf("event %d: %s %+v scene %q source %q; want %s %+v scene %q source wecom",
						i, ev.Type, ev.Member, ev.Scene, ev.Source, w.Type, w.Member, w.Scene)
				}
				if !ev.At.Equal(time.Unix(1700000000, 0)) {
					t.Errorf("at = %v, want CreateTime", ev.At)
				}
				for k, v := range tt.props {
					if ev.Props[k] != v {
						t.Errorf("props[%s] = %#v, want %#v", k, ev.Props[k], v)
					}
				}
				if ev.DedupeKey == "" || len(ev.DedupeKey) > model.MaxDedupeKey {
					t.Errorf("dedupe key %q", ev.DedupeKey)
				}
			}
			if len(evs) == 2 && evs[0].DedupeKey == evs[1].DedupeKey {
				t.Errorf("two members joining share one dedupe key %q", evs[0].DedupeKey)
			}
		})
	}
}

// The dedupe key tells apart what WeCom sends twice from what happened
// twice.
func TestWeComDedupeKey(t *testing.T) {
	t.Parallel()
	key := func(body string) string { return normalizeWeCom(t, body)[0].DedupeKey }
	add := contactXML("add_external_contact", "rep1", "wmcust1", "s")
	if key(add) != key(add) {
		t.Error("the same add has two keys")
	}
	for name, other := range map[string]string{
		"another customer, same rep and second": contactXML("add_external_contact", "rep1", "wmcust2", "s"),
		"same customer, another rep":            contactXML("add_external_contact", "rep2", "wmcust1", "s"),
		"same customer and rep, a removal":      contactXML("del_follow_user", "rep1", "wmcust1", ""),
	} {
		if key(add) == key(other) {
			t.Errorf("%s: same key %q", name, key(add))
		}
	}
	long := contactXML("add_external_contact", strings.Repeat("r", 300), "wmcust1", "")
	if k := key(long); len([]rune(k)) > model.MaxDedupeKey || k == key(contactXML("add_external_contact", strings.Repeat("r", 299), "wmcust1", "")) {
		t.Errorf("a long key is not fitted to a distinct stand-in: %q", k)
	}
}

func TestWeComApply(t *testing.T) {
	t.Parallel()
	r := Default()
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	m := model.Member{FirstScene: "qr_old"}
	r.Apply(&m, &model.Event{Type: WeComContactAdded, At: at, Props: map[string]any{"state": "store_7"}})
	if m.FirstScene != "qr_old" || m.LastScene != "store_7" || m.LastInteractionAt == nil || !m.LastInteractionAt.Equal(at) {
		t.Errorf("after an add: scenes %q/%q, interaction %v; want qr_old/store_7 at %v", m.FirstScene, m.LastScene, m.LastInteractionAt, at)
	}
	fresh := model.Member{}
	r.Apply(&fresh, &model.Event{Type: WeComContactAdded, At: at, Props: map[string]any{"state": "store_7"}})
	if fresh.FirstScene != "store_7" {
		t.Errorf("first add's scene: %q, want store_7", fresh.FirstScene)
	}
	later := at.Add(time.Hour)
	r.Apply(&m, &model.Event{Type: WeComContactRemoved, At: later, Props: map[string]any{"user_id": "rep1"}})
	if m.LastScene != "store_7" || m.Subscribed || len(m.Subscriptions) != 0 || !m.LastInteractionAt.Equal(later) {
		t.Errorf("after a removal: %+v; want only the interaction time changed", m)
	}
	if !r.Reserved("wecom.anything") || !r.Known(WeComContactAdded) || r.Known("wecom.nothing_we_emit") {
		t.Error("wecom.* is not the WeCom source's namespace")
	}
}
