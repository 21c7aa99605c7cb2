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

// send serves one request of sc and checks its answer and the events stored.
func (sc scenario) send(t *testing.T, h http.Handler, db *gorm.DB) {
	t.Helper()
	req := httptest.NewRequest(sc.method, sc.url, strings.NewReader(sc.body))
	for k, v := range sc.headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != sc.wantStatus {
		t.Errorf("%s: status = %d, want %d; body %s", sc.name, rec.Code, sc.wantStatus, rec.Body)
	}
	for _, s := range sc.wantIn {
		if !strings.Contains(rec.Body.String(), s) {
			t.Errorf("%s: body %q does not contain %q", sc.name, rec.Body, s)
		}
	}
	if sc.wantEvents >= 0 {
		var n int64
		db.Model(&model.Event{}).Count(&n)
		if n != sc.wantEvents {
			t.Errorf("%s: events stored = %d, want %d", sc.name, n, sc.wantEvents)
		}
	}
}

// runScenarios sends scenarios in order on one handler: the steps of one
// story, each depending on the ones before.
func runScenarios(t *testing.T, h http.Handler, db *gorm.DB, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		sc.send(t, h, db)
	}
}

// story is a subtest on its own fresh router: given runs first (each
// checked), then the scenario under test.
type story struct {
	given []scenario
	scenario
}

// runStories runs each story as a parallel subtest on a fresh router, so
// any one runs alone with -run.
func runStories(t *testing.T, stories []story) {
	t.Helper()
	for _, st := range stories {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			h, db := newTestRouter(t)
			runScenarios(t, h, db, append(st.given, st.scenario))
		})
	}
}

func TestEventsAPI(t *testing.T) {
	t.Parallel()
	auth := map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/json"}
	one := `{"id":"e1","type":"form.submitted","member":{"openid":"o1","appid":"wx1"},"props":{"form":"bind","phone":"13800000000"},"at":"2026-11-23T10:00:00+08:00"}`
	var many []string
	for i := range 3 {
		many = append(many, `{"id":"b`+string(rune('0'+i))+`","type":"order.paid","member":{"phone":"1380000000`+string(rune('0'+i))+`"}}`)
	}
	stored := []scenario{{"store e1", "POST", "/api/v1/events", one, auth, 202, []string{`"accepted":1`}, 1}}
	runStories(t, []story{
		{nil, scenario{"no api key", "POST", "/api/v1/events", one, nil, 401, []string{"Bearer"}, 0}},
		{nil, scenario{"wrong api key", "POST", "/api/v1/events", one, map[string]string{"Authorization": "Bearer nope"}, 401, nil, 0}},
		{nil, scenario{"one event", "POST", "/api/v1/events", one, auth, 202, []string{`"accepted":1`, `"duplicates":0`}, 1}},
		{stored, scenario{"the same id again is a duplicate", "POST", "/api/v1/events", one, auth, 202, []string{`"accepted":0`, `"duplicates":1`}, 1}},
		{stored, scenario{"a batch", "POST", "/api/v1/events", `{"events":[` + strings.Join(many, ",") + `]}`, auth, 202, []string{`"accepted":3`}, 4}},
		{nil, scenario{"one bad event rejects the batch", "POST", "/api/v1/events",
			`{"events":[{"id":"c1","type":"x","member":{"email":"a@b.c"}},{"id":"c2","type":"","member":{"email":"a@b.c"}}]}`,
			auth, 400, []string{`"index":1`, "type is required"}, 0}},
		{nil, scenario{"member without identity", "POST", "/api/v1/events", `{"type":"x","member":{}}`, auth, 400, []string{"member needs"}, 0}},
		{nil, scenario{"openid without appid", "POST", "/api/v1/events", `{"type":"x","member":{"openid":"o"}}`, auth, 400, []string{"appid"}, 0}},
		{nil, scenario{"wechat types are reserved", "POST", "/api/v1/events", `{"type":"wechat.subscribe","member":{"openid":"o","appid":"w"}}`, auth, 400, []string{"reserved"}, 0}},
		{nil, scenario{"bad time", "POST", "/api/v1/events", `{"type":"x","member":{"phone":"13800000000"},"at":"yesterday"}`, auth, 400, []string{"RFC 3339"}, 0}},
		{nil, scenario{"not JSON", "POST", "/api/v1/events", `{"type":`, auth, 400, []string{"not JSON"}, 0}},
		{nil, scenario{"too many", "POST", "/api/v1/events", `{"events":[` + strings.Repeat(`{"type":"x","member":{"phone":"1"}},`, 1000) + `{"type":"x","member":{"phone":"1"}}]}`, auth, 400, []string{"1 to 1000"}, 0}},
	})
}

// TestEventsAPIStoresWhatWasPosted: an event is stored with its type,
// member, props and time as posted.
func TestEventsAPIStoresWhatWasPosted(t *testing.T) {
	t.Parallel()
	h, db := newTestRouter(t)
	auth := map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/json"}
	one := `{"id":"e1","type":"form.submitted","member":{"openid":"o1","appid":"wx1"},"props":{"form":"bind","phone":"13800000000"},"at":"2026-11-23T10:00:00+08:00"}`
	scenario{"one event", "POST", "/api/v1/events", one, auth, 202, []string{`"accepted":1`}, 1}.send(t, h, db)
	var ev model.Event
	db.Where("dedupe_key LIKE ?", "%:e1").First(&ev)
	if ev.Type != "form.submitted" || ev.Props["form"] != "bind" || ev.Member.OpenID != "o1" || ev.At.Hour() != 2 {
		t.Errorf("stored event = %+v, want form.submitted from o1 at 02:00 UTC with form=bind", ev)
	}
}

func TestHealthAndUnknownAccount(t *testing.T) {
	t.Parallel()
	unknown := scenario{"callback for an unknown appid", "POST", "/wechat/oa/wxnobody?signature=x&timestamp=1&nonce=2", "<xml/>", nil, 404, nil, 0}
	runStories(t, []story{
		{nil, scenario{"healthz", "GET", "/healthz", "", nil, 200, []string{"ok"}, -1}},
		{nil, scenario{"readyz", "GET", "/readyz", "", nil, 200, []string{`"ready":true`}, -1}},
		{nil, unknown},
		{[]scenario{unknown}, scenario{"metrics count it", "GET", "/metrics", "", nil, 200, []string{`wejourney_callbacks_total{outcome="unknown_account",source="wechat"} 1`}, -1}},
	})
}
