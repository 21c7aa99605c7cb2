package handler

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// POST /api/v1/journeys/{key}/test walks a journey for one member and
// answers the path and the rendered messages; nothing is sent or recorded.
func TestJourneyTestRunAPI(t *testing.T) {
	t.Parallel()
	const welcome = `
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: "欢迎 {{ .member.nickname }} 来自 {{ .event.scene }}" }, next: ask }
  - { id: ask, wait_for: { event: form.submitted, timeout: 1h }, next: thanks }
  - { id: thanks, send: { channel: wechat.text, text: 谢谢 } }
`
	tests := []struct {
		name, key, body string
		auth            bool
		wantStatus      int
		wantIn          []string
	}{
		{name: "the published version, by openid", key: "welcome", auth: true, wantStatus: http.StatusOK,
			body:   `{"member": {"openid": "o1"}, "event": {"type": "wechat.subscribe", "props": {"scene": "store_001"}}}`,
			wantIn: []string{`"journey":"welcome"`, `"version":1`, `"text":"欢迎 小王 来自 store_001"`, `"outcome":"timeout"`, `"end":"timeout"`}},
		{name: "events while waiting: the wait_for matches", key: "welcome", auth: true, wantStatus: http.StatusOK,
			body:   `{"member_id": 1, "events": [{"type": "form.submitted"}]}`,
			wantIn: []string{`"outcome":"matched"`, `"text":"谢谢"`, `"end":"completed"`}},
		{name: "a draft in the body", key: "welcome", auth: true, wantStatus: http.StatusOK,
			body:   `{"member_id": 1, "yaml": "key: welcome\ntrigger: { event: wechat.subscribe }\nsteps: [ { id: only, send: { channel: wechat.text, text: draft } } ]\n"}`,
			wantIn: []string{`"version":0`, `"text":"draft"`}},
		{name: "an invalid draft gets the engine's messages", key: "welcome", auth: true, wantStatus: http.StatusBadRequest,
			body:   `{"member_id": 1, "yaml": "key: welcome\ntrigger: { event: wechat.subscribe }\nsteps: [ { id: only, send: { channel: pigeon } } ]\n"}`,
			wantIn: []string{`pigeon`}},
		{name: "unknown journey", key: "nope", auth: true, wantStatus: http.StatusNotFound, body: `{"member_id": 1}`, wantIn: []string{`no journey \"nope\"`}},
		{name: "unknown member", key: "welcome", auth: true, wantStatus: http.StatusNotFound, body: `{"member": {"openid": "nobody"}}`, wantIn: []string{"no such member"}},
		{name: "no member named", key: "welcome", auth: true, wantStatus: http.StatusNotFound, body: `{}`, wantIn: []string{"name the member"}},
		{name: "without the admin key", key: "welcome", wantStatus: http.StatusUnauthorized, body: `{"member_id": 1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var e *journey.Engine
			api := newAdminAPI(t, func(db *gorm.DB) {
				db.Create(&model.Member{OpenID: "o1", AppID: "wx1", Nickname: "小王"})
				e = journey.New(journey.Config{DB: db, Logger: slog.New(slog.DiscardHandler)})
				c, err := e.Parse("welcome.yaml", []byte(welcome))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.Publish(t.Context(), c, "test"); err != nil {
					t.Fatal(err)
				}
			}, func(cfg *Config) { cfg.TestRuns = e })
			h, db := api.h, api.db
			req := httptest.NewRequest(http.MethodPost, "/api/v1/journeys/"+tc.key+"/test", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.auth {
				req.Header.Set("Authorization", "Bearer adm-key")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantStatus, w.Body)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("answer lacks %s:\n%s", s, w.Body)
				}
			}
			var n int64
			db.Model(&model.Delivery{}).Count(&n)
			if n != 0 {
				t.Errorf("a test run recorded %d deliveries", n)
			}
		})
	}
}
