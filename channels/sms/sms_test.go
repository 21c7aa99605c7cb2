package sms

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// class names an error class for test tables.
type class string

const (
	sent        class = "sent"
	temporary   class = "temporary"
	quota       class = "quota"
	unreachable class = "unreachable"
	permanent   class = "permanent"
)

func classOf(err error) class {
	switch {
	case err == nil:
		return sent
	case errors.Is(err, channels.ErrQuota):
		return quota
	case errors.Is(err, channels.ErrUnreachable):
		return unreachable
	case errors.Is(err, channels.ErrPermanent):
		return permanent
	}
	return temporary
}

func message() channels.Message {
	return channels.Message{DeliveryID: 42, IdempotencyKey: "wj-42", Channel: channels.SMS, Template: "SMS_123",
		To: channels.Recipient{MemberID: 7, Phone: "138 0000 0000"}, Data: map[string]string{"name": "小明", "code": "1234"}}
}

func TestAliyunSendsSignedRequest(t *testing.T) {
	t.Parallel()
	fake := newFakeAliyun(t, "ak-id", "ak-secret")
	s, err := New(Config{Provider: Aliyun, SignName: "微旅程", AliyunAccessKeyID: "ak-id", AliyunAccessKeySecret: "ak-secret",
		AliyunEndpoint: fake.srv.URL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Send(context.Background(), message())
	call, bad := fake.last()
	if err != nil || len(bad) > 0 {
		t.Fatalf("Send: %v; the fake refused: %v", err, bad)
	}
	if res.ProviderID != "biz-1" || res.Sandbox {
		t.Errorf("result %+v; want the BizId, not sandbox", res)
	}
	want := fakeCall{Phone: "13800000000", Sign: "微旅程", Template: "SMS_123", Key: "wj-42",
		Params: map[string]string{"name": "小明", "code": "1234"}}
	if !reflect.DeepEqual(call, want) {
		t.Errorf("Aliyun got %+v; want %+v", call, want)
	}

	// A wrong secret is refused by the fake's signature check: a visible
	// configuration error, never retried.
	wrong, _ := New(Config{Provider: Aliyun, SignName: "微旅程", AliyunAccessKeyID: "ak-id", AliyunAccessKeySecret: "not-the-secret",
		AliyunEndpoint: fake.srv.URL, Logger: quiet})
	if _, err := wrong.Send(context.Background(), message()); classOf(err) != permanent {
		t.Errorf("wrong secret: %v (%s); want permanent", err, classOf(err))
	}
	if _, bad := fake.last(); len(bad) != 1 || !strings.Contains(bad[0], "signature") {
		t.Errorf("the fake's refusals: %v; want one bad signature", bad)
	}
}

func TestAliyunErrorClasses(t *testing.T) {
	t.Parallel()
	fake := newFakeAliyun(t, "ak-id", "ak-secret")
	s, err := New(Config{Provider: Aliyun, SignName: "微旅程", AliyunAccessKeyID: "ak-id", AliyunAccessKeySecret: "ak-secret",
		AliyunEndpoint: fake.srv.URL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	biz := func(code string) func(http.ResponseWriter) {
		return jsonReply(200, map[string]string{"Code": code, "Message": code + " message", "RequestId": "r"})
	}
	for _, tc := range []struct {
		name  string
		reply func(http.ResponseWriter)
		want  class
	}{
		{"OK", biz("OK"), sent},
		{"flow control", biz("isv.BUSINESS_LIMIT_CONTROL"), quota},
		{"bad number", biz("isv.MOBILE_NUMBER_ILLEGAL"), unreachable},
		{"blacklisted", biz("isv.BLACK_KEY_CONTROL_LIMIT"), unreachable},
		{"template", biz("isv.SMS_TEMPLATE_ILLEGAL"), permanent},
		{"signature name", biz("isv.SMS_SIGNATURE_ILLEGAL"), permanent},
		{"missing params", biz("isv.TEMPLATE_MISSING_PARAMETERS"), permanent},
		{"system error", biz("isp.SYSTEM_ERROR"), temporary},
		{"unknown key", jsonReply(404, map[string]string{"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found.", "RequestId": "r"}), permanent},
		{"signature", jsonReply(400, map[string]string{"Code": "SignatureDoesNotMatch", "Message": "x", "RequestId": "r"}), permanent},
		{"throttling", jsonReply(400, map[string]string{"Code": "Throttling.User", "Message": "Request was denied due to user flow control.", "RequestId": "r"}), temporary},
		{"unavailable", jsonReply(503, map[string]string{"Code": "ServiceUnavailable", "Message": "x", "RequestId": "r"}), temporary},
		{"5xx", jsonReply(500, map[string]string{"Code": "InternalError", "Message": "x", "RequestId": "r"}), temporary},
	} {
		fake.setReply(tc.reply)
		_, err := s.Send(context.Background(), message())
		if got := classOf(err); got != tc.want {
			t.Errorf("%s: %v is %s; want %s", tc.name, err, got, tc.want)
		}
		if tc.want == quota {
			var cerr *channels.Error
			if !errors.As(err, &cerr) || cerr.RetryAfter <= 0 {
				t.Errorf("%s: %v carries no RetryAfter", tc.name, err)
			}
		}
	}
	if _, bad := fake.last(); len(bad) > 0 {
		t.Errorf("the fake refused requests: %v", bad)
	}
}

func TestTencentSendsSignedRequest(t *testing.T) {
	t.Parallel()
	fake := newFakeTencent(t, "sid", "skey")
	s, err := New(Config{Provider: Tencent, SignName: "微旅程", TencentSecretID: "sid", TencentSecretKey: "skey",
		TencentSDKAppID: "1400000000", TencentEndpoint: fake.srv.URL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	msg := message()
	msg.Data = map[string]string{"2": "30", "1": "1234", "10": "x"}
	res, err := s.Send(context.Background(), msg)
	call, bad := fake.last()
	if err != nil || len(bad) > 0 {
		t.Fatalf("Send: %v; the fake refused: %v", err, bad)
	}
	if res.ProviderID != "serial-1" {
		t.Errorf("provider id %q; want the SerialNo", res.ProviderID)
	}
	want := fakeCall{Phone: "+8613800000000", Sign: "微旅程", Template: "SMS_123", Key: "wj-42",
		Params: []string{"1234", "30", "x"}, Region: "ap-guangzhou", AppID: "1400000000"}
	if !reflect.DeepEqual(call, want) {
		t.Errorf("Tencent got %+v; want %+v", call, want)
	}
	wrong, _ := New(Config{Provider: Tencent, SignName: "微旅程", TencentSecretID: "sid", TencentSecretKey: "wrong",
		TencentSDKAppID: "1400000000", TencentEndpoint: fake.srv.URL, Logger: quiet})
	if _, err := wrong.Send(context.Background(), msg); classOf(err) != permanent {
		t.Errorf("wrong secret key: %v (%s); want permanent", err, classOf(err))
	}
}

func TestTencentErrorClasses(t *testing.T) {
	t.Parallel()
	fake := newFakeTencent(t, "sid", "skey")
	s, err := New(Config{Provider: Tencent, SignName: "微旅程", TencentSecretID: "sid", TencentSecretKey: "skey",
		TencentSDKAppID: "1400000000", TencentEndpoint: fake.srv.URL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		reply func(http.ResponseWriter)
		want  class
	}{
		{"Ok", tencentStatus("Ok", "send success"), sent},
		{"daily limit", tencentStatus("LimitExceeded.PhoneNumberDailyLimit", "x"), quota},
		{"30 s limit", tencentStatus("LimitExceeded.PhoneNumberThirtySecondLimit", "x"), quota},
		{"bad number", tencentStatus("InvalidParameterValue.IncorrectPhoneNumber", "x"), unreachable},
		{"blacklist", tencentStatus("FailedOperation.PhoneNumberInBlacklist", "x"), unreachable},
		{"template", tencentStatus("FailedOperation.TemplateIncorrectOrUnapproved", "x"), permanent},
		{"auth", tencentError("AuthFailure.SecretIdNotFound"), permanent},
		{"internal", tencentError("InternalError.Timeout"), temporary},
		{"internal status", tencentStatus("InternalError.OtherError", "x"), temporary},
	} {
		fake.setReply(tc.reply)
		_, err := s.Send(context.Background(), message())
		if got := classOf(err); got != tc.want {
			t.Errorf("%s: %v is %s; want %s", tc.name, err, got, tc.want)
		}
	}
	if _, bad := fake.last(); len(bad) > 0 {
		t.Errorf("the fake refused requests: %v", bad)
	}
}

// gateway is a fake brand SMS gateway that checks X-Wejourney-Signature.
type gateway struct {
	mu       sync.Mutex
	ids      []string
	bodies   []WebhookRequest
	statuses []int // answered in turn; then 200
	header   http.Header
	badSig   int
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !Verify("gw-secret", body, r.Header.Get(SignatureHeader)) {
		g.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var in WebhookRequest
	jsonDecode(body, &in)
	g.bodies = append(g.bodies, in)
	g.ids = append(g.ids, in.ID)
	status := 200
	if len(g.statuses) > 0 {
		status, g.statuses = g.statuses[0], g.statuses[1:]
	}
	for k, v := range g.header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
}

func TestWebhookContract(t *testing.T) {
	t.Parallel()
	g := &gateway{statuses: []int{503, 429, 400}, header: http.Header{"Retry-After": {"120"}}}
	srv := httptest.NewServer(g)
	defer srv.Close()
	s, err := New(Config{Provider: Webhook, WebhookURL: srv.URL + "/sms", WebhookSecret: "gw-secret", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if caps := s.Channels()[channels.SMS]; !caps.Resend || caps.OptOut != "sms" || caps.Address(message().To) != "138 0000 0000" {
		t.Errorf("capabilities %+v: want Resend, OptOut sms, addressed by phone", caps)
	}
	ctx := context.Background()
	_, err = s.Send(ctx, message())
	if classOf(err) != temporary {
		t.Errorf("503: %v; want temporary", err)
	}
	_, err = s.Send(ctx, message())
	var cerr *channels.Error
	if classOf(err) != quota || !errors.As(err, &cerr) || cerr.RetryAfter != 2*time.Minute {
		t.Errorf("429 with Retry-After 120: %v; want quota after 2m", err)
	}
	if _, err = s.Send(ctx, message()); classOf(err) != permanent {
		t.Errorf("400: %v; want permanent", err)
	}
	if _, err = s.Send(ctx, message()); err != nil {
		t.Errorf("200: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.badSig != 0 {
		t.Errorf("%d requests with a bad signature", g.badSig)
	}
	for _, id := range g.ids {
		if id != "wj-42" {
			t.Errorf("ids %v; want the delivery's key on every retry", g.ids)
			break
		}
	}
	want := WebhookRequest{ID: "wj-42", Phone: "+8613800000000", Template: "SMS_123", Params: map[string]string{"name": "小明", "code": "1234"}}
	if len(g.bodies) == 0 || !reflect.DeepEqual(g.bodies[0], want) {
		t.Errorf("bodies %+v; want %+v", g.bodies, want)
	}

	// No answer at all: temporary.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	s2, _ := New(Config{Provider: Webhook, WebhookURL: dead.URL, WebhookSecret: "gw-secret", Logger: quiet})
	if _, err := s2.Send(ctx, message()); classOf(err) != temporary {
		t.Errorf("no answer: %v; want temporary", err)
	}
}

func TestLogProviderSaysItIsDevelopment(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	var mu sync.Mutex
	s, err := New(Config{Provider: Log, Logger: slog.New(slog.NewTextHandler(&lockedWriter{&buf, &mu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Send(context.Background(), message())
	if err != nil || !res.Sandbox {
		t.Fatalf("Send: %+v, %v; want sandbox", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "development log provider") || !strings.Contains(buf.String(), "NOT sent") {
		t.Errorf("log line %q does not say it is the development provider and nothing was sent", buf.String())
	}
	if !s.Development() {
		t.Error("Development() is false for the log provider")
	}
}

type lockedWriter struct {
	b  *strings.Builder
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// countingLimiter refuses once a key was taken n times.
type countingLimiter struct {
	mu   sync.Mutex
	seen map[string]int
}

func (l *countingLimiter) Take(_ context.Context, key string, r channels.Rate) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[key] >= r.N {
		return &channels.Error{Class: channels.ErrQuota, Msg: "limit of " + key, RetryAfter: time.Minute}
	}
	l.seen[key]++
	return nil
}

func TestPhoneRateLimit(t *testing.T) {
	t.Parallel()
	g := &gateway{}
	srv := httptest.NewServer(g)
	defer srv.Close()
	lim := &countingLimiter{seen: map[string]int{}}
	s, err := New(Config{Provider: Webhook, WebhookURL: srv.URL, WebhookSecret: "gw-secret", Limiter: lim,
		PhoneRates: []channels.Rate{{N: 2, Per: time.Hour}}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := s.Send(context.Background(), message())
		if want := map[bool]class{true: sent, false: quota}[i < 2]; classOf(err) != want {
			t.Errorf("send %d: %v; want %s", i+1, err, want)
		}
	}
	g.mu.Lock()
	if len(g.ids) != 2 {
		t.Errorf("the gateway got %d messages; want 2 (the third held by the per-phone limit)", len(g.ids))
	}
	g.mu.Unlock()
	if lim.seen["sms:phone:+8613800000000"] != 2 || lim.seen["sms:webhook"] != 2 {
		t.Errorf("limiter keys %v; want sms:phone:+8613800000000 and sms:webhook", lim.seen)
	}
}

func TestNoPhoneIsUnreachable(t *testing.T) {
	t.Parallel()
	s, _ := New(Config{Provider: Log, Logger: quiet})
	for _, phone := range []string{"", "not a phone", "12345"} {
		msg := message()
		msg.To.Phone = phone
		if _, err := s.Send(context.Background(), msg); classOf(err) != unreachable {
			t.Errorf("phone %q: %v; want unreachable", phone, err)
		}
	}
}

func TestE164(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"13800000000":       "+8613800000000",
		"138-0000-0000":     "+8613800000000",
		"+86 138 0000 0000": "+8613800000000",
		"8613800000000":     "+8613800000000",
		"008613800000000":   "+8613800000000",
		"+85291234567":      "+85291234567",
		"+861234":           "",
		"02112345678":       "",
		"abc":               "",
	} {
		got, ok := E164(in)
		if got != want || ok != (want != "") {
			t.Errorf("E164(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if got := Mainland("+8613800000000"); got != "13800000000" {
		t.Errorf("Mainland = %q", got)
	}
}

func TestNewNamesMissingSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Provider: Aliyun}, "WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_ID"},
		{Config{Provider: Tencent, TencentSecretID: "x"}, "WEJOURNEY_SMS_TENCENT_SDK_APP_ID"},
		{Config{Provider: Webhook}, "WEJOURNEY_SMS_WEBHOOK_URL"},
		{Config{Provider: Webhook, WebhookURL: "https://gw.example/sms"}, "WEJOURNEY_SMS_WEBHOOK_SECRET"},
		{Config{Provider: "twilio"}, "WEJOURNEY_SMS_PROVIDER"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v; want it to name %s", tc.cfg, err, tc.want)
		}
	}
}

// A provider that takes the request and does not answer in time may have
// sent the SMS: the error says so (context.DeadlineExceeded), so the
// engine records the delivery as unknown instead of sending it twice
// through a provider that does not dedupe.
func TestTimeoutIsAmbiguous(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	for _, cfg := range []Config{
		{Provider: Aliyun, SignName: "s", AliyunAccessKeyID: "a", AliyunAccessKeySecret: "b", AliyunEndpoint: hang.URL},
		{Provider: Tencent, SignName: "s", TencentSecretID: "a", TencentSecretKey: "b", TencentSDKAppID: "1", TencentEndpoint: hang.URL},
	} {
		cfg.Timeout, cfg.Logger = time.Second, quiet
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Send(context.Background(), message())
		var cerr *channels.Error
		if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &cerr) || s.Channels()[channels.SMS].Resend {
			t.Errorf("%s: a call that timed out: %v; want an error wrapping context.DeadlineExceeded, no provider answer, and no resend", cfg.Provider, err)
		}
	}
}
