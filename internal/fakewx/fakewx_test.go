package fakewx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// answer is the union of the fields the fake answers with.
type answer struct {
	ErrCode     int    `json:"errcode"`
	ErrMsg      string `json:"errmsg"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	MsgID       int64  `json:"msgid"`
}

func do(t *testing.T, method, u, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d, want 200 like WeChat", method, u, resp.StatusCode)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s %s: answer %q is not JSON: %v", method, u, raw, err)
	}
	return a
}

func stableToken(t *testing.T, s *Server, appid string) string {
	t.Helper()
	a := do(t, http.MethodPost, s.URL+"/cgi-bin/stable_token",
		`{"grant_type":"client_credential","appid":"`+appid+`","secret":"s","force_refresh":false}`)
	if a.ErrCode != 0 || a.AccessToken == "" {
		t.Fatalf("stable_token for %s: %+v", appid, a)
	}
	return a.AccessToken
}

func TestTokens(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{"wxknown": "right"}
	tests := []struct {
		name    string
		secrets map[string]string
		method  string
		path    string
		body    string
		want    int // errcode
	}{
		{"stable ok", nil, "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wx1","secret":"s"}`, 0},
		{"stable force", nil, "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wx1","secret":"s","force_refresh":true}`, 0},
		{"stable no secret", nil, "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wx1"}`, 41004},
		{"stable no appid", nil, "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","secret":"s"}`, 41002},
		{"stable bad grant", nil, "POST", "/cgi-bin/stable_token", `{"grant_type":"x","appid":"wx1","secret":"s"}`, 40002},
		{"stable empty body", nil, "POST", "/cgi-bin/stable_token", ``, 44002},
		{"stable garbled", nil, "POST", "/cgi-bin/stable_token", `{"grant_type":`, 47001},
		{"stable GET", nil, "GET", "/cgi-bin/stable_token", ``, 43002},
		{"token ok", nil, "GET", "/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=s", ``, 0},
		{"token POST", nil, "POST", "/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=s", ``, 43001},
		{"token no secret", nil, "GET", "/cgi-bin/token?grant_type=client_credential&appid=wx1", ``, 41004},
		{"secrets ok", secrets, "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wxknown","secret":"right"}`, 0},
		{"secrets unknown appid", secrets, "POST", "/cgi-bin/stable_token", `{"grant_type":"client_credential","appid":"wxother","secret":"right"}`, 40013},
		{"secrets wrong secret", secrets, "GET", "/cgi-bin/token?grant_type=client_credential&appid=wxknown&secret=wrong", ``, 40125},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Secrets: tt.secrets})
			defer s.Close()
			a := do(t, tt.method, s.URL+tt.path, tt.body)
			if a.ErrCode != tt.want {
				t.Fatalf("errcode = %d (%s), want %d", a.ErrCode, a.ErrMsg, tt.want)
			}
			wantFetches := 0
			if tt.want == 0 {
				wantFetches = 1
				if a.AccessToken == "" || a.ExpiresIn != 7200 {
					t.Errorf("answer = %+v, want a token valid 7200 s", a)
				}
			}
			if got := s.TokenFetches(); got != wantFetches {
				t.Errorf("TokenFetches() = %d, want %d", got, wantFetches)
			}
		})
	}
}

func TestStableTokenReuseAndExpiry(t *testing.T) {
	t.Parallel()
	s := New(Config{})
	defer s.Close()

	t1 := stableToken(t, s, "wx1")
	if t2 := stableToken(t, s, "wx1"); t2 != t1 {
		t.Errorf("non-forced stable_token = %q, want the current token %q again", t2, t1)
	}
	if other := stableToken(t, s, "wx2"); other == t1 {
		t.Errorf("wx2 got wx1's token %q", other)
	}
	forced := do(t, "POST", s.URL+"/cgi-bin/stable_token",
		`{"grant_type":"client_credential","appid":"wx1","secret":"s","force_refresh":true}`).AccessToken
	if forced == t1 || forced == "" {
		t.Errorf("forced stable_token = %q, want a new token", forced)
	}
	send := func(tok string) int {
		return do(t, "POST", s.URL+"/cgi-bin/message/custom/send?access_token="+url.QueryEscape(tok),
			`{"touser":"o1","msgtype":"text","text":{"content":"hi"}}`).ErrCode
	}
	if got := send(t1); got != 0 {
		t.Errorf("old token after force refresh: errcode %d, want 0 (grace period)", got)
	}

	s.ExpireTokens()
	for _, tok := range []string{t1, forced} {
		if got := send(tok); got != 40001 {
			t.Errorf("expired token %q: errcode %d, want 40001", tok, got)
		}
	}
	t3 := stableToken(t, s, "wx1")
	if t3 == t1 || t3 == forced {
		t.Errorf("stable_token after ExpireTokens = %q, want a new token", t3)
	}
	if got := send(t3); got != 0 {
		t.Errorf("new token: errcode %d, want 0", got)
	}
	if got, want := s.TokenFetches(), 5; got != want {
		t.Errorf("TokenFetches() = %d, want %d", got, want)
	}
	if got := s.Messages(); len(got) != 2 || got[0].AppID != "wx1" || got[1].AppID != "wx1" {
		t.Errorf("messages = %+v, want 2 from wx1", got)
	}
}

// ignore drops the fields that differ run to run.
var ignore = cmpopts.IgnoreFields(Message{}, "At", "Raw")

func TestSend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		path     string // custom or template
		token    string // "" none, "good", "bad", "expired"
		body     string
		errorFor map[string]int // SetError before the send
		cleared  bool           // then SetError(openid, 0) for each
		want     answer
		wantMsgs []Message
	}{
		{
			name: "custom text", path: "custom", token: "good",
			body:     `{"touser":"o1","msgtype":"text","text":{"content":"你好 <b>&"}}`,
			want:     answer{ErrMsg: "ok"},
			wantMsgs: []Message{{Kind: "custom", AppID: "wx1", ToUser: "o1", MsgType: "text", Text: "你好 <b>&"}},
		},
		{
			name: "custom news", path: "custom", token: "good",
			body:     `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"T","url":"https://x/a"}]}}`,
			want:     answer{ErrMsg: "ok"},
			wantMsgs: []Message{{Kind: "custom", AppID: "wx1", ToUser: "o1", MsgType: "news", URL: "https://x/a"}},
		},
		{
			name: "custom miniprogrampage", path: "custom", token: "good",
			body:     `{"touser":"o2","msgtype":"miniprogrampage","miniprogrampage":{"appid":"wxmp","pagepath":"p"}}`,
			want:     answer{ErrMsg: "ok"},
			wantMsgs: []Message{{Kind: "custom", AppID: "wx1", ToUser: "o2", MsgType: "miniprogrampage"}},
		},
		{
			name: "template", path: "template", token: "good",
			body: `{"touser":"o1","template_id":"tpl","url":"https://x","data":{"first":{"value":"v1"},"k2":{"value":"v2","color":"#f00"}},"client_msg_id":"d1"}`,
			want: answer{ErrMsg: "ok", MsgID: 1},
			wantMsgs: []Message{{Kind: "template", AppID: "wx1", ToUser: "o1", MsgType: "template", TemplateID: "tpl",
				URL: "https://x", Data: map[string]string{"first": "v1", "k2": "v2"}, ClientMsgID: "d1"}},
		},
		{
			name: "no token", path: "custom", token: "",
			body: `{"touser":"o1","msgtype":"text","text":{"content":"x"}}`,
			want: answer{ErrCode: 41001, ErrMsg: errMsgs[41001]},
		},
		{
			name: "unknown token", path: "template", token: "bad",
			body: `{"touser":"o1","template_id":"tpl"}`,
			want: answer{ErrCode: 40001, ErrMsg: errMsgs[40001]},
		},
		{
			name: "expired token", path: "custom", token: "expired",
			body: `{"touser":"o1","msgtype":"text","text":{"content":"x"}}`,
			want: answer{ErrCode: 40001, ErrMsg: errMsgs[40001]},
		},
		{
			name: "empty body", path: "custom", token: "good", body: ``,
			want: answer{ErrCode: 44002, ErrMsg: errMsgs[44002]},
		},
		{
			name: "garbled body", path: "template", token: "good", body: `{"touser":`,
			want: answer{ErrCode: 47001, ErrMsg: errMsgs[47001]},
		},
		{
			name: "no touser", path: "custom", token: "good", body: `{"msgtype":"text","text":{"content":"x"}}`,
			want: answer{ErrCode: 40003, ErrMsg: errMsgs[40003]},
		},
		{
			name: "bad msgtype", path: "custom", token: "good", body: `{"touser":"o1","msgtype":"fax"}`,
			want: answer{ErrCode: 40008, ErrMsg: errMsgs[40008]},
		},
		{
			name: "no template_id", path: "template", token: "good", body: `{"touser":"o1"}`,
			want: answer{ErrCode: 40037, ErrMsg: errMsgs[40037]},
		},
		{
			name: "injected 45015", path: "custom", token: "good", errorFor: map[string]int{"o1": 45015},
			body: `{"touser":"o1","msgtype":"text","text":{"content":"x"}}`,
			want: answer{ErrCode: 45015, ErrMsg: errMsgs[45015]},
		},
		{
			name: "injected for another openid", path: "custom", token: "good", errorFor: map[string]int{"o2": 45015},
			body:     `{"touser":"o1","msgtype":"text","text":{"content":"x"}}`,
			want:     answer{ErrMsg: "ok"},
			wantMsgs: []Message{{Kind: "custom", AppID: "wx1", ToUser: "o1", MsgType: "text", Text: "x"}},
		},
		{
			name: "injected unknown code", path: "template", token: "good", errorFor: map[string]int{"o1": 99999},
			body: `{"touser":"o1","template_id":"tpl"}`,
			want: answer{ErrCode: 99999, ErrMsg: "fakewx injected error"},
		},
		{
			name: "injected then cleared", path: "template", token: "good", errorFor: map[string]int{"o1": 45009}, cleared: true,
			body:     `{"touser":"o1","template_id":"tpl"}`,
			want:     answer{ErrMsg: "ok", MsgID: 1},
			wantMsgs: []Message{{Kind: "template", AppID: "wx1", ToUser: "o1", MsgType: "template", TemplateID: "tpl"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooked []Message
			var mu sync.Mutex
			s := New(Config{OnMessage: func(m Message) {
				mu.Lock()
				defer mu.Unlock()
				hooked = append(hooked, m)
			}})
			defer s.Close()

			var tok string
			switch tt.token {
			case "good":
				tok = stableToken(t, s, "wx1")
			case "bad":
				tok = "nonsense"
			case "expired":
				tok = stableToken(t, s, "wx1")
				s.ExpireTokens()
			}
			for openid, code := range tt.errorFor {
				s.SetError(openid, code)
				if tt.cleared {
					s.SetError(openid, 0)
				}
			}
			u := s.URL + "/cgi-bin/message/" + tt.path + "/send"
			if tok != "" {
				u += "?access_token=" + url.QueryEscape(tok)
			}
			got := do(t, "POST", u, tt.body)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMsgs, s.Messages(), ignore, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Messages() (-want +got):\n%s", diff)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tt.wantMsgs, hooked, ignore, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("OnMessage calls (-want +got):\n%s", diff)
			}
			for _, m := range s.Messages() {
				if m.At.IsZero() || !bytes.Equal(m.Raw, []byte(tt.body)) {
					t.Errorf("message At = %v, Raw = %q; want arrival time and the body as sent", m.At, m.Raw)
				}
			}
		})
	}
}

func TestTemplateClientMsgIDDedupe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		sends     []struct{ appid, clientMsgID string }
		wantIDs   []int64
		wantCount int
	}{
		{
			name:      "same id same app recorded once",
			sends:     []struct{ appid, clientMsgID string }{{"wx1", "k"}, {"wx1", "k"}, {"wx1", "k"}},
			wantIDs:   []int64{1, 1, 1},
			wantCount: 1,
		},
		{
			name:      "same id other app is another message",
			sends:     []struct{ appid, clientMsgID string }{{"wx1", "k"}, {"wx2", "k"}},
			wantIDs:   []int64{1, 2},
			wantCount: 2,
		},
		{
			name:      "no id never deduped",
			sends:     []struct{ appid, clientMsgID string }{{"wx1", ""}, {"wx1", ""}},
			wantIDs:   []int64{1, 2},
			wantCount: 2,
		},
		{
			name:      "different ids",
			sends:     []struct{ appid, clientMsgID string }{{"wx1", "a"}, {"wx1", "b"}, {"wx1", "a"}},
			wantIDs:   []int64{1, 2, 1},
			wantCount: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{})
			defer s.Close()
			var gotIDs []int64
			for _, snd := range tt.sends {
				tok := stableToken(t, s, snd.appid)
				a := do(t, "POST", s.URL+"/cgi-bin/message/template/send?access_token="+url.QueryEscape(tok),
					`{"touser":"o1","template_id":"tpl","client_msg_id":"`+snd.clientMsgID+`"}`)
				if a.ErrCode != 0 {
					t.Fatalf("send: %+v", a)
				}
				gotIDs = append(gotIDs, a.MsgID)
			}
			if diff := cmp.Diff(tt.wantIDs, gotIDs); diff != "" {
				t.Errorf("msgids (-want +got):\n%s", diff)
			}
			if got := len(s.MessagesTo("o1")); got != tt.wantCount {
				t.Errorf("recorded %d messages, want %d", got, tt.wantCount)
			}
		})
	}
}

func TestMessagesTo(t *testing.T) {
	t.Parallel()
	s := New(Config{})
	defer s.Close()
	tok := stableToken(t, s, "wx1")
	for _, to := range []string{"a", "b", "a"} {
		do(t, "POST", s.URL+"/cgi-bin/message/custom/send?access_token="+tok,
			`{"touser":"`+to+`","msgtype":"text","text":{"content":"to `+to+`"}}`)
	}
	tests := []struct {
		name   string
		openid string
		want   []string
	}{
		{"two", "a", []string{"to a", "to a"}},
		{"one", "b", []string{"to b"}},
		{"none", "c", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range s.MessagesTo(tt.openid) {
				got = append(got, m.Text)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MessagesTo(%q) texts (-want +got):\n%s", tt.openid, diff)
			}
		})
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	s := New(Config{})
	defer s.Close()
	tok := stableToken(t, s, "wx1")
	const n = 50

	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i%5) * time.Millisecond)
			resp, err := http.Post(s.URL+"/cgi-bin/message/custom/send?access_token="+tok, "application/json",
				strings.NewReader(`{"touser":"o1","msgtype":"text","text":{"content":"x"}}`))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := 0
	err := s.Wait(ctx, func(ms []Message) bool { calls++; return len(ms) >= n })
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	wg.Wait()
	if calls > n+1 {
		t.Errorf("cond called %d times for %d messages; want it called on changes only", calls, n)
	}

	// Already true: returns at once without needing a change.
	if err := s.Wait(ctx, func(ms []Message) bool { return len(ms) == n }); err != nil {
		t.Errorf("Wait on a true condition: %v", err)
	}

	// Never true: ends with ctx.
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	err = s.Wait(short, func(ms []Message) bool { return len(ms) > n })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on a false condition = %v, want context.DeadlineExceeded", err)
	}
}

func BenchmarkCustomSend(b *testing.B) {
	s := New(Config{})
	defer s.Close()
	a := answer{}
	resp, err := http.Post(s.URL+"/cgi-bin/stable_token", "application/json",
		strings.NewReader(`{"grant_type":"client_credential","appid":"wx1","secret":"s"}`))
	if err != nil {
		b.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	u := s.URL + "/cgi-bin/message/custom/send?access_token=" + a.AccessToken
	body := []byte(`{"touser":"o1","msgtype":"text","text":{"content":"hello"}}`)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(u, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func TestSendFaults(t *testing.T) {
	t.Parallel()
	s := New(Config{})
	defer s.Close()
	tok := stableToken(t, s, "wxfault")
	send := func() (*http.Response, error) {
		return http.Post(s.URL+"/cgi-bin/message/custom/send?access_token="+url.QueryEscape(tok), "application/json",
			strings.NewReader(`{"touser":"o1","msgtype":"text","text":{"content":"hi"}}`))
	}

	s.SetHTTPStatus(http.StatusBadGateway)
	resp, err := send()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("with SetHTTPStatus(502): HTTP %d", resp.StatusCode)
	}
	stableToken(t, s, "wxfault") // tokens still work

	s.SetHTTPStatus(0)
	s.SetDropConnections(true)
	if resp, err := send(); err == nil {
		resp.Body.Close()
		t.Errorf("with SetDropConnections(true): HTTP %d, want a network error", resp.StatusCode)
	}

	s.SetDropConnections(false)
	if a := do(t, http.MethodPost, s.URL+"/cgi-bin/message/custom/send?access_token="+url.QueryEscape(tok),
		`{"touser":"o1","msgtype":"text","text":{"content":"hi"}}`); a.ErrCode != 0 {
		t.Errorf("after clearing the faults: %+v", a)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages recorded, want only the one sent after the faults", n)
	}
}
