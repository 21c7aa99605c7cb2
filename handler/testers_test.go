package handler

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// testersJourney greets, waits a day and says goodbye: two messages.
const testersJourney = `
key: welcome
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: "欢迎 {{ .member.nickname }} 来自 {{ .event.scene }}" }, next: later }
  - { id: later, wait: 24h, next: bye }
  - { id: bye, send: { channel: wechat.text, text: 再见 } }
`

// testersAPI is an admin API whose test runs send through the WeChat
// sender, on a fake WeChat API: member 1 (o_tester) is a tester, member 2
// (o_member) is not, member 3 (o_refused) is a tester WeChat refuses.
type testersAPI struct {
	adminAPI
	wx *fakewx.Server
}

func newTestersAPI(t *testing.T) testersAPI {
	t.Helper()
	wx := fakewx.New(fakewx.Config{Secrets: map[string]string{codesOA: "oa-secret"}})
	t.Cleanup(wx.Close)
	wx.SetError("o_refused", 45015)
	quiet := slog.New(slog.DiscardHandler)
	reg := channels.NewRegistry()
	reg.Add(wechat.NewSender(wechat.Config{Accounts: codesWX{}, APIBase: wx.URL, Logger: quiet}))
	var e *journey.Engine
	api := newAdminAPI(t, func(db *gorm.DB) {
		for _, m := range []model.Member{
			{OpenID: "o_tester", AppID: codesOA, Nickname: "小王", Tags: []string{"vip", model.TesterTag}},
			{OpenID: "o_member", AppID: codesOA, Nickname: "小李", Tags: []string{"vip"}},
			{OpenID: "o_refused", AppID: codesOA, Tags: []string{model.TesterTag}},
		} {
			if err := db.Create(&m).Error; err != nil {
				t.Fatal(err)
			}
		}
		e = journey.New(journey.Config{DB: db, Senders: reg, Logger: quiet})
		c, err := e.Parse("welcome.yaml", []byte(testersJourney))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Publish(t.Context(), c, "test"); err != nil {
			t.Fatal(err)
		}
	}, func(cfg *Config) { cfg.TestRuns = e })
	return testersAPI{adminAPI: api, wx: wx}
}

func (a testersAPI) do(t *testing.T, method, path, body, key string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, req)
	return w
}

// A test run with "send": true delivers its messages to a tester, through
// the channel's sender, and answers what WeChat said of each; it refuses
// anyone else with 403 before anything is sent. Nothing of it is recorded:
// no enrollment, step visit or delivery, so the journey's stats do not
// count it.
func TestJourneyTestRunSendsToTesters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantIn     []string
		wantTexts  []string // what the fake WeChat received, in order
	}{
		{name: "a tester gets every message", wantStatus: http.StatusOK,
			body:      `{"member": {"openid": "o_tester"}, "event": {"type": "wechat.subscribe", "props": {"scene": "store_001"}}, "send": true}`,
			wantIn:    []string{`"send":true`, `"sent":true`, `"outcome":"sent"`, `"end":"completed"`, `"note":"sent to the tester (test run: not recorded)"`},
			wantTexts: []string{"欢迎 小王 来自 store_001", "再见"}},
		{name: "not a tester: 403 and nothing sent", wantStatus: http.StatusForbidden,
			body:   `{"member_id": 2, "send": true}`,
			wantIn: []string{"not a tester", `reserved tag \"tester\"`, "POST /api/v1/members/2/tester"}},
		{name: "without send a tester gets nothing", wantStatus: http.StatusOK,
			body:   `{"member_id": 1}`,
			wantIn: []string{`"send":false`, `"outcome":"rendered"`, `"note":"not sent (test run)"`}},
		{name: "without send a non-tester is walked as before", wantStatus: http.StatusOK,
			body:   `{"member_id": 2}`,
			wantIn: []string{`"text":"欢迎 小李 来自 "`, `"end":"completed"`}},
		{name: "WeChat refuses: its answer, and the path ends as a real one would", wantStatus: http.StatusOK,
			body:   `{"member_id": 3, "send": true}`,
			wantIn: []string{`"sent":false`, `"class":"unreachable"`, `"code":45015`, `"outcome":"unreachable"`, `"end":"unreachable"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newTestersAPI(t)
			w := a.do(t, http.MethodPost, "/api/v1/journeys/welcome/test", tc.body, "adm-key")
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantStatus, w.Body)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("answer lacks %s:\n%s", s, w.Body)
				}
			}
			got := a.wx.Messages()
			if len(got) != len(tc.wantTexts) {
				t.Fatalf("WeChat got %d messages, want %d: %+v", len(got), len(tc.wantTexts), got)
			}
			for i, m := range got {
				if m.ToUser != "o_tester" || m.Text != tc.wantTexts[i] {
					t.Errorf("message %d: %s to %s, want %q to o_tester", i, m.Text, m.ToUser, tc.wantTexts[i])
				}
			}
			for _, table := range []any{&model.Enrollment{}, &model.StepVisit{}, &model.Delivery{}} {
				var n int64
				a.db.Model(table).Count(&n)
				if n != 0 {
					t.Errorf("the test run recorded %d %T", n, table)
				}
			}
			stats := a.do(t, http.MethodGet, "/api/v1/journeys/welcome/stats", "", "adm-key")
			var st struct {
				Entered  int64 `json:"entered"`
				Channels []struct {
					Sent int64 `json:"sent"`
				} `json:"channels"`
			}
			if stats.Code != http.StatusOK || json.Unmarshal(stats.Body.Bytes(), &st) != nil || st.Entered != 0 || len(st.Channels) != 0 {
				t.Errorf("the journey's stats count the test run: %d %s", stats.Code, stats.Body)
			}
		})
	}
}

// POST /api/v1/members/{id}/tester marks a member a tester, DELETE unmarks
// it; a test run that sends follows the mark.
func TestMemberTesterAPI(t *testing.T) {
	t.Parallel()
	a := newTestersAPI(t)
	send := `{"member_id": 2, "send": true}`
	if w := a.do(t, http.MethodPost, "/api/v1/journeys/welcome/test", send, "adm-key"); w.Code != http.StatusForbidden {
		t.Fatalf("before the mark: %d %s", w.Code, w.Body)
	}
	w := a.do(t, http.MethodPost, "/api/v1/members/2/tester", "", "adm-key")
	var got struct {
		Member int64    `json:"member_id"`
		Tester bool     `json:"tester"`
		Tags   []string `json:"tags"`
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &got) != nil || got.Member != 2 || !got.Tester ||
		fmt.Sprint(got.Tags) != "[vip tester]" {
		t.Fatalf("mark: %d %s", w.Code, w.Body)
	}
	if w := a.do(t, http.MethodPost, "/api/v1/members/2/tester", "", "adm-key"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"tags":["vip","tester"]`) {
		t.Fatalf("marking twice: %d %s", w.Code, w.Body)
	}
	if w := a.do(t, http.MethodPost, "/api/v1/journeys/welcome/test", send, "adm-key"); w.Code != http.StatusOK {
		t.Fatalf("after the mark: %d %s", w.Code, w.Body)
	}
	if n := len(a.wx.MessagesTo("o_member")); n != 2 {
		t.Fatalf("the marked tester got %d messages, want 2", n)
	}
	if w := a.do(t, http.MethodDelete, "/api/v1/members/2/tester", "", "adm-key"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"tags":["vip"]`) {
		t.Fatalf("unmark: %d %s", w.Code, w.Body)
	}
	var m model.Member
	a.db.First(&m, 2)
	if m.IsTester() || fmt.Sprint(m.Tags) != "[vip]" {
		t.Fatalf("stored tags after unmark: %v", m.Tags)
	}
	if w := a.do(t, http.MethodPost, "/api/v1/journeys/welcome/test", send, "adm-key"); w.Code != http.StatusForbidden {
		t.Fatalf("after the unmark: %d %s", w.Code, w.Body)
	}
	if n := len(a.wx.MessagesTo("o_member")); n != 2 {
		t.Fatalf("the unmarked member got %d messages, want still 2", n)
	}

	kept := int64(1)
	a.db.Create(&model.Member{OpenID: "o_old", AppID: codesOA, MergedInto: &kept}) // member 4
	for _, tc := range []struct {
		method, path, key string
		status            int
		in                string
	}{
		{http.MethodPost, "/api/v1/members/99/tester", "adm-key", http.StatusNotFound, "no member 99"},
		{http.MethodPost, "/api/v1/members/x/tester", "adm-key", http.StatusBadRequest, "number"},
		{http.MethodPost, "/api/v1/members/4/tester", "adm-key", http.StatusConflict, "merged into member 1"},
		{http.MethodPost, "/api/v1/members/2/tester", "ev-key", http.StatusForbidden, ""},
		{http.MethodDelete, "/api/v1/members/2/tester", "", http.StatusUnauthorized, ""},
	} {
		if w := a.do(t, tc.method, tc.path, "", tc.key); w.Code != tc.status || !strings.Contains(w.Body.String(), tc.in) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.method, tc.path, w.Code, w.Body, tc.status, tc.in)
		}
	}
}
