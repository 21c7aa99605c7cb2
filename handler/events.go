package handler

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/model"
)

// MaxEventsPerRequest bounds one POST /api/v1/events.
const MaxEventsPerRequest = 1000

// apiEvent is one event as the brand posts it.
type apiEvent struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Member model.MemberRef `json:"member"`
	Props  map[string]any  `json:"props"`
	At     string          `json:"at"`
}

type apiError struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

// HashAPIKey is how API keys are stored: hex SHA-256.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// postEvents serves POST /api/v1/events: one event or {"events": [...]}.
func (h *Handler) postEvents(c *gin.Context) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 8*MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			c.JSON(http.StatusRequestEntityTooLarge, gin.H{"error": "body too large"})
			return
		}
		c.JSON(http.StatusBadRequest, gin.H{"error": "unreadable body"})
		return
	}
	var batch struct {
		Events []json.RawMessage `json:"events"`
	}
	var raws []json.RawMessage
	trimmed := bytes.TrimSpace(body)
	if err := json.Unmarshal(trimmed, &batch); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"errors": []apiError{{0, "body is not JSON: " + err.Error()}}})
		return
	}
	if batch.Events != nil {
		raws = batch.Events
	} else {
		raws = []json.RawMessage{trimmed}
	}
	if len(raws) == 0 || len(raws) > MaxEventsPerRequest {
		c.JSON(http.StatusBadRequest, gin.H{"errors": []apiError{{0, fmt.Sprintf("send 1 to %d events", MaxEventsPerRequest)}}})
		return
	}
	keyID := c.GetInt64("api_key_id")
	var (
		events []*model.Event
		errs   []apiError
	)
	for i, raw := range raws {
		ev, err := parseAPIEvent(raw, keyID)
		if err != nil {
			errs = append(errs, apiError{i, err.Error()})
			continue
		}
		events = append(events, ev)
	}
	if len(errs) > 0 {
		c.JSON(http.StatusBadRequest, gin.H{"errors": errs})
		return
	}
	accepted, dups, err := h.cfg.Ingestor.Ingest(c.Request.Context(), events...)
	if err != nil {
		h.log.Error("storing events failed", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "could not store events; retry with the same ids"})
		return
	}
	for _, ev := range events {
		if ev.ID != 0 {
			h.metrics.events.WithLabelValues(ev.Type).Inc()
		}
	}
	c.JSON(http.StatusAccepted, gin.H{"accepted": accepted, "duplicates": dups})
}

func parseAPIEvent(raw json.RawMessage, keyID int64) (*model.Event, error) {
	var in apiEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("not an event: %v", err)
	}
	switch {
	case in.Type == "" || len(in.Type) > 64:
		return nil, errors.New("type is required (at most 64 characters)")
	case strings.HasPrefix(in.Type, "wechat.") || strings.HasPrefix(in.Type, "wecom."):
		return nil, fmt.Errorf("type %q is reserved for callbacks", in.Type)
	case in.Member == (model.MemberRef{}):
		return nil, errors.New("member needs one of openid (+appid), unionid, external_userid, phone, email, user_id")
	case in.Member.OpenID != "" && in.Member.AppID == "":
		return nil, errors.New("member.openid needs member.appid")
	case len(in.ID) > 128:
		return nil, errors.New("id is at most 128 characters")
	}
	ev := &model.Event{Type: in.Type, Source: "api", Member: in.Member, Props: in.Props}
	if ev.Props == nil {
		ev.Props = map[string]any{}
	}
	if in.At != "" {
		at, err := time.Parse(time.RFC3339, in.At)
		if err != nil {
			return nil, fmt.Errorf("at: want RFC 3339 (2026-11-23T10:00:00+08:00): %v", err)
		}
		ev.At = at.UTC()
	}
	id := in.ID
	if id == "" {
		id = "gen-" + rand.Text()
	}
	ev.DedupeKey = fmt.Sprintf("api:%d:%s", keyID, id)
	return ev, nil
}
