package handler

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

const testKey = "key-123"

// newTestRouter returns the real router on a fresh SQLite database.
func newTestRouter(t *testing.T) (http.Handler, *gorm.DB) {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	db.Create(&model.AdminUser{Username: "admin", PasswordHash: string(hash)})
	db.Create(&model.APIKey{Name: "test", Hash: HashAPIKey(testKey)})
	db.Create(&model.Journey{Key: "welcome", Name: "欢迎", Status: model.JourneyActive})
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db})
	t.Cleanup(ing.Close)
	return New(Config{DB: db, Ingestor: ing, Accounts: model.NewAccounts(db, nil),
		Admin: NewAdmin(AdminConfig{DB: db, Secret: []byte("secret")})}), db
}

type scenario struct {
	name       string
	method     string
	url        string
	body       string
	headers    map[string]string
	wantStatus int
	wantIn     []string // substrings of the body
	wantEvents int64    // events stored after the scenario (cumulative), -1 skips
}

func runScenarios(t *testing.T, h http.Handler, db *gorm.DB, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			req := httptest.NewRequest(sc.method, sc.url, strings.NewReader(sc.body))
			for k, v := range sc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != sc.wantStatus {
				t.Errorf("status = %d, want %d; body %s", rec.Code, sc.wantStatus, rec.Body)
			}
			for _, s := range sc.wantIn {
				if !strings.Contains(rec.Body.String(), s) {
					t.Errorf("body %q does not contain %q", rec.Body, s)
				}
			}
			if sc.wantEvents >= 0 {
				var n int64
				db.Model(&model.Event{}).Count(&n)
				if n != sc.wantEvents {
					t.Errorf("events stored = %d, want %d", n, sc.wantEvents)
				}
			}
		})
	}
}

func TestEventsAPI(t *testing.T) {
	h, db := newTestRouter(t)
	auth := map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/json"}
	one := `{"id":"e1","type":"form.submitted","member":{"openid":"o1","appid":"wx1"},"props":{"form":"bind","phone":"13800000000"},"at":"2026-11-23T10:00:00+08:00"}`
	var many []string
	for i := range 3 {
		many = append(many, `{"id":"b`+string(rune('0'+i))+`","type":"order.paid","member":{"phone":"1380000000`+string(rune('0'+i))+`"}}`)
	}
	runScenarios(t, h, db, []scenario{
		{"no api key", "POST", "/api/v1/events", one, nil, 401, []string{"Bearer"}, 0},
		{"wrong api key", "POST", "/api/v1/events", one, map[string]string{"Authorization": "Bearer nope"}, 401, nil, 0},
		{"one event", "POST", "/api/v1/events", one, auth, 202, []string{`"accepted":1`, `"duplicates":0`}, 1},
		{"the same id again is a duplicate", "POST", "/api/v1/events", one, auth, 202, []string{`"accepted":0`, `"duplicates":1`}, 1},
		{"a batch", "POST", "/api/v1/events", `{"events":[` + strings.Join(many, ",") + `]}`, auth, 202, []string{`"accepted":3`}, 4},
		{"one bad event rejects the batch", "POST", "/api/v1/events",
			`{"events":[{"id":"c1","type":"x","member":{"email":"a@b.c"}},{"id":"c2","type":"","member":{"email":"a@b.c"}}]}`,
			auth, 400, []string{`"index":1`, "type is required"}, 4},
		{"member without identity", "POST", "/api/v1/events", `{"type":"x","member":{}}`, auth, 400, []string{"member needs"}, 4},
		{"openid without appid", "POST", "/api/v1/events", `{"type":"x","member":{"openid":"o"}}`, auth, 400, []string{"appid"}, 4},
		{"wechat types are reserved", "POST", "/api/v1/events", `{"type":"wechat.subscribe","member":{"openid":"o","appid":"w"}}`, auth, 400, []string{"reserved"}, 4},
		{"bad time", "POST", "/api/v1/events", `{"type":"x","member":{"phone":"1"},"at":"yesterday"}`, auth, 400, []string{"RFC 3339"}, 4},
		{"not JSON", "POST", "/api/v1/events", `{"type":`, auth, 400, []string{"not JSON"}, 4},
		{"too many", "POST", "/api/v1/events", `{"events":[` + strings.Repeat(`{"type":"x","member":{"phone":"1"}},`, 1000) + `{"type":"x","member":{"phone":"1"}}]}`, auth, 400, []string{"1 to 1000"}, 4},
	})
	var ev model.Event
	db.Where("dedupe_key LIKE ?", "%:e1").First(&ev)
	if ev.Type != "form.submitted" || ev.Props["form"] != "bind" || ev.Member.OpenID != "o1" || ev.At.Hour() != 2 {
		t.Errorf("stored event = %+v, want form.submitted from o1 at 02:00 UTC with form=bind", ev)
	}
}

func TestHealthAndUnknownAccount(t *testing.T) {
	h, db := newTestRouter(t)
	runScenarios(t, h, db, []scenario{
		{"healthz", "GET", "/healthz", "", nil, 200, []string{"ok"}, -1},
		{"readyz", "GET", "/readyz", "", nil, 200, []string{`"ready":true`}, -1},
		{"callback for an unknown appid", "POST", "/wechat/oa/wxnobody?signature=x&timestamp=1&nonce=2", "<xml/>", nil, 404, nil, 0},
		{"metrics count it", "GET", "/metrics", "", nil, 200, []string{`wejourney_callbacks_total{outcome="unknown_account",source="wechat"} 1`}, -1},
	})
}
