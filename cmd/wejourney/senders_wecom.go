package main

import (
	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wecom"
)

// addWeComSenders registers the WeCom channels (wecom.welcome, wecom.text,
// wecom.mark_tag, wecom.group_message) when there is a WeCom client. They
// are served even with no WeCom app configured: a send then fails as a
// configuration error (ErrPermanent naming WEJOURNEY_WECOM_CORPID), since
// apps may be added in the admin at any time. Messages name their app with
// Extra wecom_app (the trigger event's); the default is the environment's
// app.
func addWeComSenders(senders *channels.Registry, d senderDeps) {
	if d.wecom == nil {
		return
	}
	sc := wecom.SenderConfig{Client: d.wecom, DefaultApp: defaultWeComApp(d.cfg),
		Limiter: d.limiter, Redis: d.rdb, Logger: d.log, Rates: map[string]channels.Rate{}}
	if d.rdb != nil {
		sc.Holds = channels.NewHolds(d.rdb)
	}
	rates, _ := d.cfg.Rates() // validated with the configuration
	for _, api := range wecom.APIs {
		if r, ok := rates["wecom."+api]; ok {
			sc.Rates[api] = r
		}
	}
	senders.Add(wecom.NewSender(sc))
}
