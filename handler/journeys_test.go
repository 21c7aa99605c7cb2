package handler

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// TestJourneyLifecycleAPI: the admin API publishes a journey's YAML (the
// engine's messages when it is refused), pauses, resumes and archives it;
// an unknown key is 404, a transition its status forbids 409. The steps
// run in order on one database: each acts on what the earlier ones left.
func TestJourneyLifecycleAPI(t *testing.T) {
	t.Parallel()
	// The engine's checks: wechat.text has a sender, sms none.
	reg := channels.NewRegistry()
	reg.Register(channels.WeChatText, channels.SenderFunc(func(context.Context, channels.Message) (channels.Result, error) {
		return channels.Result{}, nil
	}), channels.Capabilities{Address: channels.ByOpenID})
	var eng *journey.Engine
	api := newAdminAPI(t, func(db *gorm.DB) {
		eng = journey.New(journey.Config{DB: db, Senders: reg, Logger: slog.New(slog.DiscardHandler)})
	}, func(cfg *Config) { cfg.Journeys = eng })
	h, db := api.h, api.db

	const welcome = "key: welcome\nname: Welcome\ntrigger: { event: wechat.subscribe }\nsteps:\n  - { id: pause, wait: 1h, next: hello }\n  - { id: hello, send: { channel: wechat.text, text: %s } }\n"
	v1 := strings.Replace(welcome, "%s", "hi", 1)
	v2 := strings.Replace(welcome, "%s", "hello", 1)
	for _, tc := range []struct {
		name, path, body, key string
		status                int
		want                  map[string]any // fields of the JSON answer
		in                    []string       // substrings of the answer
	}{
		{name: "no key", path: "/api/v1/journeys/welcome/publish", body: v1, status: 401},
		{name: "events key", path: "/api/v1/journeys/welcome/pause", key: "ev-key", status: 403},
		{name: "publish", path: "/api/v1/journeys/welcome/publish", body: v1, key: "adm-key", status: 200,
			want: map[string]any{"key": "welcome", "name": "Welcome", "status": "active", "version": 1.0, "published": true, "active": 0.0}},
		{name: "publish the same source", path: "/api/v1/journeys/welcome/publish", body: v1, key: "adm-key", status: 200,
			want: map[string]any{"status": "active", "version": 1.0, "published": false}},
		{name: "publish a refused journey", path: "/api/v1/journeys/welcome/publish", key: "adm-key", status: 400,
			body: "key: welcome\ntrigger: { event: wechat.subscribe }\nsteps:\n  - { id: a, update: { add_tags: [x] }, next: b }\n  - { id: b, branch: [ { next: a } ] }\n",
			want: map[string]any{"error": "invalid journey"},
			in:   []string{`"problems":["welcome.yaml:4: step \"a\": loop \"a\" → \"b\" → \"a\" has no wait or wait_for step`}},
		{name: "publish a channel nobody serves", path: "/api/v1/journeys/welcome/publish", key: "adm-key", status: 400,
			body: strings.Replace(v1, "wechat.text", "sms", 1), in: []string{`step \"hello\"`, "sms"}},
		{name: "publish under another key", path: "/api/v1/journeys/other/publish", body: v1, key: "adm-key", status: 400,
			in: []string{`key \"welcome\" is not the journey published (\"other\")`}},
		{name: "publish nothing", path: "/api/v1/journeys/welcome/publish", key: "adm-key", status: 400, in: []string{"empty"}},
		{name: "pause an unknown journey", path: "/api/v1/journeys/nope/pause", key: "adm-key", status: 404, in: []string{"no journey with key nope"}},
		{name: "pause", path: "/api/v1/journeys/welcome/pause", key: "adm-key", status: 200,
			want: map[string]any{"key": "welcome", "status": "paused", "paused_reason": "operator", "version": 1.0}},
		{name: "publish while paused", path: "/api/v1/journeys/welcome/publish", body: v2, key: "adm-key", status: 200,
			want: map[string]any{"status": "paused", "version": 2.0, "published": true}},
		{name: "resume", path: "/api/v1/journeys/welcome/resume", key: "adm-key", status: 200,
			want: map[string]any{"status": "active", "version": 2.0}},
		{name: "resume an active journey", path: "/api/v1/journeys/welcome/resume", key: "adm-key", status: 200,
			want: map[string]any{"status": "active"}},
		{name: "archive", path: "/api/v1/journeys/welcome/archive", key: "adm-key", status: 200,
			want: map[string]any{"status": "archived", "version": 2.0}},
		{name: "resume an archived journey", path: "/api/v1/journeys/welcome/resume", key: "adm-key", status: 409,
			in: []string{"archived and cannot be resumed"}},
		{name: "pause an archived journey", path: "/api/v1/journeys/welcome/pause", key: "adm-key", status: 409},
		{name: "archive an unknown journey", path: "/api/v1/journeys/nope/archive", key: "adm-key", status: 404},
		{name: "resume an unknown journey", path: "/api/v1/journeys/nope/resume", key: "adm-key", status: 404},
		{name: "a new version starts an archived journey again", path: "/api/v1/journeys/welcome/publish", body: v1, key: "adm-key", status: 200,
			want: map[string]any{"status": "active", "version": 3.0, "published": true}},
	} {
		req := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/yaml")
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, rec.Code, tc.status, body)
			continue
		}
		var got map[string]any
		if tc.want != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Errorf("%s: answer is not JSON: %s", tc.name, body)
				continue
			}
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %q is %v, want %v: %s", tc.name, k, got[k], v, body)
			}
		}
		for _, s := range tc.in {
			if !strings.Contains(body, s) {
				t.Errorf("%s: answer lacks %s: %s", tc.name, s, body)
			}
		}
	}
	var j model.Journey
	if err := db.Where(&model.Journey{Key: "welcome"}).First(&j).Error; err != nil || j.Status != model.JourneyActive {
		t.Errorf("the journey at the end: %+v, %v; want active", j, err)
	}
	var v model.JourneyVersion
	if err := db.First(&v, j.CurrentVersionID).Error; err != nil || v.Origin != journey.OriginAPI || v.Version != 3 {
		t.Errorf("its live version: %+v, %v; want version 3 from the API", v, err)
	}
}
