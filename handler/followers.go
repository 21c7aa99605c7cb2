package handler

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/model"
)

// FollowerSyncer imports an Official Account's existing followers in the
// background: *followers.Syncer is one.
type FollowerSyncer interface {
	// Start starts a sync of appid (a new run when restart, else resuming
	// a stopped one) and reports false when one already runs.
	Start(appid string, restart bool) (started bool, err error)
	// Status returns appid's progress, and false when it was never synced.
	Status(ctx context.Context, appid string) (model.FollowerSync, bool, error)
}

// followerSyncJSON is a model.FollowerSync as the admin API shows it.
type followerSyncJSON struct {
	AppID      string     `json:"appid"`
	RunID      string     `json:"run_id"`
	Status     string     `json:"status"`
	Imported   int        `json:"imported"`
	Total      int        `json:"total"`
	NextOpenID string     `json:"next_openid,omitempty"`
	Error      string     `json:"error,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// followerAccount checks that appid names an Official Account, answering
// 400 or 404 (and false) when it does not.
func (h *Handler) followerAccount(c *gin.Context, appid string) bool {
	if appid == "" {
		c.JSON(http.StatusBadRequest, gin.H{"error": "appid is required"})
		return false
	}
	acct, err := h.cfg.Accounts.Get(c.Request.Context(), appid)
	switch {
	case errors.Is(err, model.ErrUnknownAccount):
		c.JSON(http.StatusNotFound, gin.H{"error": "no Official Account with appid " + appid})
		return false
	case err != nil:
		h.log.Error("follower sync: load account", "appid", appid, "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
		return false
	case acct.Kind != "" && acct.Kind != model.AccountWeChatOA:
		c.JSON(http.StatusBadRequest, gin.H{"error": appid + " is not an Official Account"})
		return false
	}
	return true
}

// startFollowerSync answers POST /api/v1/followers/sync {"appid": "wx…",
// "restart": false}: 202 once a background sync started, 409 while one
// runs.
func (h *Handler) startFollowerSync(c *gin.Context) {
	var req struct {
		AppID   string `json:"appid"`
		Restart bool   `json:"restart"`
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 4096)
	if err := c.ShouldBindJSON(&req); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": `want {"appid": "wx…", "restart": false}`})
		return
	}
	if !h.followerAccount(c, req.AppID) {
		return
	}
	started, err := h.cfg.Followers.Start(req.AppID, req.Restart)
	if err != nil {
		h.log.Error("follower sync: start", "appid", req.AppID, "err", err)
		c.JSON(http.StatusInternalServerError, gin.H{"error": "the sync did not start: see the server log"})
		return
	}
	if !started {
		c.JSON(http.StatusConflict, gin.H{"error": "a follower sync of " + req.AppID + " is already running"})
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"started": true, "appid": req.AppID,
		"status_url": "/api/v1/followers/sync?appid=" + url.QueryEscape(req.AppID)})
}

// followerSyncStatus answers GET /api/v1/followers/sync?appid=wx…: the
// account's progress row, 404 when it was never synced.
func (h *Handler) followerSyncStatus(c *gin.Context) {
	appid := c.Query("appid")
	if !h.followerAccount(c, appid) {
		return
	}
	row, found, err := h.cfg.Followers.Status(c.Request.Context(), appid)
	if err != nil {
		h.log.Error("follower sync: status", "appid", appid, "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
		return
	}
	if !found {
		c.JSON(http.StatusNotFound, gin.H{"error": "no follower sync of " + appid + " yet: POST /api/v1/followers/sync starts one"})
		return
	}
	c.JSON(http.StatusOK, followerSyncJSON{AppID: row.AppID, RunID: row.RunID, Status: row.Status, Imported: row.Imported,
		Total: row.Total, NextOpenID: row.NextOpenID, Error: row.Error, StartedAt: row.StartedAt, UpdatedAt: row.UpdatedAt,
		FinishedAt: row.FinishedAt})
}
