package handler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/wejourney/wejourney/channels"
)

// testSendRouter is a router whose admin API test-sends through a
// registry serving sms (accepted), wecom.text (accepted: the message is
// kept) and wechat.text (refused with the given error).
type testSendRouter struct {
	h    http.Handler
	mu   sync.Mutex
	msgs []channels.Message
}

func newTestSendRouter(t *testing.T, wechatErr error) *testSendRouter {
	t.Helper()
	r := &testSendRouter{}
	keep := channels.SenderFunc(func(_ context.Context, msg channels.Message) (channels.Result, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.msgs = append(r.msgs, msg)
		return channels.Result{ProviderID: "pid-1", Sandbox: msg.Channel == channels.SMS}, nil
	})
	reg := channels.NewRegistry()
	reg.Register(channels.SMS, keep, channels.Capabilities{})
	reg.Register(channels.WeComText, keep, channels.Capabilities{})
	reg.Register(channels.WeChatText, channels.SenderFunc(func(context.Context, channels.Message) (channels.Result, error) {
		return channels.Result{}, wechatErr
	}), channels.Capabilities{})
	r.h = newAdminAPI(t, nil, func(cfg *Config) { cfg.Senders = reg }).h
	return r
}

func TestTestSendAPI(t *testing.T) {
	t.Parallel()
	refused := &channels.Error{Class: channels.ErrUnreachable, Code: 45015,
		Msg: "response out of time limit, https://api.weixin.qq.com/cgi-bin/message/custom/send?access_token=SECRETTOKEN123"}
	for _, tc := range []struct {
		name, path, body, key string
		status                int
		in, notIn             []string
	}{
		{name: "no key", path: "/api/v1/channels/sms/test", body: `{"to":"13800000000"}`, status: 401},
		{name: "events key", path: "/api/v1/channels/sms/test", body: `{"to":"13800000000"}`, key: "ev-key", status: 403},
		{name: "unknown channel", path: "/api/v1/channels/pigeon/test", body: `{"to":"x"}`, key: "adm-key", status: 404, in: []string{"unknown channel pigeon"}},
		{name: "channel without sender", path: "/api/v1/channels/email/test", body: `{"to":"a@b.example"}`, key: "adm-key", status: 404,
			in: []string{"has no sender", "SMTP"}},
		{name: "no address", path: "/api/v1/channels/sms/test", body: `{"text":"hi"}`, key: "adm-key", status: 400, in: []string{"to is required"}},
		{name: "not JSON", path: "/api/v1/channels/sms/test", body: `{`, key: "adm-key", status: 400},
		{name: "sent", path: "/api/v1/channels/wecom.text/test", body: `{"to":"rep1","text":"hi","appid":"ww1/1000002"}`, key: "adm-key", status: 200,
			in: []string{`"ok":true`, `"provider_id":"pid-1"`, `"sandbox":false`, `"channel":"wecom.text"`}},
		{name: "sandboxed", path: "/api/v1/channels/sms/test", body: `{"to":"13800000000","template":"SMS_1","params":{"code":"1234"}}`, key: "adm-key", status: 200,
			in: []string{`"ok":true`, `"sandbox":true`}},
		{name: "provider refuses", path: "/api/v1/channels/wechat.text/test", body: `{"to":"oOpenid","text":"hi"}`, key: "adm-key", status: 422,
			in: []string{`"ok":false`, `"class":"unreachable"`, `"code":45015`, "out of time limit"}, notIn: []string{"SECRETTOKEN123"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newTestSendRouter(t, refused)
			req := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			rec := httptest.NewRecorder()
			r.h.ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, body)
			}
			for _, s := range tc.in {
				if !strings.Contains(body, s) {
					t.Errorf("answer %s lacks %q", body, s)
				}
			}
			for _, s := range tc.notIn {
				if strings.Contains(body, s) {
					t.Errorf("answer %s holds %q", body, s)
				}
			}
			if tc.status != 200 {
				if len(r.msgs) != 0 {
					t.Errorf("a refused request was sent: %+v", r.msgs)
				}
				return
			}
			if len(r.msgs) != 1 {
				t.Fatalf("sent %d messages, want 1", len(r.msgs))
			}
			m := r.msgs[0]
			if m.Category != "transactional" || !strings.HasPrefix(m.IdempotencyKey, "test-") {
				t.Errorf("message %+v: want transactional with a test- key", m)
			}
			switch m.Channel {
			case channels.WeComText:
				if m.Extra["to_user"] != "rep1" || m.Extra["wecom_app"] != "ww1/1000002" || m.Text != "hi" {
					t.Errorf("wecom.text message %+v", m)
				}
			case channels.SMS:
				if m.To.Phone != "13800000000" || m.Template != "SMS_1" || m.Data["code"] != "1234" {
					t.Errorf("sms message %+v", m)
				}
			}
		})
	}
}
