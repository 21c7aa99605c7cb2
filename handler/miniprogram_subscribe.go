package handler

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// Limits of a posted subscribe authorisation.
const (
	maxTemplateID        = 128 // model.SubscribeGrant.TemplateID's column
	maxTemplatesPerEvent = 20  // wx.requestSubscribeMessage takes at most 3 (5 for some)
)

// mpSubscribeEvent is a miniprogram.subscribe_authorized as the
// mini-program posts it: the templates the member accepted in
// wx.requestSubscribeMessage.
type mpSubscribeEvent struct {
	ID          string   `json:"id"`
	Type        string   `json:"type"`
	TemplateID  string   `json:"template_id"`
	TemplateIDs []string `json:"template_ids"`
	At          string   `json:"at"`
}

// ingestMPBatch parses the posted mini-program events (one posted
// subscribe authorisation may become several events, one per template) and
// stores them; when any cannot be parsed it answers 400 with every error
// and stores none.
func (h *Handler) ingestMPBatch(c *gin.Context, raws []json.RawMessage, cl mpClaims, now time.Time) {
	var (
		evs  []*model.Event
		ids  []string
		errs []apiError
	)
	for i, raw := range raws {
		var head struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(raw, &head)
		if head.Type != events.MiniProgramSubscribeAuthorized {
			ev, id, err := parseMPEvent(raw, cl, now)
			if err != nil {
				errs = append(errs, apiError{i, err.Error()})
				continue
			}
			evs, ids = append(evs, ev), append(ids, id)
			continue
		}
		sub, id, err := parseMPSubscribe(raw, cl, now)
		if err != nil {
			errs = append(errs, apiError{i, err.Error()})
			continue
		}
		for _, ev := range sub {
			evs, ids = append(evs, ev), append(ids, id)
		}
	}
	if len(errs) > 0 {
		c.JSON(http.StatusBadRequest, gin.H{"errors": errs})
		return
	}
	h.ingest(c, evs, ids)
}

// parseMPSubscribe checks one posted miniprogram.subscribe_authorized and
// returns its events, one per accepted template, with the id as posted.
func parseMPSubscribe(raw json.RawMessage, cl mpClaims, now time.Time) ([]*model.Event, string, error) {
	var in mpSubscribeEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, "", fmt.Errorf("not a subscribe authorisation: %v", err)
	}
	switch {
	case utf8.RuneCountInString(in.ID) > maxEventID:
		return nil, "", fmt.Errorf("id is at most %d characters", maxEventID)
	case hasControl(in.ID):
		return nil, "", errors.New("id must not contain control characters")
	}
	tids := in.TemplateIDs
	if in.TemplateID != "" {
		tids = append([]string{in.TemplateID}, tids...)
	}
	if len(tids) == 0 || len(tids) > maxTemplatesPerEvent {
		return nil, "", fmt.Errorf(`template_ids: the accepted templates (1 to %d), e.g. {"type": %q, "template_ids": ["…"]}`,
			maxTemplatesPerEvent, events.MiniProgramSubscribeAuthorized)
	}
	at := now.UTC()
	given := in.At != ""
	if given {
		var err error
		if at, err = parseAt(in.At, now); err != nil {
			return nil, "", err
		}
	}
	var out []*model.Event
	seen := map[string]bool{}
	for _, tid := range tids {
		if tid == "" || len(tid) > maxTemplateID || hasControl(tid) || !utf8.ValidString(tid) {
			return nil, "", fmt.Errorf("template_ids: %q is not a template id (at most %d characters)", tid, maxTemplateID)
		}
		if seen[tid] {
			continue
		}
		seen[tid] = true
		ev := &model.Event{Type: events.MiniProgramSubscribeAuthorized, Source: events.MiniProgram{}.Name(), At: at,
			Props:  map[string]any{"template_id": tid, "source": events.SubscribeMiniProgram},
			Member: model.MemberRef{MPAppID: cl.AppID, MPOpenID: cl.OpenID, UnionID: cl.UnionID}}
		canon := struct {
			Type       string `json:"type"`
			TemplateID string `json:"template_id"`
			At         string `json:"at"`
		}{Type: in.Type, TemplateID: tid}
		if given {
			canon.At = at.Format(time.RFC3339Nano)
		}
		b, _ := json.Marshal(canon)
		sum := sha256.Sum256(b)
		ev.PayloadHash = hex.EncodeToString(sum[:])
		if in.ID == "" {
			d := sha256.Sum256([]byte(in.Type + "\x00" + at.Format(time.RFC3339Nano) + "\x00" + tid))
			ev.DedupeKey = fmt.Sprintf("mp:%s/%s:at:%s", cl.AppID, cl.OpenID, hex.EncodeToString(d[:16]))
		} else {
			d := sha256.Sum256([]byte(tid))
			ev.DedupeKey = fmt.Sprintf("mp:%s/%s:id:%s:t:%s", cl.AppID, cl.OpenID, in.ID, hex.EncodeToString(d[:8]))
		}
		out = append(out, ev)
	}
	return out, in.ID, nil
}
