package handler

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/model"
)

// navItem is one link of the console's navigation.
type navItem struct{ ID, Path string }

// consoleNav is the console's navigation, in order.
var consoleNav = []navItem{
	{"dashboard", "/admin/"}, {"journeys", "/admin/journeys"}, {"members", "/admin/members"},
	{"deliveries", "/admin/deliveries"}, {"accounts", "/admin/accounts"}, {"qrcodes", "/admin/qrcodes"},
	{"users", "/admin/users"}, {"audit", "/admin/audit"},
}

// consoleFuncs are the templates' functions.
var consoleFuncs = template.FuncMap{
	// when shows a time in China time with its zone.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(chinaTime).Format("2006-01-02 15:04:05") + " CST"
	},
	// msgid is the message id of a code: msgid "act_" "journey.publish"
	// is act_journey_publish.
	"msgid":        func(prefix, code string) string { return prefix + strings.ReplaceAll(code, ".", "_") },
	"roles":        func() []string { return model.Roles },
	"navItems":     func() []navItem { return consoleNav },
	"auditActions": func() []string { return AuditActions },
}

// requireUser admits a signed-in, enabled user to the console's pages and
// puts it in the context; others go to the sign-in page.
func (a *Admin) requireUser(c *gin.Context) {
	u, err := a.signedIn(c)
	if err != nil {
		a.log.Error("checking admin session", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		c.Abort()
		return
	}
	if u.Username == "" {
		c.Redirect(http.StatusFound, "/admin/login")
		c.Abort()
		return
	}
	c.Set(ctxUser, u)
	c.Next()
}

// userDone are the confirmations the users page shows after a change
// (?done=).
var userDone = map[string]bool{"user_added": true, "role_changed": true, "password_reset": true,
	"user_disabled": true, "user_enabled": true, "user_removed": true}

// usersPage serves GET /admin/users.
func (a *Admin) usersPage(c *gin.Context) {
	data := map[string]any{}
	if d := c.Query("done"); userDone[d] {
		data["Done"] = a.catalog.T(a.lang(c), "done_"+d, nil)
	}
	a.renderUsers(c, http.StatusOK, data)
}

func (a *Admin) renderUsers(c *gin.Context, status int, data map[string]any) {
	us, err := model.ListAdminUsers(c.Request.Context(), a.cfg.DB)
	if err != nil {
		a.log.Error("listing users", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	data["Users"], data["Nav"] = us, "users"
	a.render(c, status, "users.html", data)
}

// userError answers a refused user change on the users page.
func (a *Admin) userError(c *gin.Context, err error) {
	status, msg := http.StatusServiceUnavailable, "db_error"
	switch {
	case errors.Is(err, model.ErrLastAdmin):
		status, msg = http.StatusConflict, "err_last_admin"
	case errors.Is(err, model.ErrUserExists):
		status, msg = http.StatusConflict, "err_user_exists"
	case errors.Is(err, model.ErrNoUser):
		status, msg = http.StatusNotFound, "err_no_user"
	case errors.Is(err, model.ErrBadRole):
		status, msg = http.StatusBadRequest, "err_bad_role"
	case errors.Is(err, errBadUsername):
		status, msg = http.StatusBadRequest, "err_bad_username"
	case errors.Is(err, errBadPassword):
		status, msg = http.StatusBadRequest, "err_password"
	case errors.Is(err, errNotConfirmed):
		status, msg = http.StatusBadRequest, "err_confirm"
	default:
		a.log.Error("changing a user", "err", err)
	}
	a.renderUsers(c, status, map[string]any{"Error": a.catalog.T(a.lang(c), msg, nil)})
}

var (
	errBadUsername  = errors.New("bad username")
	errBadPassword  = errors.New("bad password")
	errNotConfirmed = errors.New("removal not confirmed")
)

// newPasswordHash checks and hashes the form's password.
func newPasswordHash(pw string) (string, error) {
	if err := CheckNewPassword(pw); err != nil {
		return "", errBadPassword
	}
	hash, err := HashPassword(pw)
	if err != nil {
		return "", errBadPassword
	}
	return hash, nil
}

// addUser serves POST /admin/users: username, role, password.
func (a *Admin) addUser(c *gin.Context) {
	name, role := strings.TrimSpace(c.PostForm("username")), c.PostForm("role")
	if model.CheckUsername(name) != nil {
		a.userError(c, errBadUsername)
		return
	}
	if model.RoleRank(role) == 0 {
		a.userError(c, model.ErrBadRole)
		return
	}
	hash, err := newPasswordHash(c.PostForm("password"))
	if err != nil {
		a.userError(c, err)
		return
	}
	if _, err := model.CreateAdminUser(c.Request.Context(), a.cfg.DB, name, hash, role); err != nil {
		a.userError(c, err)
		return
	}
	a.audit(c, AuditUserAdd, name, gin.H{"role": role})
	c.Redirect(http.StatusSeeOther, "/admin/users?done=user_added")
}

// changeUser serves POST /admin/users/{role,password,disable,enable,remove}
// for the form's username.
func (a *Admin) changeUser(c *gin.Context) {
	ctx, db, name := c.Request.Context(), a.cfg.DB, c.PostForm("username")
	var (
		before model.AdminUser
		err    error
		action string
		done   string
		detail = gin.H{}
	)
	switch op := c.Param("op"); op {
	case "role":
		role := c.PostForm("role")
		before, err = model.SetUserRole(ctx, db, name, role)
		action, done, detail["from"], detail["to"] = AuditUserRole, "role_changed", before.Role, role
	case "password":
		var hash string
		if hash, err = newPasswordHash(c.PostForm("password")); err == nil {
			before, err = model.SetUserPassword(ctx, db, name, hash)
		}
		action, done = AuditUserPassword, "password_reset"
	case "disable":
		before, err = model.SetUserDisabled(ctx, db, name, time.Now())
		action, done = AuditUserDisable, "user_disabled"
	case "enable":
		before, err = model.SetUserDisabled(ctx, db, name, time.Time{})
		action, done = AuditUserEnable, "user_enabled"
	case "remove":
		if c.PostForm("confirm") != "yes" {
			a.userError(c, errNotConfirmed)
			return
		}
		before, err = model.RemoveAdminUser(ctx, db, name)
		action, done, detail["role"] = AuditUserRemove, "user_removed", before.Role
	default:
		c.Status(http.StatusNotFound)
		return
	}
	if err != nil {
		a.userError(c, err)
		return
	}
	a.audit(c, action, name, detail)
	c.Redirect(http.StatusSeeOther, "/admin/users?done="+done)
}

// auditPageSize is how many entries the audit page shows at once.
const auditPageSize = 50

// auditPage serves GET /admin/audit?user=&action=&before=.
func (a *Admin) auditPage(c *gin.Context) {
	q := auditQuery(c, auditPageSize)
	q.Limit = auditPageSize
	es, err := model.AuditLog(c.Request.Context(), a.cfg.DB, q)
	if err != nil {
		a.log.Error("reading the audit log", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	data := map[string]any{"Nav": "audit", "Entries": es, "Filter": q}
	if len(es) == auditPageSize {
		v := url.Values{"before": {strconv.FormatInt(es[len(es)-1].ID, 10)}}
		if q.Actor != "" {
			v.Set("user", q.Actor)
		}
		if q.Action != "" {
			v.Set("action", q.Action)
		}
		data["Older"] = "/admin/audit?" + v.Encode()
	}
	a.render(c, http.StatusOK, "audit.html", data)
}
