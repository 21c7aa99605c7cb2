package journey

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// Enricher looks up the identities of an event's member that its source
// did not carry: a follower's unionid (the Official Account's user info),
// a WeCom contact's (external-contact detail). The engine calls it in the
// worker before the events are routed, never on the callback path, and
// stores what it finds on the events, so that routing links the member's
// identities (and merges members the unionid shows to be one person).
type Enricher interface {
	// Enrich returns, by event id, the identities found for those of evs it
	// can enrich; events it cannot or need not enrich are left out. It may
	// call the platforms' APIs. On error the events it found nothing for
	// are routed with what they carry.
	Enrich(ctx context.Context, evs []*model.Event) (map[int64]model.MemberRef, error)
}

// Observer is told of events before they are routed (Config.Observe).
type Observer interface {
	// Observe sees evs, which are about to be routed. It must be quick and
	// must not fail routing: it logs its own errors.
	Observe(ctx context.Context, evs []*model.Event)
}

// enrich asks Config.Enrich about unrouted events and records what it
// found on them (in evs and in the database), before they are routed.
func (e *Engine) enrich(ctx context.Context, evs []*model.Event) {
	if e.cfg.Observe != nil && len(evs) > 0 {
		defer e.cfg.Observe.Observe(ctx, evs)
	}
	if e.cfg.Enrich == nil || len(evs) == 0 {
		return
	}
	found, err := e.cfg.Enrich.Enrich(ctx, evs)
	if err != nil {
		e.log.Warn("looking up members' identities failed; their events are routed with what they carry", "events", len(evs), "err", err)
	}
	var changed []*model.Event
	for _, ev := range evs {
		ref, ok := found[ev.ID]
		if !ok {
			continue
		}
		if merged := mergeRef(ev.Member, ref); merged != ev.Member {
			ev.Member = merged
			changed = append(changed, ev)
		}
	}
	if len(changed) == 0 {
		return
	}
	// One statement: a CASE over the ids, as markRouted does.
	var sb strings.Builder
	args := make([]any, 0, len(changed)+1)
	ids := make([]int64, len(changed))
	sb.WriteString("CASE id")
	for i, ev := range changed {
		b, err := json.Marshal(ev.Member)
		if err != nil {
			e.log.Warn("encoding a member's identities failed", "event", ev.ID, "err", err)
			return
		}
		ids[i] = ev.ID
		// The id is an integer we hold, written as a literal; the identities
		// are a parameter.
		sb.WriteString(" WHEN " + strconv.FormatInt(ev.ID, 10) + " THEN ?")
		args = append(args, string(b))
	}
	sb.WriteString(" END")
	e.slot.lock(ctx)
	defer e.slot.unlock(ctx)
	err = e.cfg.DB.WithContext(ctx).Model(&model.Event{}).Where("id IN ? AND routed_at IS NULL", ids).
		Update("member", gorm.Expr(sb.String(), args...)).Error
	if err != nil {
		e.log.Warn("recording members' identities failed; their events are routed with what they carry", "events", len(changed), "err", err)
	}
}

// mergeRef fills ref's empty identities from found.
func mergeRef(ref, found model.MemberRef) model.MemberRef {
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&ref.UnionID, found.UnionID)
	fill(&ref.ExternalUserID, found.ExternalUserID)
	fill(&ref.Phone, found.Phone)
	fill(&ref.Email, found.Email)
	fill(&ref.UserID, found.UserID)
	if ref.OpenID == "" && found.OpenID != "" {
		ref.AppID, ref.OpenID = found.AppID, found.OpenID
	}
	if ref.MPOpenID == "" && found.MPOpenID != "" {
		ref.MPAppID, ref.MPOpenID = found.MPAppID, found.MPOpenID
	}
	return ref
}
