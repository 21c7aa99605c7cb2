package fakewecom

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// call posts body to path with a fresh token of corp and returns the errcode.
func call(t *testing.T, s *Server, path, body string) int {
	t.Helper()
	resp, err := http.Get(s.URL + TokenPath + "?corpid=ww1&corpsecret=sec")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	resp, err = http.Post(s.URL+path+"?access_token="+tok.AccessToken, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		ErrCode int `json:"errcode"`
	}
	json.NewDecoder(resp.Body).Decode(&ans)
	return ans.ErrCode
}

func TestWelcomeCodesAndFailFraction(t *testing.T) {
	t.Parallel()
	s := New()
	t.Cleanup(s.Close)
	s.AddCorp("ww1", "sec")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.SetNow(func() time.Time { return now })
	body := func(code string) string { return `{"welcome_code":"` + code + `","text":{"content":"hi"}}` }
	code := s.IssueWelcomeCode()
	if got := []int{call(t, s, SendWelcomePath, body(code)), call(t, s, SendWelcomePath, body(code))}; got[0] != 0 || got[1] != 41051 {
		t.Errorf("first and second use: %v, want 0 and 41051", got)
	}
	late := s.IssueWelcomeCode()
	now = now.Add(WelcomeCodeTTL + time.Second)
	if got := call(t, s, SendWelcomePath, body(late)); got != 41050 {
		t.Errorf("expired: %d", got)
	}
	if got := call(t, s, SendWelcomePath, body("NEVER-ISSUED")); got != 0 {
		t.Errorf("unknown code, first use: %d", got)
	}
	w := s.Welcomes()
	if len(w) != 4 || w[0].Code != code || !w[0].At.Equal(w[0].IssuedAt) || w[2].At.Sub(w[2].IssuedAt) != WelcomeCodeTTL+time.Second {
		t.Errorf("welcomes %+v", w)
	}

	s.SetFailFraction(MarkTagPath, 0.25)
	var codes []int
	for range 8 {
		codes = append(codes, call(t, s, MarkTagPath, `{"userid":"r","external_userid":"wm","add_tag":["t"]}`))
	}
	busy := 0
	for _, c := range codes {
		if c == -1 {
			busy++
		}
	}
	if busy != 2 || codes[3] != -1 || codes[7] != -1 {
		t.Errorf("with a fail fraction of 0.25: %v", codes)
	}
	if n := len(s.Requests(MarkTagPath)); n != 6 {
		t.Errorf("recorded %d mark_tag requests, want the 6 accepted", n)
	}
}
