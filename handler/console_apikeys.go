package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// EnvAPIKeyName names the API key that WEJOURNEY_API_KEY sets: no other
// key may take it.
const EnvAPIKeyName = "WEJOURNEY_API_KEY"

// Errors of CreateAPIKey and RevokeAPIKey.
var (
	// ErrAPIKeyName: a key's name has 1 to 128 characters and is not
	// EnvAPIKeyName.
	ErrAPIKeyName = errors.New("an API key's name has 1 to 128 characters and is not " + EnvAPIKeyName)
	// ErrAPIKeyScope: a key's scope is model.ScopeEvents or model.ScopeAdmin.
	ErrAPIKeyScope = errors.New("an API key's scope is events or admin")
	// ErrNoAPIKey: no key has the id.
	ErrNoAPIKey = errors.New("no such API key")
)

// CreateAPIKey makes a key named name with scope and stores its hash and
// prefix: the key itself is returned once and kept nowhere. The CLI
// (`wejourney apikeys create`), the console and POST /api/v1/apikeys
// create keys with it.
func CreateAPIKey(ctx context.Context, db *gorm.DB, name, scope string, now time.Time) (string, model.APIKey, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 || name == EnvAPIKeyName {
		return "", model.APIKey{}, ErrAPIKeyName
	}
	if scope != model.ScopeEvents && scope != model.ScopeAdmin {
		return "", model.APIKey{}, fmt.Errorf("%w, not %q", ErrAPIKeyScope, scope)
	}
	key, err := NewAPIKey()
	if err != nil {
		return "", model.APIKey{}, err
	}
	k := model.APIKey{Name: name, Hash: HashAPIKey(key), Scope: scope, Prefix: KeyPrefix(key), CreatedAt: now.UTC()}
	if err := db.WithContext(ctx).Create(&k).Error; err != nil {
		return "", model.APIKey{}, fmt.Errorf("store api key: %w", err)
	}
	return key, k, nil
}

// RevokeAPIKey revokes the key with id: requests with it get 401 from
// then on. It returns the key as it was before, so a key revoked already
// has RevokedAt set (and is left as it was); an unknown id is ErrNoAPIKey.
func RevokeAPIKey(ctx context.Context, db *gorm.DB, id int64, now time.Time) (model.APIKey, error) {
	db = db.WithContext(ctx)
	var k model.APIKey
	if err := db.Take(&k, id).Error; errors.Is(err, gorm.ErrRecordNotFound) {
		return model.APIKey{}, fmt.Errorf("%w: id %d", ErrNoAPIKey, id)
	} else if err != nil {
		return model.APIKey{}, fmt.Errorf("load api key: %w", err)
	}
	if k.RevokedAt != nil {
		return k, nil
	}
	if err := db.Model(&model.APIKey{}).Where("id = ? AND revoked_at IS NULL", k.ID).Update("revoked_at", now.UTC()).Error; err != nil {
		return model.APIKey{}, fmt.Errorf("revoke api key: %w", err)
	}
	return k, nil
}

// ListAPIKeys returns every API key (never a key itself: names, scopes,
// prefixes and times), oldest first.
func ListAPIKeys(ctx context.Context, db *gorm.DB) ([]model.APIKey, error) {
	var keys []model.APIKey
	if err := db.WithContext(ctx).Order("id").Find(&keys).Error; err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// APIKeyRow is one API key as GET /api/v1/apikeys answers it.
type APIKeyRow struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Scope      string     `json:"scope"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

func apiKeyRow(k model.APIKey) APIKeyRow {
	return APIKeyRow{ID: k.ID, Name: k.Name, Scope: k.Scope, Prefix: k.Prefix, CreatedAt: k.CreatedAt,
		LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt}
}

// apiKeyRoutes adds the API keys' routes: the console's page and forms,
// and the admin API's (all admin only, see routeRoles).
func (a *Admin) apiKeyRoutes(console, api gin.IRoutes) {
	console.GET("/apikeys", a.apiKeysPage)
	console.POST("/apikeys", a.createAPIKeyForm)
	console.POST("/apikeys/:id/revoke", a.revokeAPIKeyForm)
	api.GET("/apikeys", a.listAPIKeys)
	api.POST("/apikeys", a.createAPIKey)
	api.POST("/apikeys/:id/revoke", a.revokeAPIKey)
}

// listAPIKeys serves GET /api/v1/apikeys.
func (a *Admin) listAPIKeys(c *gin.Context) {
	keys, err := ListAPIKeys(c.Request.Context(), a.cfg.DB)
	if err != nil {
		a.log.Error("listing api keys", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
		return
	}
	rows := make([]APIKeyRow, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, apiKeyRow(k))
	}
	c.JSON(http.StatusOK, gin.H{"api_keys": rows})
}

// createAPIKey serves POST /api/v1/apikeys {"name", "scope"}: 201 with
// the key, shown this once.
func (a *Admin) createAPIKey(c *gin.Context) {
	var req struct {
		Name  string `json:"name"`
		Scope string `json:"scope"`
	}
	if !bindJSON(c, &req) {
		return
	}
	if req.Scope == "" {
		req.Scope = model.ScopeEvents
	}
	key, k, err := CreateAPIKey(c.Request.Context(), a.cfg.DB, req.Name, req.Scope, a.cfg.Now())
	switch {
	case errors.Is(err, ErrAPIKeyName), errors.Is(err, ErrAPIKeyScope):
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	case err != nil:
		a.log.Error("creating an api key", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
		return
	}
	a.audit(c, AuditAPIKeyCreate, k.Name, gin.H{"api_key_id": k.ID, "scope": k.Scope, "prefix": k.Prefix})
	c.JSON(http.StatusCreated, gin.H{"key": key, "api_key": apiKeyRow(k)})
}

// revokeAPIKey serves POST /api/v1/apikeys/{id}/revoke.
func (a *Admin) revokeAPIKey(c *gin.Context) {
	id, _ := strconv.ParseInt(c.Param("id"), 10, 64)
	k, was, err := a.revoke(c, id)
	switch {
	case errors.Is(err, ErrNoAPIKey):
		c.JSON(http.StatusNotFound, gin.H{"error": err.Error()})
	case err != nil:
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
	default:
		c.JSON(http.StatusOK, gin.H{"revoked": true, "already": was, "api_key": apiKeyRow(k)})
	}
}

// revoke revokes key id, auditing it unless it was revoked already
// (was), and returns it as it is now.
func (a *Admin) revoke(c *gin.Context, id int64) (k model.APIKey, was bool, err error) {
	k, err = RevokeAPIKey(c.Request.Context(), a.cfg.DB, id, a.cfg.Now())
	if err != nil {
		if !errors.Is(err, ErrNoAPIKey) {
			a.log.Error("revoking an api key", "id", id, "err", err)
		}
		return k, false, err
	}
	if k.RevokedAt != nil {
		return k, true, nil
	}
	a.audit(c, AuditAPIKeyRevoke, k.Name, gin.H{"api_key_id": k.ID, "scope": k.Scope})
	now := a.cfg.Now().UTC()
	k.RevokedAt = &now
	return k, false, nil
}

// apiKeysPage serves GET /admin/apikeys.
func (a *Admin) apiKeysPage(c *gin.Context) {
	data := map[string]any{}
	if c.Query("done") == "revoked" {
		data["Done"] = a.catalog.T(a.lang(c), "apikeys_done_revoked", nil)
	}
	a.renderAPIKeys(c, http.StatusOK, data)
}

func (a *Admin) renderAPIKeys(c *gin.Context, status int, data map[string]any) {
	keys, err := ListAPIKeys(c.Request.Context(), a.cfg.DB)
	if err != nil {
		a.log.Error("listing api keys", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	data["Keys"], data["Nav"] = keys, "accounts"
	a.render(c, status, "apikeys.html", data)
}

// createAPIKeyForm serves POST /admin/apikeys (name, scope): the page
// again, showing the new key this once.
func (a *Admin) createAPIKeyForm(c *gin.Context) {
	l := a.lang(c)
	key, k, err := CreateAPIKey(c.Request.Context(), a.cfg.DB, c.PostForm("name"), c.PostForm("scope"), a.cfg.Now())
	switch {
	case errors.Is(err, ErrAPIKeyName):
		a.renderAPIKeys(c, http.StatusBadRequest, map[string]any{"Error": a.catalog.T(l, "apikeys_err_name", nil)})
		return
	case errors.Is(err, ErrAPIKeyScope):
		a.renderAPIKeys(c, http.StatusBadRequest, map[string]any{"Error": a.catalog.T(l, "apikeys_err_scope", nil)})
		return
	case err != nil:
		a.log.Error("creating an api key", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	a.audit(c, AuditAPIKeyCreate, k.Name, gin.H{"api_key_id": k.ID, "scope": k.Scope, "prefix": k.Prefix})
	c.Header("Cache-Control", "no-store")
	a.renderAPIKeys(c, http.StatusCreated, map[string]any{"NewKey": key, "NewName": k.Name})
}

// revokeAPIKeyForm serves POST /admin/apikeys/{id}/revoke (confirm=yes).
func (a *Admin) revokeAPIKeyForm(c *gin.Context) {
	l := a.lang(c)
	if c.PostForm("confirm") != "yes" {
		a.renderAPIKeys(c, http.StatusBadRequest, map[string]any{"Error": a.catalog.T(l, "apikeys_err_confirm", nil)})
		return
	}
	id, _ := strconv.ParseInt(c.Param("id"), 10, 64)
	if _, _, err := a.revoke(c, id); errors.Is(err, ErrNoAPIKey) {
		a.renderAPIKeys(c, http.StatusNotFound, map[string]any{"Error": a.catalog.T(l, "apikeys_err_none", nil)})
		return
	} else if err != nil {
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/apikeys?done=revoked")
}
