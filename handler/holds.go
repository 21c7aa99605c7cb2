package handler

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/redact"
)

// QuotaHolds lists and ends the holds of provider APIs whose daily quota
// is spent: *channels.Holds is one.
type QuotaHolds interface {
	List(ctx context.Context, now time.Time) ([]channels.Hold, error)
	Release(ctx context.Context, key string) error
}

// holdRoutes adds the quota-hold routes to the admin API group.
func (h *Handler) holdRoutes(api gin.IRoutes) {
	if h.cfg.Holds == nil {
		return
	}
	api.GET("/channels/holds", h.listHolds)
	api.DELETE("/channels/holds/*key", h.releaseHold) // WeCom keys hold a "/"
}

// listHolds answers {"holds": [...]}: the APIs held until their quota resets.
func (h *Handler) listHolds(c *gin.Context) {
	holds, err := h.cfg.Holds.List(c.Request.Context(), h.now())
	if err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": redact.String(err.Error())})
		return
	}
	if holds == nil {
		holds = []channels.Hold{}
	}
	c.JSON(http.StatusOK, gin.H{"holds": holds})
}

// releaseHold ends a hold early: 204.
func (h *Handler) releaseHold(c *gin.Context) {
	if err := h.cfg.Holds.Release(c.Request.Context(), strings.TrimPrefix(c.Param("key"), "/")); err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": redact.String(err.Error())})
		return
	}
	c.Status(http.StatusNoContent)
}
