package events

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"

	"github.com/wejourney/wejourney/model"
)

// OfficialAccount is the Official Account callback source
// (POST /wechat/{appid}): follows, scans, menu clicks, messages.
type OfficialAccount struct{}

// Name implements Source.
func (OfficialAccount) Name() string { return "wechat" }

// Namespace implements Source.
func (OfficialAccount) Namespace() string { return "wechat." }

// Events implements Source.
func (OfficialAccount) Events() []Spec {
	return []Spec{
		{Type: WeChatSubscribe, Props: []string{"scene", "ticket"}, Doc: "the member followed; scene is the QR code's scene when they scanned one"},
		{Type: WeChatUnsubscribe, Doc: "the member unfollowed"},
		{Type: WeChatScan, Props: []string{"scene", "ticket"}, Doc: "a follower scanned a parametric QR code"},
		{Type: WeChatMenuClick, Props: []string{"key"}, Doc: "a click menu item"},
		{Type: WeChatMenuView, Props: []string{"url"}, Doc: "a link menu item"},
		{Type: WeChatMessage, Props: []string{"msg_type", "msg_id", "text", "latitude", "longitude", "label", "pic_url", "url"}, Doc: "the member sent a message"},
		{Type: WeChatLocation, Props: []string{"latitude", "longitude", "precision"}, Doc: "a location report"},
		{Type: WeChatTemplateSent, Props: []string{"status", "msg_id"}, Doc: "WeChat's receipt of a template message"},
		{Type: WeChatSubscribeAuthorized, Props: []string{"template_id", "scene", "source"},
			Doc: "the member allowed one subscription message of template_id: source oa_once (一次性订阅, the subscribemsg page) or oa_popup (订阅通知 popup, accepted)"},
	}
}

// Apply implements Source: a follow or scan subscribes the member and
// records the QR scene (first and last); an unfollow unsubscribes; every
// other event but a template receipt is the member interacting, which
// proves they follow.
func (OfficialAccount) Apply(m *model.Member, ev *model.Event) {
	at := ev.At
	scene, _ := ev.Props["scene"].(string)
	if !model.Fits(scene, model.MaxScene) {
		scene = ""
	}
	appid := ev.Member.AppID
	switch ev.Type {
	case WeChatSubscribe:
		m.SubscribedAt = &at
		if scene != "" {
			if m.FirstScene == "" {
				m.FirstScene = scene
			}
			m.LastScene = scene
		}
	case WeChatUnsubscribe:
		m.SetSubscription(appid, model.SubscriptionUnsubscribed)
		return
	case WeChatScan:
		if scene != "" {
			m.LastScene = scene
		}
	case WeChatTemplateSent, WeChatSubscribeAuthorized:
		// An authorisation is no proof of following: 一次性订阅 works for
		// non-followers too. Its grant is recorded by the router.
		return
	}
	m.SetSubscription(appid, model.SubscriptionSubscribed)
	m.LastInteractionAt = &at
}

// NormalizeOA turns an Official Account callback into one event. now
// stamps a callback without CreateTime.
func NormalizeOA(appid string, msg *message.MixMessage, now time.Time) (*model.Event, error) {
	from := string(msg.FromUserName)
	if from == "" || msg.MsgType == "" {
		return nil, errors.New("callback without FromUserName or MsgType")
	}
	ev := &model.Event{
		Source: OfficialAccount{}.Name(),
		Member: model.MemberRef{AppID: appid, OpenID: from},
		Props:  map[string]any{},
		At:     time.Unix(msg.CreateTime, 0).UTC(),
	}
	if msg.CreateTime == 0 {
		ev.At = now.UTC()
	}
	if msg.MsgType == message.MsgTypeEvent {
		key := msg.EventKey
		switch msg.Event {
		case message.EventSubscribe:
			ev.Type = WeChatSubscribe
			if scene, ok := strings.CutPrefix(key, "qrscene_"); ok {
				ev.Props["scene"] = scene
			}
			if msg.Ticket != "" {
				ev.Props["ticket"] = msg.Ticket
			}
		case message.EventUnsubscribe:
			ev.Type = WeChatUnsubscribe
		case message.EventScan:
			ev.Type = WeChatScan
			ev.Props["scene"] = key
			if msg.Ticket != "" {
				ev.Props["ticket"] = msg.Ticket
			}
		case message.EventClick:
			ev.Type = WeChatMenuClick
			ev.Props["key"] = key
		case message.EventView:
			ev.Type = WeChatMenuView
			ev.Props["url"] = key
		case message.EventLocation:
			ev.Type = WeChatLocation
			ev.Props["latitude"] = parseFloat(msg.Latitude)
			ev.Props["longitude"] = parseFloat(msg.Longitude)
			ev.Props["precision"] = parseFloat(msg.Precision)
		case message.EventTemplateSendJobFinish:
			ev.Type = WeChatTemplateSent
			ev.Props["status"] = msg.Status
			ev.Props["msg_id"] = msg.TemplateMsgID
		default:
			ev.Type = otherEventType(string(msg.Event))
			if key != "" {
				ev.Props["key"] = key
			}
		}
		ev.DedupeKey = fmt.Sprintf("wx:%s:ev:%s:%d:%s:%s:%d", appid, from, msg.CreateTime, msg.Event, key, msg.TemplateMsgID)
		if scene, _ := ev.Props["scene"].(string); ev.Type == WeChatSubscribe || ev.Type == WeChatScan {
			ev.Scene = model.FitKey(scene, model.MaxScene)
		}
		return ev, nil
	}
	ev.Type = WeChatMessage
	ev.Props["msg_type"] = string(msg.MsgType)
	ev.Props["msg_id"] = msg.MsgID
	switch msg.MsgType {
	case message.MsgTypeText:
		ev.Props["text"] = msg.Content
	case message.MsgTypeLocation:
		ev.Props["latitude"], ev.Props["longitude"], ev.Props["label"] = msg.LocationX, msg.LocationY, msg.Label
	case message.MsgTypeImage:
		ev.Props["pic_url"] = msg.PicURL
	case message.MsgTypeLink:
		ev.Props["url"] = msg.URL
	}
	if msg.MsgID != 0 {
		ev.DedupeKey = fmt.Sprintf("wx:%s:msg:%d", appid, msg.MsgID)
	} else {
		ev.DedupeKey = fmt.Sprintf("wx:%s:msg:%s:%d:%s", appid, from, msg.CreateTime, msg.MsgType)
	}
	return ev, nil
}

// maxEventType is the longest event type the events table stores.
const maxEventType = 64

// otherEventType names a WeChat event NormalizeOA has no name for:
// "wechat." and the event lowercased, anything but letters, digits and
// underscores replaced by "_", cut to fit maxEventType.
func otherEventType(event string) string { return otherType("wechat.", event) }

// otherType is prefix and event lowercased, anything but letters, digits
// and underscores replaced by "_", cut to fit maxEventType; prefix +
// "unknown" for an empty event.
func otherType(prefix, event string) string {
	name := []byte(strings.ToLower(event))
	for i, b := range name {
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_') {
			name[i] = '_'
		}
	}
	if len(name) > maxEventType-len(prefix) {
		name = name[:maxEventType-len(prefix)]
	}
	if len(name) == 0 {
		return prefix + "unknown"
	}
	return prefix + string(name)
}

func parseFloat(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}
