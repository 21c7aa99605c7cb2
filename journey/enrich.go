package journey

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/events"
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

// enrich asks Config.Enrich about unrouted events and records what it
// found on them (in evs and in the database), before they are routed.
func (e *Engine) enrich(ctx context.Context, evs []*model.Event) {
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
	e.slot.lock()
	defer e.slot.unlock()
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

// emitsEvents reports whether routing ev stores engine events
// (member.updated: one member.attribute_changed per changed attribute).
// Such events are routed one by one.
func emitsEvents(ev *model.Event) bool { return ev.Type == events.MemberUpdated }

// emitAttributeChanges stores one member.attribute_changed event (props
// name, old, new) per attribute ev changed on the member, and returns their
// ids: they are routed after ev's transaction commits.
func emitAttributeChanges(tx *gorm.DB, ev *model.Event, before, after map[string]any, now time.Time) ([]int64, error) {
	var names []string
	for k, v := range after {
		if old, ok := before[k]; !ok || !reflect.DeepEqual(old, v) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var ids []int64
	for _, name := range names {
		ch := &model.Event{
			DedupeKey: model.FitKey(fmt.Sprintf("attr:%d:%s", ev.ID, name), model.MaxDedupeKey),
			Type:      events.MemberAttributeChanged, Source: "engine",
			Member: ev.Member, MemberKey: ev.MemberKey,
			Props: map[string]any{"name": name, "old": before[name], "new": after[name]},
			At:    now, ReceivedAt: now,
		}
		res := model.InsertIgnore(tx).Create(ch)
		if res.Error != nil {
			return nil, fmt.Errorf("journey: store %s: %w", events.MemberAttributeChanged, res.Error)
		}
		if res.RowsAffected > 0 {
			ids = append(ids, ch.ID)
		}
	}
	return ids, nil
}

// cloneAttrs copies a member's attributes before an event changes them.
func cloneAttrs(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return maps.Clone(m)
}
