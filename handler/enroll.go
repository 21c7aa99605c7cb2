package handler

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// maxEnroll is how many members one enrollment request names.
const maxEnroll = 1000

// enrollRequest is the body of POST /api/v1/journeys/{key}/enroll.
type enrollRequest struct {
	// ID makes the request idempotent: the same id enrolls each member once.
	ID      string         `json:"id"`
	Member  *enrollMember  `json:"member"`
	Members []enrollMember `json:"members"`
}

// enrollMember names a member by id or by any identity of the events API.
type enrollMember struct {
	MemberID int64 `json:"member_id"`
	model.MemberRef
}

// enrollRoutes adds the manual enrollment route to the admin API group.
func (h *Handler) enrollRoutes(api gin.IRoutes) {
	api.POST("/journeys/:key/enroll", h.enroll)
}

// enroll enters members into a live journey by hand: each becomes a
// journey.enroll event, stored and routed as events are, so the journey's
// entry rules (once, cooldown, one active enrollment) hold; its trigger and
// where do not apply. 202 {"accepted": n, "duplicates": m}.
func (h *Handler) enroll(c *gin.Context) {
	var req enrollRequest
	if err := c.ShouldBindJSON(&req); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": `want JSON: {"members": [{"openid": "o…", "appid": "wx…"}, {"member_id": 12}, …]} or {"member": {…}}: ` + err.Error()})
		return
	}
	if req.Member != nil {
		req.Members = append(req.Members, *req.Member)
	}
	switch n := len(req.Members); {
	case n == 0:
		c.JSON(http.StatusBadRequest, gin.H{"error": "name at least one member: member_id, or an identity (openid with appid, unionid, external_userid, phone, email, user_id)"})
		return
	case n > maxEnroll:
		c.JSON(http.StatusBadRequest, gin.H{"error": fmt.Sprintf("at most %d members a request, got %d", maxEnroll, n)})
		return
	}
	ctx := c.Request.Context()
	db := h.cfg.DB.WithContext(ctx)
	key := c.Param("key")
	j, ok := journeyByKey(c, db, key)
	if !ok {
		return
	}
	if j.Status != model.JourneyActive {
		c.JSON(http.StatusConflict, gin.H{"error": fmt.Sprintf("journey %q is %s: it takes no one until it is live again", key, j.Status)})
		return
	}
	id := req.ID
	if id == "" {
		id = rand.Text()
	}
	now := h.now()
	// The members named by id, in one query.
	var ids []int64
	for _, m := range req.Members {
		if m.MemberID != 0 {
			ids = append(ids, m.MemberID)
		}
	}
	byID := map[int64]model.Member{}
	if len(ids) > 0 {
		var ms []model.Member
		if err := db.Where("id IN ?", ids).Find(&ms).Error; err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database: " + err.Error()})
			return
		}
		for _, m := range ms {
			byID[m.ID] = m
		}
	}
	evs := make([]*model.Event, 0, len(req.Members))
	var bad []gin.H
	for i, m := range req.Members {
		ref := m.MemberRef
		if m.MemberID != 0 {
			mem, ok := byID[m.MemberID]
			if !ok {
				bad = append(bad, gin.H{"index": i, "error": fmt.Sprintf("no member %d", m.MemberID)})
				continue
			}
			ref = mem.Ref()
		}
		if (ref.OpenID != "") != (ref.AppID != "") || ref.Key() == "" {
			bad = append(bad, gin.H{"index": i, "error": memberNeeds})
			continue
		}
		if err := checkMember(ref); err != nil {
			bad = append(bad, gin.H{"index": i, "error": err.Error()})
			continue
		}
		evs = append(evs, enrollEvent(key, id, "api", ref, now))
	}
	if len(bad) > 0 {
		c.JSON(http.StatusBadRequest, gin.H{"errors": bad})
		return
	}
	accepted, duplicates, err := h.cfg.Ingestor.Ingest(ctx, evs...)
	if err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"journey": key, "accepted": accepted, "duplicates": duplicates})
	h.audit(c, AuditJourneyEnroll, key, gin.H{"request_id": id, "members": len(evs), "accepted": accepted, "duplicates": duplicates})
}

// enrollEvent is the journey.enroll event that enters the member ref into
// the journey with key, for request id, made by "api" or "console": the
// router enters the member as the journey's entry rules allow.
func enrollEvent(key, id, by string, ref model.MemberRef, now time.Time) *model.Event {
	ev := &model.Event{Type: events.JourneyEnroll, Source: events.Engine{}.Name(), Member: ref,
		Props: map[string]any{"journey": key, "by": by}, At: now,
		DedupeKey: fmt.Sprintf("enroll:%s:%s:%s", key, id, ref.Key())}
	sum := sha256.Sum256([]byte(ev.DedupeKey))
	ev.PayloadHash = hex.EncodeToString(sum[:])
	return ev
}
