package handler

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

// stubSyncer is a FollowerSyncer that records starts and holds rows.
type stubSyncer struct {
	mu      sync.Mutex
	running map[string]bool
	starts  []string
	rows    map[string]model.FollowerSync
}

func (s *stubSyncer) Start(appid string, restart bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[appid] {
		return false, nil
	}
	s.running[appid] = true
	if restart {
		appid += " restart"
	}
	s.starts = append(s.starts, appid)
	return true, nil
}

func (s *stubSyncer) Status(_ context.Context, appid string) (model.FollowerSync, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[appid]
	return r, ok, nil
}

// TestFollowerSyncAPI: the admin API starts one sync per account at a
// time and shows its progress; unknown accounts and missing appids are
// refused; it needs the admin scope.
func TestFollowerSyncAPI(t *testing.T) {
	t.Parallel()
	app := newAdminApp(t, AdminConfig{})
	if err := model.UpsertAccount(app.db, nil, model.Account{Kind: model.AccountWeChatOA, AppID: "wxoa", Name: "oa"}); err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	stub := &stubSyncer{running: map[string]bool{}, rows: map[string]model.FollowerSync{
		"wxoa": {AppID: "wxoa", RunID: "r1", Status: "failed", Imported: 10000, Total: 25000, NextOpenID: "o9",
			Error: "WeChat's daily API quota is spent (45009); run the sync again tomorrow", StartedAt: started},
	}}
	h := New(Config{DB: app.db, Ingestor: nopStore{}, Accounts: model.NewAccounts(app.db, nil), Admin: app.admin,
		Followers: stub, Logger: slog.New(slog.DiscardHandler)})
	call := func(key, method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	wantStatus(t, "start", call("adm-key", "POST", "/api/v1/followers/sync", `{"appid":"wxoa"}`), 202, `"started":true`, `/api/v1/followers/sync?appid=wxoa`)
	wantStatus(t, "start again", call("adm-key", "POST", "/api/v1/followers/sync", `{"appid":"wxoa","restart":true}`), 409, "already running")
	wantStatus(t, "unknown account", call("adm-key", "POST", "/api/v1/followers/sync", `{"appid":"wxnope"}`), 404, "no Official Account")
	wantStatus(t, "no appid", call("adm-key", "POST", "/api/v1/followers/sync", `{}`), 400, "appid is required")
	wantStatus(t, "not json", call("adm-key", "POST", "/api/v1/followers/sync", `appid=wxoa`), 400, "want {")
	wantStatus(t, "events key", call("ev-key", "POST", "/api/v1/followers/sync", `{"appid":"wxoa"}`), 403, "admin")
	wantStatus(t, "status", call("adm-key", "GET", "/api/v1/followers/sync?appid=wxoa", ""), 200,
		`"status":"failed"`, `"imported":10000`, `"total":25000`, `"run_id":"r1"`, "tomorrow", `"started_at":"2026-11-24T08:00:00Z"`)
	wantStatus(t, "status unknown", call("adm-key", "GET", "/api/v1/followers/sync?appid=wxnope", ""), 404, "no Official Account")
	wantStatus(t, "status no appid", call("adm-key", "GET", "/api/v1/followers/sync", ""), 400, "appid is required")
	if err := model.UpsertAccount(app.db, nil, model.Account{Kind: model.AccountWeChatOA, AppID: "wxnew", Name: "new"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "never synced", call("adm-key", "GET", "/api/v1/followers/sync?appid=wxnew", ""), 404, "no follower sync of wxnew yet")
	if len(stub.starts) != 1 || stub.starts[0] != "wxoa" {
		t.Errorf("starts %v, want one of wxoa", stub.starts)
	}
	// Without a session or key: 401.
	req := httptest.NewRequest("GET", "/api/v1/followers/sync?appid=wxoa", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	wantStatus(t, "anonymous", rec, 401)
}

// nopStore stores nothing.
type nopStore struct{}

func (nopStore) Ingest(context.Context, ...*model.Event) (int, int, error) { return 0, 0, nil }
