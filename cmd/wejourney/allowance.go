package main

import (
	"context"
	"log/slog"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// allowanceWindows opens each member's customer-service allowance from the
// events about to be routed (journey.Observer): a message opens the
// message window, a follow, QR scan or click / scan-push menu the event
// window. It runs in the worker before the journeys these events start
// send anything.
type allowanceWindows struct {
	allowance *wechat.Allowance
	log       *slog.Logger
}

// windowOf returns the allowance window an event opens, "" for none.
func windowOf(ev *model.Event) string {
	switch ev.Type {
	case events.WeChatMessage:
		return wechat.WindowMessage
	case events.WeChatSubscribe, events.WeChatScan, events.WeChatMenuClick,
		"wechat.scancode_push", "wechat.scancode_waitmsg":
		return wechat.WindowEvent
	}
	return ""
}

// Observe implements journey.Observer.
func (a allowanceWindows) Observe(ctx context.Context, evs []*model.Event) {
	var ws []wechat.Window
	for _, ev := range evs {
		kind := windowOf(ev)
		if kind == "" || ev.Member.OpenID == "" || ev.Member.AppID == "" {
			continue
		}
		ws = append(ws, wechat.Window{AppID: ev.Member.AppID, OpenID: ev.Member.OpenID, Kind: kind, At: ev.At})
	}
	if err := a.allowance.OpenAll(ctx, ws); err != nil {
		// Unknown allowance: sends are attempted and WeChat answers.
		a.log.Warn("opening members' customer-service allowance failed", "events", len(ws), "err", err)
	}
}

// observer returns what the engine tells of events before routing them:
// the WeChat sender's allowance windows, nil when it keeps none.
func (a *App) observer() journey.Observer {
	if a.wechat.Allowance() == nil {
		return nil
	}
	return allowanceWindows{allowance: a.wechat.Allowance(), log: a.Log}
}

// withAllowance lets the console's member page read the customer-service
// allowance the WeChat sender keeps, when it keeps one.
func withAllowance(cfg handler.AdminConfig, wx *wechat.Sender) handler.AdminConfig {
	if wx != nil && wx.Allowance() != nil {
		cfg.CSAllowance = wx.Allowance()
	}
	return cfg
}
