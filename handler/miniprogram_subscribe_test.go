package handler

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/events"
)

func TestMiniProgramSubscribeAuthorized(t *testing.T) {
	t.Parallel()
	e := newMPEnv(t)
	tok := e.login(t, "code-ok")
	auth := map[string]string{"Authorization": "Bearer " + tok}
	rec := e.post("/api/v1/miniprogram/events", `{"id":"req-1","type":"miniprogram.subscribe_authorized","template_ids":["MP-a","MP-b"]}`, auth)
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"accepted":2`) {
		t.Fatalf("answer %d %s, want 202 accepting 2", rec.Code, rec.Body)
	}
	// The same post again (a retry) is a duplicate.
	rec = e.post("/api/v1/miniprogram/events", `{"id":"req-1","type":"miniprogram.subscribe_authorized","template_ids":["MP-a","MP-b"]}`, auth)
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"duplicates":2`) {
		t.Fatalf("retry: %d %s, want 202 with 2 duplicates", rec.Code, rec.Body)
	}
	rec = e.post("/api/v1/miniprogram/events", `{"type":"miniprogram.subscribe_authorized","template_id":"MP-c"}`, auth)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("one template_id: %d %s", rec.Code, rec.Body)
	}
	var got []string
	for _, ev := range e.events(t) {
		if ev.Type != events.MiniProgramSubscribeAuthorized || ev.Member.MPAppID != mpAppID || ev.Member.MPOpenID != "o_mp_1" ||
			ev.Props["source"] != "miniprogram" {
			t.Errorf("stored %+v", ev)
		}
		got = append(got, fmt.Sprint(ev.Props["template_id"]))
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "MP-a,MP-b,MP-c" {
		t.Errorf("templates stored %v", got)
	}
	for _, bad := range []string{
		`{"type":"miniprogram.subscribe_authorized"}`,
		`{"type":"miniprogram.subscribe_authorized","template_ids":[""]}`,
		`{"type":"miniprogram.subscribe_authorized","template_ids":["a"],"member":{"openid":"x"}}`,
	} {
		if rec := e.post("/api/v1/miniprogram/events", bad, auth); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, rec.Code)
		}
	}
	if rec := e.post("/api/v1/miniprogram/events", `{"type":"miniprogram.subscribe_authorized","template_ids":["a"]}`, nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", rec.Code)
	}
}
