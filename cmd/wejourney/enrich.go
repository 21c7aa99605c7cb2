package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// enrichTimeout bounds the lookups made for one batch of events: a slow
// WeChat API delays routing by at most this much.
const enrichTimeout = 3 * time.Second

// contactLookups is how many WeCom external-contact lookups one batch makes
// at once.
const contactLookups = 8

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
	adds := map[[2]string][]*model.Event{}   // by (app, external_userid): each looked up once
	for _, ev := range evs {
		if ev.Member.UnionID != "" {
			continue
		}
		switch ev.Type {
		case events.WeChatSubscribe:
			if u.users != nil && ev.Member.OpenID != "" {
				followers[ev.Member.AppID] = append(followers[ev.Member.AppID], ev)
			}
		case events.WeComContactAdded:
			app, _ := ev.Props["wecom_app"].(string)
			if u.contacts == nil || app == "" || ev.Member.ExternalUserID == "" {
				continue
			}
			key := [2]string{app, ev.Member.ExternalUserID}
			adds[key] = append(adds[key], ev)
		}
	}
	// WeCom has no batch detail: the contacts are asked side by side, so a
	// batch of adds waits for the slowest answer, not for their sum (their
	// welcome codes expire 20 s after the add).
	var (
		mu sync.Mutex
		g  errgroup.Group
	)
	g.SetLimit(contactLookups)
	for key, evs := range adds {
		g.Go(func() error {
			c, err := u.contacts.ExternalContact(ctx, key[0], key[1])
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !errors.Is(err, wecom.ErrSandbox) {
				errs = append(errs, fmt.Errorf("external contact of event %d: %w", evs[0].ID, err))
			}
			for _, ev := range evs {
				if c.UnionID != "" {
					out[ev.ID] = model.MemberRef{UnionID: c.UnionID}
				}
			}
			return nil
		})
	}
	g.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	for _, app := range slices.Sorted(maps.Keys(followers)) {
		evs := followers[app]
		seen := map[string]bool{}
		var openids []string
		for _, ev := range evs {
			if !seen[ev.Member.OpenID] {
				seen[ev.Member.OpenID] = true
				openids = append(openids, ev.Member.OpenID)
			}
		}
		found := map[string]string{}
		for chunk := range slices.Chunk(openids, wechat.MaxUsersInfo) {
			infos, err := u.users.UsersInfo(ctx, app, chunk)
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
