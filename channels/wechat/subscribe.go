package wechat

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/silenceper/wechat/v2/miniprogram/subscribe"
	"github.com/silenceper/wechat/v2/officialaccount/message"

	"github.com/wejourney/wejourney/channels"
)

// The subscription-message send APIs, one per kind of authorisation.
const (
	// onceSendPath sends an Official Account 一次性订阅消息.
	onceSendPath = "/cgi-bin/message/template/subscribe"
	// bizSendPath sends an Official Account 订阅通知 (silenceper's
	// message.Subscribe.Send).
	bizSendPath = "/cgi-bin/message/subscribe/bizsend"
	// mpSubscribeSendPath sends a mini-program subscribe message
	// (silenceper's miniprogram/subscribe.Send).
	mpSubscribeSendPath = "/cgi-bin/message/subscribe/send"
)

// Sources of a Grant (events.SubscribeOnce, SubscribePopup,
// SubscribeMiniProgram): which API sends on it.
const (
	grantOnce        = "oa_once"
	grantPopup       = "oa_popup"
	grantMiniProgram = "miniprogram"
)

// Grant is one authorisation a subscription message is sent on.
type Grant struct {
	// Source is "oa_once" (一次性订阅消息), "oa_popup" (订阅通知) or
	// "miniprogram" (wx.requestSubscribeMessage).
	Source string
	// Scene is the authorisation's scene; an oa_once send repeats it.
	Scene string
}

// Grants spends subscription-message authorisations: one message per
// authorisation (model.SubscribeGrant rows in the app). It must be safe for
// concurrent use.
type Grants interface {
	// Claim spends one unused authorisation of the member for (appid,
	// templateID) on deliveryID and returns it; ok is false when there is
	// none. A retry of the same delivery gets the grant it claimed before.
	// A test send, which has no delivery, claims under a random negative
	// id of its own.
	Claim(ctx context.Context, memberID int64, appid, templateID string, deliveryID int64) (g Grant, ok bool, err error)
	// Release gives back the authorisation deliveryID claimed: WeChat
	// refused the message without spending it.
	Release(ctx context.Context, deliveryID int64) error
}

// SubscribeAddress addresses a subscription message: the member's Official
// Account openid, else their mini-program openid.
func SubscribeAddress(r channels.Recipient) string {
	if r.OpenID != "" {
		return r.OpenID
	}
	return r.MPOpenID
}

// subscribeCapabilities are wechat.subscribe_message's: a template id is
// required; following is not (一次性订阅 and mini-program messages reach
// non-followers in 服务通知); WeChat takes no idempotency key, so an
// unknown fate is never re-sent.
func subscribeCapabilities() channels.Capabilities {
	return channels.Capabilities{Address: SubscribeAddress, Requires: []string{"template_id"}}
}

// releasable reports whether WeChat's refusal code means the message was
// refused before the authorisation was spent (the request was wrong, the
// page or template id invalid, the account lacks the API): the grant is
// given back for a corrected send. 43101 (the member refused, or the
// authorisation is gone), 40003 (invalid openid) and every other code keep
// it spent: WeChat would refuse it again, or may have used it.
func releasable(code int) bool {
	switch code {
	case 40008, // invalid message type
		40013, // invalid appid
		40037, // invalid template id
		40125, // invalid appsecret
		41004, // appsecret missing
		41030, // invalid page (mini-program)
		44002, // empty body
		47001, // malformed body
		47003, // template data invalid
		48001: // api unauthorized
		return true
	}
	return false
}

// sendSubscribe sends a wechat.subscribe_message: it claims an
// authorisation of the member for msg.TemplateID (the Official Account's
// first, then the mini-program's) and sends on the API of its source. No
// authorisation: channels.ErrUnreachable, and WeChat is not called.
func (s *Sender) sendSubscribe(ctx context.Context, grants Grants, msg channels.Message) (channels.Result, error) {
	ch := msg.Channel
	if msg.TemplateID == "" {
		return channels.Result{}, fmt.Errorf("%s: no template id: %w", ch, channels.ErrPermanent)
	}
	if grants == nil {
		return channels.Result{}, fmt.Errorf("%s: the sender has no grant store (wechat.Config.Grants): %w", ch, channels.ErrPermanent)
	}
	type cand struct{ appid, openid string }
	var cands []cand
	if msg.To.AppID != "" && msg.To.OpenID != "" {
		cands = append(cands, cand{msg.To.AppID, msg.To.OpenID})
	}
	if msg.To.MPAppID != "" && msg.To.MPOpenID != "" {
		cands = append(cands, cand{msg.To.MPAppID, msg.To.MPOpenID})
	}
	if len(cands) == 0 {
		return channels.Result{}, fmt.Errorf("%s: member has no openid: %w", ch, channels.ErrUnreachable)
	}
	var (
		to    cand
		grant Grant
		found bool
	)
	claim := msg.DeliveryID
	if claim == 0 {
		// A test send has no delivery row: it claims its grant under an
		// id of its own, negative so that it names no delivery. Under a
		// shared 0, every test send would find the first one's grant.
		claim = -1 - rand.Int64N(math.MaxInt64)
	}
	for _, c := range cands {
		g, ok, err := grants.Claim(ctx, msg.To.MemberID, c.appid, msg.TemplateID, claim)
		if err != nil {
			return channels.Result{}, fmt.Errorf("%s: claim an authorisation: %w", ch, err)
		}
		if ok {
			to, grant, found = c, g, true
			break
		}
	}
	if !found {
		return channels.Result{}, &channels.Error{Class: channels.ErrUnreachable,
			Msg: fmt.Sprintf("no authorisation for template %s", msg.TemplateID)}
	}
	body, path, err := subscribeBody(msg, grant, to.openid)
	if err == nil {
		var acct Account
		acct, err = s.accounts.Account(ctx, to.appid)
		switch {
		case errors.Is(err, ErrUnknownAccount):
			err = fmt.Errorf("%s: account %q: %w: %w", ch, to.appid, err, channels.ErrPermanent)
		case err != nil:
			return channels.Result{}, fmt.Errorf("%s: account %q: %w", ch, to.appid, err) // retried with its grant
		default:
			// A held daily quota or the account's rate limit: retried
			// later, on the grant this delivery holds.
			window, aerr := s.admit(ctx, to.appid, msg)
			if aerr != nil {
				return channels.Result{}, fmt.Errorf("%s (%s) to %s via %s: %w", ch, grant.Source, to.openid, to.appid, aerr)
			}
			if acct.AppSecret == "" {
				s.logSandbox(ctx, msg)
				return channels.Result{Sandbox: true}, nil
			}
			if acct.AppID == "" {
				acct.AppID = to.appid
			}
			var msgID int64
			msgID, err = s.send(ctx, s.tokenSource(acct), path, body)
			s.settle(ctx, to.appid, msg, window, err)
			if err == nil {
				var res channels.Result
				if msgID != 0 {
					res.ProviderID = strconv.FormatInt(msgID, 10)
				}
				return res, nil
			}
			err = fmt.Errorf("%s (%s) to %s via %s: %w", ch, grant.Source, to.openid, acct.AppID, err)
		}
	}
	var ce *channels.Error
	if errors.Is(err, channels.ErrPermanent) && !errors.As(err, &ce) || errors.As(err, &ce) && releasable(ce.Code) {
		if rerr := grants.Release(ctx, claim); rerr != nil {
			s.log.WarnContext(ctx, "wechat: giving back a subscribe authorisation failed", "delivery", msg.DeliveryID, "err", rerr)
		}
	}
	return channels.Result{}, err
}

// SubscribeProvider is the provider of wechat.subscribe_message alone,
// sending through a Sender (its accounts, tokens and HTTP client) and
// spending the authorisations of its own Grants: how the app adds grants
// to the Sender it built before its database was wired.
type SubscribeProvider struct {
	s      *Sender
	grants Grants
}

var _ channels.Provider = (*SubscribeProvider)(nil)

// Subscriptions returns the provider of wechat.subscribe_message sending
// through s and spending g's authorisations.
func (s *Sender) Subscriptions(g Grants) *SubscribeProvider {
	return &SubscribeProvider{s: s, grants: g}
}

// Channels implements channels.Provider: wechat.subscribe_message.
func (p *SubscribeProvider) Channels() map[string]channels.Capabilities {
	return map[string]channels.Capabilities{channels.WeChatSubscribe: subscribeCapabilities()}
}

// Send implements channels.Sender for wechat.subscribe_message.
func (p *SubscribeProvider) Send(ctx context.Context, msg channels.Message) (channels.Result, error) {
	if msg.Channel != channels.WeChatSubscribe {
		return channels.Result{}, fmt.Errorf("%s: not served here: %w", msg.Channel, channels.ErrPermanent)
	}
	return p.s.sendSubscribe(ctx, p.grants, msg)
}

// onceMessage is the body of /cgi-bin/message/template/subscribe
// (silenceper has no type for it).
type onceMessage struct {
	ToUser      string                  `json:"touser"`
	TemplateID  string                  `json:"template_id"`
	URL         string                  `json:"url,omitempty"`
	MiniProgram *onceMiniProgram        `json:"miniprogram,omitempty"`
	Scene       string                  `json:"scene"`
	Title       string                  `json:"title"`
	Data        map[string]onceDataItem `json:"data"`
}

type onceMiniProgram struct {
	AppID    string `json:"appid"`
	PagePath string `json:"pagepath"`
}

type onceDataItem struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

// subscribeBody builds the request of grant's source and its path.
// Message fields: Text (or Data["content"]) is an oa_once message's
// content, Extra["title"] its title, Extra["color"] the content's colour;
// Data holds the keywords of oa_popup and miniprogram templates
// ({"thing1": "…"}); URL is the link (oa_once, oa_popup's page);
// Extra["miniprogram_appid"]/["miniprogram_pagepath"] open a mini-program
// from an Official Account message; Extra["page"],
// ["miniprogram_state"] (default formal) and ["lang"] (default zh_CN)
// configure a mini-program message.
func subscribeBody(msg channels.Message, g Grant, openid string) (any, string, error) {
	x := msg.Extra
	permanent := func(format string, args ...any) error {
		return fmt.Errorf("%s (%s): %s: %w", msg.Channel, g.Source, fmt.Sprintf(format, args...), channels.ErrPermanent)
	}
	switch g.Source {
	case grantOnce:
		content := msg.Data["content"]
		if content == "" {
			content = msg.Text
		}
		if content == "" || x["title"] == "" {
			return nil, "", permanent("a 一次性订阅消息 needs text (or data.content) and extra.title")
		}
		m := onceMessage{ToUser: openid, TemplateID: msg.TemplateID, URL: msg.URL, Scene: g.Scene, Title: x["title"],
			Data: map[string]onceDataItem{"content": {Value: content, Color: x["color"]}}}
		if x["miniprogram_appid"] != "" {
			m.MiniProgram = &onceMiniProgram{AppID: x["miniprogram_appid"], PagePath: x["miniprogram_pagepath"]}
		}
		return m, onceSendPath, nil
	case grantPopup:
		if len(msg.Data) == 0 {
			return nil, "", permanent("a 订阅通知 needs data (the template's keywords)")
		}
		m := &message.SubscribeMessage{ToUser: openid, TemplateID: msg.TemplateID, Page: msg.URL,
			Data: make(map[string]*message.SubscribeDataItem, len(msg.Data))}
		for k, v := range msg.Data {
			m.Data[k] = &message.SubscribeDataItem{Value: v}
		}
		m.MiniProgram.AppID, m.MiniProgram.PagePath = x["miniprogram_appid"], x["miniprogram_pagepath"]
		return m, bizSendPath, nil
	case grantMiniProgram:
		if len(msg.Data) == 0 {
			return nil, "", permanent("a mini-program subscribe message needs data (the template's keywords)")
		}
		m := &subscribe.Message{ToUser: openid, TemplateID: msg.TemplateID, Page: x["page"],
			MiniprogramState: x["miniprogram_state"], Lang: x["lang"],
			Data: make(map[string]*subscribe.DataItem, len(msg.Data))}
		if m.MiniprogramState == "" {
			m.MiniprogramState = "formal"
		}
		if m.Lang == "" {
			m.Lang = "zh_CN"
		}
		for k, v := range msg.Data {
			m.Data[k] = &subscribe.DataItem{Value: v}
		}
		return m, mpSubscribeSendPath, nil
	}
	return nil, "", permanent("unknown authorisation source %q", g.Source)
}
