package handler

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// APIKeyPrefix starts every generated API key, so a leaked one is recognizable.
const APIKeyPrefix = "wj_"

// apiKeyAuthenticated is set on requests admitted by an API key.
const apiKeyAuthenticated = "api_key_authenticated"

// lastUsedEvery is how often a key's last_used_at is written at most.
const lastUsedEvery = time.Minute

// NewAPIKey returns a new random API key: "wj_" and 43 characters (256 bits).
func NewAPIKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate api key: %w", err)
	}
	return APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// KeyPrefix is the part of a key stored in clear to recognize it in lists:
// the first 8 characters of a generated key ("wj_" and 5 random ones), at
// most a quarter of any other.
func KeyPrefix(key string) string {
	n := 8
	if !strings.HasPrefix(key, APIKeyPrefix) {
		n = min(n, len(key)/4)
	}
	return key[:min(n, len(key))]
}

// apiKeyAuth admits POST /api/v1/events with an unrevoked key of scope events.
func (h *Handler) apiKeyAuth(c *gin.Context) {
	if requireAPIKey(c, h.cfg.DB, h.log, model.ScopeEvents) {
		c.Next()
	}
}

// requireAPIKey checks "Authorization: Bearer <key>": the key must exist,
// not be revoked, and have scope. It answers 401 or 403 and aborts when
// not; otherwise it records the key on the context and returns true.
func requireAPIKey(c *gin.Context, db *gorm.DB, log *slog.Logger, scope string) bool {
	key, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || key == "" {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "missing Authorization: Bearer <api key>"})
		return false
	}
	ctx := c.Request.Context()
	var k model.APIKey
	err := db.WithContext(ctx).Where(&model.APIKey{Hash: HashAPIKey(key)}).Take(&k).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "invalid api key"})
		return false
	}
	if err != nil {
		log.Error("looking up api key", "err", err)
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
		return false
	}
	if k.RevokedAt != nil {
		log.Warn("revoked api key used", "key_id", k.ID, "name", k.Name, "ip", c.ClientIP())
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "api key revoked"})
		return false
	}
	if k.Scope != scope {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": fmt.Sprintf("this api key has scope %q; %s needs scope %q", k.Scope, c.Request.URL.Path, scope)})
		return false
	}
	now := time.Now().UTC()
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) >= lastUsedEvery {
		// The condition keeps concurrent requests to one write a minute.
		err := db.WithContext(ctx).Model(&model.APIKey{}).
			Where("id = ? AND (last_used_at IS NULL OR last_used_at < ?)", k.ID, now.Add(-lastUsedEvery)).
			Update("last_used_at", now).Error
		if err != nil {
			log.Warn("recording api key use", "key_id", k.ID, "err", err)
		}
	}
	c.Set(ctxAPIKeyID, k.ID)
	c.Set(ctxAPIKeyName, k.Name)
	c.Set(apiKeyAuthenticated, true)
	return true
}
