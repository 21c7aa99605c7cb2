package wechat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wejourney/wejourney/channels"
)

// API names of the rate limits and holds (Config.Rates keys).
const (
	// APICustom is customer-service messages (message/custom/send).
	APICustom = "custom"
	// APITemplate is template messages (message/template/send).
	APITemplate = "template"
	// APISubscribe is subscription messages.
	APISubscribe = "subscribe"
)

// apiOf returns the API a channel's messages go through.
func apiOf(channel string) string {
	switch channel {
	case channels.WeChatTemplate:
		return APITemplate
	case channels.WeChatSubscribe:
		return APISubscribe
	}
	return APICustom
}

// customerService reports whether channel's messages are customer-service
// messages, which the member's allowance bounds.
func customerService(channel string) bool {
	return apiOf(channel) == APICustom
}

func (s *Sender) now() time.Time { return s.clock.Now() }

// throttleKey names an account's API for limits and holds.
func throttleKey(appid, api string) string { return "wechat:" + appid + ":" + api }

// admit decides, before calling WeChat, whether msg may go now: the API
// must not be held by a spent daily quota (45009), the member must have
// customer-service allowance left, and the account's rate limit for the
// API must allow a call. It returns the allowance window spent ("" for
// none), for settle.
func (s *Sender) admit(ctx context.Context, appid string, msg channels.Message) (window string, err error) {
	api := apiOf(msg.Channel)
	key := throttleKey(appid, api)
	if s.holds != nil {
		if h, held := s.holds.Held(ctx, key, s.now()); held {
			return "", &channels.Error{Class: channels.ErrQuota, Code: 45009, RetryAfter: h.Until.Sub(s.now()),
				Msg: fmt.Sprintf("daily quota of %s spent: held until %s Beijing time (WeChat not called)", api, h.Until.In(channels.ChinaTime).Format("2006-01-02 15:04"))}
		}
	}
	if customerService(msg.Channel) && s.allowance != nil && msg.To.OpenID != "" {
		kind, ok, err := s.allowance.Spend(ctx, appid, msg.To.OpenID, s.now())
		if err != nil {
			s.log.Warn("customer-service allowance unavailable; sending and letting WeChat answer", "err", err)
		} else if !ok {
			return "", &channels.Error{Class: channels.ErrUnreachable,
				Msg: "no customer-service allowance left (" + s.allowance.describe() + "): WeChat not called"}
		}
		window = kind
	}
	if s.limiter != nil {
		if err := s.limiter.Take(ctx, key, s.rates[api]); err != nil {
			s.settle(ctx, appid, msg, window, err)
			return "", err
		}
	}
	return window, nil
}

// settle records what WeChat's answer err says about the allowance and
// the quota: 45015 and 45047 close the member's allowance, another refusal
// gives back the message admit took, 45009 holds the API until the quota
// resets.
func (s *Sender) settle(ctx context.Context, appid string, msg channels.Message, window string, err error) {
	var cerr *channels.Error
	if err == nil || !errors.As(err, &cerr) {
		return // sent, or fate unknown (the message may count)
	}
	if customerService(msg.Channel) && s.allowance != nil && msg.To.OpenID != "" {
		switch cerr.Code {
		case 45015, 45047:
			s.allowance.Close(ctx, appid, msg.To.OpenID, s.now())
		default:
			s.allowance.Refund(ctx, appid, msg.To.OpenID, window)
		}
	}
	if cerr.Code == 45009 {
		until := channels.NextQuotaReset(s.now())
		cerr.RetryAfter = until.Sub(s.now())
		if s.holds == nil {
			return
		}
		if herr := s.holds.Hold(ctx, throttleKey(appid, apiOf(msg.Channel)), until, s.now(), cerr.Msg); herr != nil {
			s.log.Warn("recording a spent daily quota failed", "appid", appid, "err", herr)
		}
		s.log.Warn("WeChat daily quota spent: sends held until it resets", "appid", appid, "api", apiOf(msg.Channel), "until", until)
	}
}

// Allowance returns the customer-service allowance the sender keeps, nil
// when it keeps none.
func (s *Sender) Allowance() *Allowance { return s.allowance }

// Holds returns the daily-quota holds the sender keeps, nil when none.
func (s *Sender) Holds() *channels.Holds { return s.holds }
