package handler

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/events"
)

func uplinkRouter(token string, store EventStore) http.Handler {
	return New(Config{Ingestor: store, SMSUplinkToken: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }})
}

func post(h http.Handler, url, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

const aliyunPush = `[{"phone_number": "13800000000", "send_time": "2026-11-24 18:30:00", "content": "TD", "sign_name": "微旅程", "dest_code": "1234", "sequence_id": 1234567890},
 {"phone_number": "13900000000", "send_time": "2026-11-24 18:31:00", "content": "什么时候发货", "sign_name": "微旅程", "dest_code": "1234", "sequence_id": "1234567891"}]`

func TestAliyunUplink(t *testing.T) {
	t.Parallel()
	store := &recordingStore{}
	h := uplinkRouter("up-token", store)
	if rec := post(h, "/sms/aliyun/uplink?token=wrong", aliyunPush); rec.Code != http.StatusForbidden {
		t.Errorf("wrong token: %d; want 403", rec.Code)
	}
	rec := post(h, "/sms/aliyun/uplink?token=up-token", aliyunPush)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"code":0`) {
		t.Fatalf("push: %d %s; want 200 {\"code\":0,…}", rec.Code, rec.Body)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.evs) != 2 {
		t.Fatalf("%d events stored; want 2", len(store.evs))
	}
	ev := store.evs[0]
	if ev.Type != events.SMSReceived || ev.Member.Phone != "13800000000" || ev.Props["text"] != "TD" ||
		ev.Props["phone"] != "+8613800000000" || ev.DedupeKey != "sms:aliyun:seq:1234567890" ||
		!ev.At.Equal(time.Date(2026, 11, 24, 10, 30, 0, 0, time.UTC)) {
		t.Errorf("event %+v", ev)
	}
	if store.evs[1].DedupeKey != "sms:aliyun:seq:1234567891" {
		t.Errorf("a string sequence_id: key %q", store.evs[1].DedupeKey)
	}
}

func TestTencentUplink(t *testing.T) {
	t.Parallel()
	store := &recordingStore{}
	h := uplinkRouter("up-token", store)
	body := `{"extend": "", "mobile": "13800000000", "nationcode": "86", "sign": "微旅程", "text": "退订", "time": 1764000000}`
	rec := post(h, "/sms/tencent/uplink?token=up-token", body)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"result":0`) || !strings.Contains(rec.Body.String(), `"errmsg":"OK"`) {
		t.Fatalf("push: %d %s", rec.Code, rec.Body)
	}
	// Pushed again: the same dedupe key (phone, time, text).
	post(h, "/sms/tencent/uplink?token=up-token", "["+body+"]")
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.evs) != 2 || store.evs[0].DedupeKey != store.evs[1].DedupeKey || store.evs[0].Member.Phone != "13800000000" {
		t.Errorf("events %+v, %+v: want one member by phone, one dedupe key", store.evs[0], store.evs[len(store.evs)-1])
	}
}

func TestUplinkWithoutTokenIsNotFound(t *testing.T) {
	t.Parallel()
	h := uplinkRouter("", &recordingStore{})
	for _, p := range []string{"/sms/aliyun/uplink", "/sms/tencent/uplink?token="} {
		if rec := post(h, p, aliyunPush); rec.Code != http.StatusNotFound {
			t.Errorf("%s without WEJOURNEY_SMS_UPLINK_TOKEN: %d; want 404", p, rec.Code)
		}
	}
}

func TestUplinkStoreFailureIs503(t *testing.T) {
	t.Parallel()
	h := uplinkRouter("up-token", &failingStore{err: errors.New("database is locked")})
	rec := post(h, "/sms/aliyun/uplink?token=up-token", aliyunPush)
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), `"code":0`) {
		t.Errorf("store failed: %d %s; want 503 and no success", rec.Code, rec.Body)
	}
}
