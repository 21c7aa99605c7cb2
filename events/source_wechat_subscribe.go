package events

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"

	"github.com/wejourney/wejourney/model"
)

// Where a subscription-message authorisation came from: the "source" prop
// of WeChatSubscribeAuthorized and MiniProgramSubscribeAuthorized, and
// model.SubscribeGrant.Source. The sender picks WeChat's send API by it.
const (
	// SubscribeOnce is an Official Account 一次性订阅消息: the member
	// confirmed on mp.weixin.qq.com/mp/subscribemsg (sent with
	// /cgi-bin/message/template/subscribe).
	SubscribeOnce = "oa_once"
	// SubscribePopup is an Official Account 订阅通知 accepted in its popup
	// (subscribe_msg_popup_event; sent with /cgi-bin/message/subscribe/bizsend).
	SubscribePopup = "oa_popup"
	// SubscribeMiniProgram is a template accepted in the mini-program's
	// wx.requestSubscribeMessage (sent with /cgi-bin/message/subscribe/send).
	SubscribeMiniProgram = "miniprogram"
)

// SubscribeAuthorization is what an authorisation event says: the account
// (an Official Account's or a mini-program's appid), the template, the
// scene and the source. ok is false for any other event.
func SubscribeAuthorization(ev *model.Event) (appid, templateID, scene, source string, ok bool) {
	switch ev.Type {
	case WeChatSubscribeAuthorized:
		appid = ev.Member.AppID
	case MiniProgramSubscribeAuthorized:
		appid = ev.Member.MPAppID
	default:
		return "", "", "", "", false
	}
	templateID, _ = ev.Props["template_id"].(string)
	scene, _ = ev.Props["scene"].(string)
	source, _ = ev.Props["source"].(string)
	if appid == "" || templateID == "" {
		return "", "", "", "", false
	}
	return appid, templateID, scene, source, true
}

// OnceAuthorized is the event of an Official Account 一次性订阅 confirmed
// on WeChat's subscribemsg page (GET /wechat/oa/{appid}/subscribemsg):
// dedupe is the caller's key for it (openid, template and the signed
// link's nonce).
func OnceAuthorized(appid, openid, templateID string, scene int, dedupe string, at time.Time) *model.Event {
	return &model.Event{
		Type:   WeChatSubscribeAuthorized,
		Source: OfficialAccount{}.Name(),
		Member: model.MemberRef{AppID: appid, OpenID: openid},
		Props: map[string]any{"template_id": templateID, "scene": strconv.Itoa(scene),
			"source": SubscribeOnce},
		At:        at.UTC(),
		DedupeKey: dedupe,
	}
}

// NormalizeOACallback turns an Official Account callback into its events:
// a 订阅通知 popup (subscribe_msg_popup_event) becomes one
// WeChatSubscribeAuthorized event per accepted template (source oa_popup),
// so that each records one grant; a popup with none accepted, and every
// other callback, is NormalizeOA's one event. raw is the callback's XML, msg
// what it decoded to: silenceper's MixMessage keeps only the last <List> of
// a popup's <SubscribeMsgPopupEvent>, so the list is read from raw.
func NormalizeOACallback(appid string, raw []byte, msg *message.MixMessage, now time.Time) ([]*model.Event, error) {
	ev, err := NormalizeOA(appid, msg, now)
	if err != nil {
		return nil, err
	}
	if msg.MsgType != message.MsgTypeEvent || msg.Event != message.EventSubscribeMsgPopupEvent {
		return []*model.Event{ev}, nil
	}
	var popup struct {
		List []message.SubscribeMsgPopupEvent `xml:"SubscribeMsgPopupEvent>List"`
	}
	if err := xml.Unmarshal(raw, &popup); err == nil && len(popup.List) > 0 {
		msg.SetSubscribeMsgPopupEvents(popup.List)
	}
	var out []*model.Event
	seen := map[string]bool{}
	for _, it := range msg.GetSubscribeMsgPopupEvents() {
		tid := strings.TrimSpace(it.TemplateID)
		if !strings.EqualFold(strings.TrimSpace(it.SubscribeStatusString), "accept") || tid == "" || seen[tid] {
			continue
		}
		seen[tid] = true
		out = append(out, &model.Event{
			Type:   WeChatSubscribeAuthorized,
			Source: ev.Source,
			Member: ev.Member,
			Props: map[string]any{"template_id": tid, "scene": strconv.Itoa(it.PopupScene),
				"source": SubscribePopup},
			At:        ev.At,
			DedupeKey: fmt.Sprintf("wx:%s:popup:%s:%d:%s", appid, ev.Member.OpenID, msg.CreateTime, tid),
		})
	}
	if len(out) == 0 {
		return []*model.Event{ev}, nil
	}
	return out, nil
}
