package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// enrichTimeout bounds the lookups made for one batch of events: a slow
// WeChat API delays routing by at most this much.
const enrichTimeout = 3 * time.Second

// userInfos is the Official Account API's user info (*wechat.Sender).
type userInfos interface {
	UsersInfo(ctx context.Context, appid string, openids []string) ([]wechat.UserInfo, error)
}

// externalContacts is WeCom's external-contact detail (*wecom.Client).
type externalContacts interface {
	ExternalContact(ctx context.Context, app, externalUserID string) (wecom.Contact, error)
}

// unionids is the process's journey.Enricher: before a follow or a WeCom
// add is routed, it looks up the member's unionid (the Official Account's
// user info, 100 followers a call; WeCom's external-contact detail), which
// links the follower, the WeCom contact and the mini-program user.
type unionids struct {
	users    userInfos
	contacts externalContacts // nil: no WeCom
}

var _ journey.Enricher = unionids{}

// Enrich implements journey.Enricher.
func (u unionids) Enrich(ctx context.Context, evs []*model.Event) (map[int64]model.MemberRef, error) {
	ctx, cancel := context.WithTimeout(ctx, enrichTimeout)
	defer cancel()
	out := map[int64]model.MemberRef{}
	var errs []error
	followers := map[string][]*model.Event{} // by appid
	var apps []string
	for _, ev := range evs {
		if ev.Member.UnionID != "" {
			continue
		}
		switch ev.Type {
		case events.WeChatSubscribe:
			if u.users == nil || ev.Member.OpenID == "" {
				continue
			}
			if _, ok := followers[ev.Member.AppID]; !ok {
				apps = append(apps, ev.Member.AppID)
			}
			followers[ev.Member.AppID] = append(followers[ev.Member.AppID], ev)
		case events.WeComContactAdded:
			app, _ := ev.Props["wecom_app"].(string)
			if u.contacts == nil || app == "" || ev.Member.ExternalUserID == "" {
				continue
			}
			c, err := u.contacts.ExternalContact(ctx, app, ev.Member.ExternalUserID)
			if errors.Is(err, wecom.ErrSandbox) {
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("external contact of event %d: %w", ev.ID, err))
				continue
			}
			if c.UnionID != "" {
				out[ev.ID] = model.MemberRef{UnionID: c.UnionID}
			}
		}
	}
	slices.Sort(apps)
	for _, app := range apps {
		evs := followers[app]
		var openids []string
		for _, ev := range evs {
			if !slices.Contains(openids, ev.Member.OpenID) {
				openids = append(openids, ev.Member.OpenID)
			}
		}
		found := map[string]string{}
		for start := 0; start < len(openids); start += 100 {
			infos, err := u.users.UsersInfo(ctx, app, openids[start:min(start+100, len(openids))])
			if errors.Is(err, wechat.ErrSandbox) {
				break // no secret: nothing to ask
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("user info of %s: %w", app, err))
				break
			}
			for _, in := range infos {
				if in.UnionID != "" {
					found[in.OpenID] = in.UnionID
				}
			}
		}
		for _, ev := range evs {
			if id := found[ev.Member.OpenID]; id != "" {
				out[ev.ID] = model.MemberRef{UnionID: id}
			}
		}
	}
	return out, errors.Join(errs...)
}
