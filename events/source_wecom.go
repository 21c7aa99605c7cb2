package events

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wejourney/wejourney/model"
)

// WeCom is the WeCom (企业微信) callback source
// (POST /wechat/work/{corpid}/{agentid}): external contacts added, edited
// and removed, customer group changes, and messages to the app.
//
// Who an event names:
//   - an external-contact event names the customer by external_userid; the
//     rep (WeCom's UserID) is only the user_id prop, since a member's
//     user_id identity is the brand's own id for the person;
//   - a customer-group change names each changed member (MemChangeList):
//     an external_userid for customers ("wm…" or "wo…"), otherwise an
//     employee (below); one event per changed member;
//   - a group change without a member list names the group itself, as
//     user_id "wecom:{corpid}/chat/{chat_id}";
//   - a message or app event from an employee (who has no external_userid)
//     names them as user_id "wecom:{corpid}/{userid}": WeCom userids hold
//     no '/', so these ids never collide with each other, and the prefix
//     keeps them apart from the brand's own user ids;
//   - a callback naming nobody (a tag change, a batch job's result) makes
//     no event.
type WeCom struct{}

// Name implements Source.
func (WeCom) Name() string { return "wecom" }

// Namespace implements Source.
func (WeCom) Namespace() string { return "wecom." }

// Events implements Source.
func (WeCom) Events() []Spec {
	return []Spec{
		{Type: WeComContactAdded, Props: []string{"state", "welcome_code", "user_id", "change_type", "wecom_app"},
			Doc: "a customer added a rep (or a rep added a customer); state is the contact-me scene"},
		{Type: WeComContactEdited, Props: []string{"user_id", "change_type", "wecom_app"}, Doc: "a rep edited the customer's remark or tags"},
		{Type: WeComContactRemoved, Props: []string{"user_id", "change_type", "source", "wecom_app"},
			Doc: "the rep removed the customer (del_external_contact) or the customer removed the rep (del_follow_user)"},
		{Type: WeComGroupJoined, Props: []string{"chat_id", "update_detail", "change_type", "join_scene", "wecom_app"}, Doc: "the member joined a customer group"},
		{Type: WeComGroupLeft, Props: []string{"chat_id", "update_detail", "change_type", "quit_scene", "wecom_app"}, Doc: "the member left a customer group"},
		{Type: WeComGroupChanged, Props: []string{"chat_id", "update_detail", "change_type", "wecom_app"}, Doc: "a customer group was created, renamed, dismissed, …"},
		{Type: WeComMessage, Props: []string{"text", "msg_type", "msg_id", "user_id", "pic_url", "wecom_app"}, Doc: "an employee sent the app a message"},
	}
}

// Apply implements Source: a contact add records the contact-me state as
// the member's scene (first and last); every WeCom event is the member
// interacting. WeCom says nothing about Official Account subscriptions.
func (WeCom) Apply(m *model.Member, ev *model.Event) {
	at := ev.At
	if ev.Type == WeComContactAdded {
		if state, _ := ev.Props["state"].(string); state != "" && model.Fits(state, model.MaxScene) {
			if m.FirstScene == "" {
				m.FirstScene = state
			}
			m.LastScene = state
		}
	}
	m.LastInteractionAt = &at
}

// WeComCallback is a decrypted WeCom callback: the fields of app messages,
// app events, and external-contact and customer-group events.
type WeComCallback struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   string   `xml:"ToUserName"`
	FromUserName string   `xml:"FromUserName"`
	CreateTime   int64    `xml:"CreateTime"`
	MsgType      string   `xml:"MsgType"`
	AgentID      string   `xml:"AgentID"`
	// App messages.
	MsgID   string `xml:"MsgId"`
	Content string `xml:"Content"`
	PicURL  string `xml:"PicUrl"`
	// Events.
	Event      string `xml:"Event"`
	EventKey   string `xml:"EventKey"`
	ChangeType string `xml:"ChangeType"`
	// External contacts.
	UserID         string `xml:"UserID"`
	ExternalUserID string `xml:"ExternalUserID"`
	State          string `xml:"State"`
	WelcomeCode    string `xml:"WelcomeCode"`
	Source         string `xml:"Source"`
	// Customer groups.
	ChatID        string   `xml:"ChatId"`
	UpdateDetail  string   `xml:"UpdateDetail"`
	JoinScene     int      `xml:"JoinScene"`
	QuitScene     int      `xml:"QuitScene"`
	MemChangeList []string `xml:"MemChangeList>Item"`
}

// WeCom callback values NormalizeWeCom knows.
const (
	weComChangeContact = "change_external_contact"
	weComChangeChat    = "change_external_chat"
	// weComSystem is the FromUserName of external-contact events.
	weComSystem = "sys"
)

// NormalizeWeCom turns a WeCom callback to the app appid ("corpid/agentid")
// into its events: one, one per changed member of a customer group, or none
// for a callback that names nobody. now stamps a callback without
// CreateTime.
func NormalizeWeCom(appid string, msg *WeComCallback, now time.Time) ([]*model.Event, error) {
	if msg.FromUserName == "" || msg.MsgType == "" {
		return nil, errors.New("callback without FromUserName or MsgType")
	}
	corpid, _, _ := strings.Cut(appid, "/")
	at := time.Unix(msg.CreateTime, 0).UTC()
	if msg.CreateTime == 0 {
		at = now.UTC()
	}
	employee := func(userid string) model.MemberRef {
		return model.MemberRef{UserID: "wecom:" + corpid + "/" + userid}
	}
	newEvent := func(typ string, ref model.MemberRef, key string) *model.Event {
		return &model.Event{
			Type: typ, Source: WeCom{}.Name(), Member: ref, At: at,
			Props:     map[string]any{"wecom_app": appid},
			DedupeKey: model.FitKey(key, model.MaxDedupeKey),
		}
	}
	// Every event's key: the app, the callback's addressee, time and kind.
	base := fmt.Sprintf("wecom:%s:ev:%s:%d:%s:%s", appid, msg.ToUserName, msg.CreateTime, msg.Event, msg.ChangeType)

	if msg.MsgType != "event" {
		ref := employee(msg.FromUserName)
		if msg.ExternalUserID != "" {
			ref = model.MemberRef{ExternalUserID: msg.ExternalUserID}
		}
		key := fmt.Sprintf("wecom:%s:msg:%s", appid, msg.MsgID)
		if msg.MsgID == "" {
			key = fmt.Sprintf("wecom:%s:msg:%s:%d:%s", appid, msg.FromUserName, msg.CreateTime, msg.MsgType)
		}
		ev := newEvent(WeComMessage, ref, key)
		ev.Props["msg_type"] = msg.MsgType
		ev.Props["msg_id"] = msg.MsgID
		ev.Props["user_id"] = msg.FromUserName
		switch msg.MsgType {
		case "text":
			ev.Props["text"] = msg.Content
		case "image":
			ev.Props["pic_url"] = msg.PicURL
		}
		return []*model.Event{ev}, nil
	}

	switch msg.Event {
	case weComChangeContact:
		if msg.ExternalUserID == "" {
			return nil, errors.New("change_external_contact without ExternalUserID")
		}
		var typ string
		switch msg.ChangeType {
		case "add_external_contact", "add_half_external_contact":
			typ = WeComContactAdded
		case "edit_external_contact":
			typ = WeComContactEdited
		case "del_external_contact", "del_follow_user":
			typ = WeComContactRemoved
		default:
			typ = otherType("wecom.", msg.ChangeType)
		}
		// Two customers added to one rep in the same second are two
		// events; the same add retried is one.
		key := base + ":" + msg.ExternalUserID + ":" + msg.UserID
		ev := newEvent(typ, model.MemberRef{ExternalUserID: msg.ExternalUserID}, key)
		ev.Props["user_id"] = msg.UserID
		ev.Props["change_type"] = msg.ChangeType
		switch typ {
		case WeComContactAdded:
			ev.Props["state"] = msg.State
			ev.Props["welcome_code"] = msg.WelcomeCode
			ev.Scene = model.FitKey(msg.State, model.MaxScene)
		case WeComContactRemoved:
			if msg.Source != "" {
				ev.Props["source"] = msg.Source
			}
		}
		return []*model.Event{ev}, nil

	case weComChangeChat:
		if msg.ChatID == "" {
			return nil, errors.New("change_external_chat without ChatId")
		}
		typ := WeComGroupChanged
		if msg.ChangeType == "update" || msg.ChangeType == "create" {
			switch msg.UpdateDetail {
			case "add_member":
				typ = WeComGroupJoined
			case "del_member":
				typ = WeComGroupLeft
			}
		}
		refs := make([]model.MemberRef, 0, len(msg.MemChangeList))
		for _, id := range msg.MemChangeList {
			switch {
			case id == "":
			case strings.HasPrefix(id, "wm") || strings.HasPrefix(id, "wo"):
				refs = append(refs, model.MemberRef{ExternalUserID: id})
			default:
				refs = append(refs, employee(id))
			}
		}
		if typ == WeComGroupChanged || len(refs) == 0 {
			refs = []model.MemberRef{employee("chat/" + msg.ChatID)}
		}
		out := make([]*model.Event, 0, len(refs))
		for _, ref := range refs {
			key := base + ":" + msg.ChatID + ":" + msg.UpdateDetail + ":" + ref.Key()
			ev := newEvent(typ, ref, key)
			ev.Props["chat_id"] = msg.ChatID
			ev.Props["update_detail"] = msg.UpdateDetail
			ev.Props["change_type"] = msg.ChangeType
			switch typ {
			case WeComGroupJoined:
				ev.Props["join_scene"] = msg.JoinScene
			case WeComGroupLeft:
				ev.Props["quit_scene"] = msg.QuitScene
			}
			out = append(out, ev)
		}
		return out, nil
	}

	// Any other event: an app event from an employee (enter_agent, click,
	// …), or a corp-wide one.
	var ref model.MemberRef
	switch {
	case msg.ExternalUserID != "":
		ref = model.MemberRef{ExternalUserID: msg.ExternalUserID}
	case msg.FromUserName != weComSystem:
		ref = employee(msg.FromUserName)
	default:
		return nil, nil // names nobody: a tag change, a batch job's result
	}
	key := base + ":" + msg.FromUserName + ":" + msg.ExternalUserID + ":" + msg.UserID + ":" + msg.EventKey
	ev := newEvent(otherType("wecom.", msg.Event), ref, key)
	if msg.EventKey != "" {
		ev.Props["key"] = msg.EventKey
	}
	if msg.ChangeType != "" {
		ev.Props["change_type"] = msg.ChangeType
	}
	if msg.UserID != "" {
		ev.Props["user_id"] = msg.UserID
	} else if msg.FromUserName != weComSystem {
		ev.Props["user_id"] = msg.FromUserName
	}
	return []*model.Event{ev}, nil
}
