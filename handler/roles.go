package handler

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/model"
)

// routeRoles is the one place that says which console role a route
// behind a session needs, by "METHOD /route/pattern" (gin's full path). A
// route not listed needs RoleViewer to read (GET, HEAD) and RoleAdmin for
// anything else, so a new route that changes something is an admin's
// until it is listed here.
//
// Requests with an API key are not checked here: a key of scope admin
// may call the whole admin API, as before roles (see requireAPIKey).
var routeRoles = map[string]string{
	// Operators run journeys.
	"POST /api/v1/journeys/:key/publish":  model.RoleOperator,
	"POST /api/v1/journeys/:key/pause":    model.RoleOperator,
	"POST /api/v1/journeys/:key/resume":   model.RoleOperator,
	"POST /api/v1/journeys/:key/archive":  model.RoleOperator,
	"POST /api/v1/journeys/:key/enroll":   model.RoleOperator,
	"POST /api/v1/journeys/:key/test":     model.RoleOperator,
	"POST /api/v1/channels/:channel/test": model.RoleOperator,
	"DELETE /api/v1/channels/holds/*key":  model.RoleOperator,
	"POST /api/v1/subscribe-links":        model.RoleOperator,
	"POST /api/v1/qrcodes":                model.RoleOperator,
	"POST /api/v1/contact-ways":           model.RoleOperator,
	"POST /api/v1/followers/sync":         model.RoleOperator,
	// The console's journey page: pause, resume, archive.
	"POST /admin/journeys/:key/pause":   model.RoleOperator,
	"POST /admin/journeys/:key/resume":  model.RoleOperator,
	"POST /admin/journeys/:key/archive": model.RoleOperator,
	// Operators edit, test and publish journeys in the console's editor.
	"POST /admin/journeys/new":           model.RoleOperator,
	"POST /admin/journeys/:key/edit":     model.RoleOperator,
	"POST /admin/journeys/:key/validate": model.RoleOperator,
	"POST /admin/journeys/:key/publish":  model.RoleOperator,
	"POST /admin/journeys/:key/discard":  model.RoleOperator,
	"POST /admin/journeys/:key/test":     model.RoleOperator,
	// Members console: operators enroll and remove; export, erase and the
	// tester mark stay an admin's (not listed).
	"POST /admin/members/:id/enroll": model.RoleOperator,
	"POST /admin/members/:id/remove": model.RoleOperator,
	// The accounts and QR codes pages (console_accounts.go, console_qrcodes.go).
	"POST /admin/accounts/check":       model.RoleOperator,
	"POST /admin/accounts/followers":   model.RoleOperator,
	"POST /admin/accounts/test":        model.RoleOperator,
	"POST /admin/qrcodes":              model.RoleOperator,
	"POST /admin/contact-ways":         model.RoleOperator,
	"POST /admin/deliveries/:id/retry": model.RoleOperator,
	// Admins manage users and read the audit log.
	"GET /api/v1/audit": model.RoleAdmin,
	"GET /admin/users":  model.RoleAdmin,
	"GET /admin/audit":  model.RoleAdmin,
	// API keys are an admin's (console_apikeys.go).
	"GET /admin/apikeys":  model.RoleAdmin,
	"GET /api/v1/apikeys": model.RoleAdmin,
}

// requiredRole is the role a route needs (see routeRoles).
func requiredRole(method, route string) string {
	if r, ok := routeRoles[method+" "+route]; ok {
		return r
	}
	if method == http.MethodGet || method == http.MethodHead {
		return model.RoleViewer
	}
	return model.RoleAdmin
}

// allowed reports whether role may use the route.
func allowed(role, method, route string) bool {
	return model.RoleRank(role) >= model.RoleRank(requiredRole(method, route))
}

// authorize refuses a signed-in user whose role is below the route's
// (routeRoles) with 403: JSON on the API, a page in the console. It runs
// after apiAuth or requireUser, which put the user in the context.
func (a *Admin) authorize(c *gin.Context) {
	if c.GetBool(apiKeyAuthenticated) {
		c.Next()
		return
	}
	u := currentUser(c)
	need := requiredRole(c.Request.Method, c.FullPath())
	if model.RoleRank(u.Role) >= model.RoleRank(need) {
		c.Next()
		return
	}
	a.log.Warn("admin request refused: role too low", "user", u.Username, "role", u.Role, "needs", need,
		"method", c.Request.Method, "path", c.Request.URL.Path, "ip", c.ClientIP())
	if strings.HasPrefix(c.Request.URL.Path, "/api/") {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{
			"error": "you do not have permission: " + c.Request.Method + " " + c.FullPath() + " needs role " + need + ", yours is " + u.Role,
			"role":  u.Role, "needs": need,
		})
		return
	}
	l := a.lang(c)
	msg := a.catalog.T(l, "forbidden", map[string]any{
		"Role": a.catalog.T(l, "role_"+need, nil), "Yours": a.catalog.T(l, "role_"+u.Role, nil)})
	a.render(c, http.StatusForbidden, "error.html", map[string]any{"Message": msg})
	c.Abort()
}
