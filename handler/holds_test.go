package handler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/channels"
)

// The admin API lists the quota holds in force and ends one early; WeCom
// keys, which hold a "/", are released as they are.
func TestQuotaHoldsAPI(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	holds := channels.NewHolds(rdb)
	now := time.Now()
	ctx := t.Context()
	holds.Hold(ctx, "wechat:wx1:custom", now.Add(time.Hour), now, "api freq out of limit")
	holds.Hold(ctx, "wecom:ww1/1000002:message_send", now.Add(time.Hour), now, "api freq out of limit")
	h := newAdminAPI(t, nil, func(cfg *Config) { cfg.Holds = holds }).h
	do := func(method, path, key string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	if status, _ := do(http.MethodGet, "/api/v1/channels/holds", ""); status != http.StatusUnauthorized {
		t.Errorf("without a key: %d, want 401", status)
	}
	status, body := do(http.MethodGet, "/api/v1/channels/holds", "adm-key")
	if status != http.StatusOK || !strings.Contains(body, `"key":"wechat:wx1:custom"`) || !strings.Contains(body, `"key":"wecom:ww1/1000002:message_send"`) {
		t.Fatalf("list: %d %s", status, body)
	}
	if status, _ := do(http.MethodDelete, "/api/v1/channels/holds/wecom:ww1/1000002:message_send", "adm-key"); status != http.StatusNoContent {
		t.Fatalf("release: %d, want 204", status)
	}
	status, body = do(http.MethodGet, "/api/v1/channels/holds", "adm-key")
	if status != http.StatusOK || strings.Contains(body, "wecom:") || !strings.Contains(body, "wechat:wx1:custom") {
		t.Fatalf("after release: %d %s", status, body)
	}
}
