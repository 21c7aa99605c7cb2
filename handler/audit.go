package handler

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// Context keys of the admin API's caller.
const (
	ctxUser       = "admin_user"   // model.AdminUser of a session
	ctxAPIKeyID   = "api_key_id"   // int64, set by requireAPIKey
	ctxAPIKeyName = "api_key_name" // string, set by requireAPIKey
)

// Audit actions (model.AuditEntry.Action).
const (
	AuditSignIn         = "auth.signin"
	AuditSignInFailed   = "auth.signin_failed"
	AuditSignOut        = "auth.signout"
	AuditUserAdd        = "user.add"
	AuditUserRole       = "user.role"
	AuditUserPassword   = "user.password"
	AuditUserDisable    = "user.disable"
	AuditUserEnable     = "user.enable"
	AuditUserRemove     = "user.remove"
	AuditJourneyPublish = "journey.publish"
	AuditJourneyPause   = "journey.pause"
	AuditJourneyResume  = "journey.resume"
	AuditJourneyArchive = "journey.archive"
	AuditJourneyEnroll  = "journey.enroll"
	AuditJourneyTest    = "journey.test"
	AuditChannelTest    = "channel.test"
	AuditAPIKeyCreate   = "apikey.create"
	AuditAPIKeyRevoke   = "apikey.revoke"
)

// AuditActions are the actions the audit log records, for filters.
var AuditActions = []string{AuditSignIn, AuditSignInFailed, AuditSignOut, AuditUserAdd, AuditUserRole,
	AuditUserPassword, AuditUserDisable, AuditUserEnable, AuditUserRemove, AuditJourneyPublish,
	AuditJourneyPause, AuditJourneyResume, AuditJourneyArchive, AuditJourneyEnroll, AuditJourneyTest,
	AuditChannelTest, AuditAPIKeyCreate, AuditAPIKeyRevoke,
	AuditMemberTester, AuditMemberRemove, AuditMemberExport, AuditMemberErase,
	AuditJourneyDraft, AuditJourneyDraftDiscard, AuditFollowerSync, AuditQRCodeCreate, AuditContactWayCreate,
	AuditDeliveryRetry}

// currentUser is the signed-in user of the request (zero for an API key
// or no session).
func currentUser(c *gin.Context) model.AdminUser {
	u, _ := c.Get(ctxUser)
	au, _ := u.(model.AdminUser)
	return au
}

// recordAudit writes an audit entry for the request: its caller (the
// signed-in user, or the API key by name), the answer's status once
// written, and detail. A failure to write is logged, never answered: the
// action has happened.
func recordAudit(c *gin.Context, db *gorm.DB, log *slog.Logger, now time.Time, action, object string, detail map[string]any) {
	if detail == nil {
		detail = map[string]any{}
	}
	e := model.AuditEntry{At: now, Action: action, Object: object, IP: c.ClientIP(), Via: model.ViaSession}
	if c.GetBool(apiKeyAuthenticated) {
		e.Via, e.Actor, e.Role = model.ViaAPIKey, c.GetString(ctxAPIKeyName), model.ScopeAdmin
		detail["api_key_id"] = c.GetInt64(ctxAPIKeyID)
	} else {
		u := currentUser(c)
		e.Actor, e.Role = u.Username, u.Role
	}
	if c.Writer.Written() {
		detail["status"] = c.Writer.Status()
	}
	if b, err := json.Marshal(detail); err == nil {
		e.Detail = string(b)
	}
	if err := model.RecordAudit(c.Request.Context(), db, e); err != nil {
		log.Error("writing the audit log", "action", action, "object", object, "err", err)
	}
}

// audit records an admin API action in the audit log (see recordAudit).
func (h *Handler) audit(c *gin.Context, action, object string, detail gin.H) {
	recordAudit(c, h.cfg.DB, h.log, h.now(), action, object, detail)
}

// audit records a console action in the audit log (see recordAudit).
func (a *Admin) audit(c *gin.Context, action, object string, detail gin.H) {
	recordAudit(c, a.cfg.DB, a.log, a.cfg.Now(), action, object, detail)
}

// AuditRow is one audit entry as GET /api/v1/audit answers it; Detail is
// the entry's JSON object.
type AuditRow struct {
	ID     int64           `json:"id"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Via    string          `json:"via"`
	Role   string          `json:"role,omitempty"`
	Action string          `json:"action"`
	Object string          `json:"object,omitempty"`
	Detail json.RawMessage `json:"detail,omitempty"`
	IP     string          `json:"ip,omitempty"`
}

// auditQuery reads ?user=, ?action=, ?before= and ?limit=.
func auditQuery(c *gin.Context, limit int) model.AuditQuery {
	q := model.AuditQuery{Actor: c.Query("user"), Action: c.Query("action"), Limit: limit}
	q.Before, _ = strconv.ParseInt(c.Query("before"), 10, 64)
	if n, err := strconv.Atoi(c.Query("limit")); err == nil && n > 0 {
		q.Limit = min(n, 1000)
	}
	return q
}

// listAudit serves GET /api/v1/audit?user=&action=&before=&limit=: the
// audit log, newest first; "next_before" pages on.
func (a *Admin) listAudit(c *gin.Context) {
	es, err := model.AuditLog(c.Request.Context(), a.cfg.DB, auditQuery(c, 100))
	if err != nil {
		a.log.Error("reading the audit log", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
		return
	}
	rows := make([]AuditRow, 0, len(es))
	for _, e := range es {
		r := AuditRow{ID: e.ID, At: e.At.In(chinaTime), Actor: e.Actor, Via: e.Via, Role: e.Role, Action: e.Action, Object: e.Object, IP: e.IP}
		if json.Valid([]byte(e.Detail)) {
			r.Detail = json.RawMessage(e.Detail)
		}
		rows = append(rows, r)
	}
	out := gin.H{"entries": rows}
	if len(rows) > 0 {
		out["next_before"] = rows[len(rows)-1].ID
	}
	c.JSON(http.StatusOK, out)
}
