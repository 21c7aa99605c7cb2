package handler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// POST /api/v1/journeys/{key}/enroll stores one journey.enroll event a
// member, from the engine's source, for the router to enter them.
func TestEnrollAPI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, body string
		status          string // the journey's
		wantStatus      int
		wantIn          []string
		wantStored      int
	}{
		{name: "a list, by identity and by id (member 1 is o1: named twice, enrolled once)", key: "vip", status: model.JourneyActive, wantStatus: http.StatusAccepted,
			body:   `{"id": "r1", "members": [{"openid": "o1", "appid": "wx1"}, {"member_id": 1}, {"phone": "13800000000"}]}`,
			wantIn: []string{`"accepted":2`, `"duplicates":1`}, wantStored: 2},
		{name: "one member", key: "vip", status: model.JourneyActive, wantStatus: http.StatusAccepted,
			body: `{"member": {"unionid": "u1"}}`, wantIn: []string{`"accepted":1`}, wantStored: 1},
		{name: "a paused journey takes no one", key: "vip", status: model.JourneyPaused, wantStatus: http.StatusConflict,
			body: `{"member": {"unionid": "u1"}}`, wantIn: []string{"is paused"}},
		{name: "unknown journey", key: "nope", status: model.JourneyActive, wantStatus: http.StatusNotFound,
			body: `{"member": {"unionid": "u1"}}`, wantIn: []string{`no journey \"nope\"`}},
		{name: "an openid without its appid, and an unknown id: nothing stored", key: "vip", status: model.JourneyActive, wantStatus: http.StatusBadRequest,
			body: `{"members": [{"unionid": "u1"}, {"openid": "o1"}, {"member_id": 99}]}`, wantIn: []string{`"index":1`, `"index":2`, "no member 99"}},
		{name: "nobody named", key: "vip", status: model.JourneyActive, wantStatus: http.StatusBadRequest, body: `{}`, wantIn: []string{"at least one member"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newAdminAPI(t, func(db *gorm.DB) {
				db.Create(&model.Member{OpenID: "o1", AppID: "wx1"})
				db.Create(&model.Journey{Key: "vip", Name: "vip", Status: tc.status, CurrentVersionID: 1})
			}, nil)
			h, db := api.h, api.db
			req := httptest.NewRequest(http.MethodPost, "/api/v1/journeys/"+tc.key+"/enroll", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer adm-key")
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
			var evs []model.Event
			db.Find(&evs)
			if len(evs) != tc.wantStored {
				t.Fatalf("%d events stored, want %d", len(evs), tc.wantStored)
			}
			for _, ev := range evs {
				if ev.Type != events.JourneyEnroll || ev.Source != "engine" || ev.Props["journey"] != "vip" {
					t.Errorf("stored %s from %s for %v; want journey.enroll from the engine for vip", ev.Type, ev.Source, ev.Props["journey"])
				}
			}
		})
	}
}
