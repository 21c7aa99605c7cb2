package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels/sms"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// smsGateway is a brand's SMS gateway on loopback (the webhook provider's
// far end): it checks X-Wejourney-Signature and answers the statuses in
// fail first, then 200.
type smsGateway struct {
	mu     sync.Mutex
	got    []sms.WebhookRequest
	badSig int
	fail   []int
}

func (g *smsGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !sms.Verify("gateway-secret", body, r.Header.Get(sms.SignatureHeader)) {
		g.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var in sms.WebhookRequest
	if err := json.Unmarshal(body, &in); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	g.got = append(g.got, in)
	if len(g.fail) > 0 {
		status := g.fail[0]
		g.fail = g.fail[1:]
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// requests returns what the gateway accepted (signature valid) and how
// many requests it refused for a bad signature.
func (g *smsGateway) requests() ([]sms.WebhookRequest, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]sms.WebhookRequest(nil), g.got...), g.badSig
}

// newSMSHarness starts wejourney with the webhook SMS provider aimed at a
// fake gateway, the reply callbacks on, and the journeys given.
func newSMSHarness(t *testing.T, g *smsGateway, journeys map[string]string) *harness {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	cfg := testConfig(t, fake, journeys)
	cfg.SMSProvider, cfg.SMSWebhookURL, cfg.SMSWebhookSecret = "webhook", srv.URL+"/send", "gateway-secret"
	cfg.SMSUplinkToken = "uplink-token"
	return startHarness(t, cfg, fake)
}

// The webhook provider follows DESIGN's contract: a signed POST with the
// delivery's id; a 503 is retried by the engine with the same id, and the
// 200 that follows makes the delivery sent.
func TestSMSWebhookRetriedWithTheSameID(t *testing.T) {
	parallel(t)
	g := &smsGateway{fail: []int{http.StatusServiceUnavailable}}
	h := newSMSHarness(t, g, map[string]string{"paid.yaml": `
key: paid
trigger: { event: order.paid }
steps:
  - id: receipt
    send: { channel: sms, category: transactional, template: SMS_RECEIPT, params: { order: "{{ .event.order }}" } }
`})
	if got := h.postEvents(`{"id": "o-1", "type": "order.paid", "member": {"phone": "138-0000-0001"}, "props": {"order": "A-1"}}`); got != http.StatusAccepted {
		t.Fatalf("POST /api/v1/events: %d", got)
	}
	h.eventually("the SMS to be sent after the gateway's 503", 20*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ? AND status = ?", "sms", model.DeliverySent) == 1
	})
	got, bad := g.requests()
	if bad != 0 {
		t.Errorf("%d requests with a bad X-Wejourney-Signature", bad)
	}
	if len(got) != 2 {
		t.Fatalf("the gateway got %d requests; want 2 (a 503, then the engine's retry)", len(got))
	}
	if got[0].ID == "" || got[0].ID != got[1].ID {
		t.Errorf("ids %q and %q: want the delivery's id, the same on the retry", got[0].ID, got[1].ID)
	}
	want := sms.WebhookRequest{ID: got[0].ID, Phone: "+8613800000001", Template: "SMS_RECEIPT", Params: map[string]string{"order": "A-1"}}
	if fmt.Sprint(got[1]) != fmt.Sprint(want) {
		t.Errorf("the gateway got %+v; want %+v", got[1], want)
	}
	var d model.Delivery
	if err := h.db.Where("channel = ?", "sms").First(&d).Error; err != nil {
		t.Fatal(err)
	}
	if got[0].ID != fmt.Sprintf("wj-%d", d.ID) {
		t.Errorf("id %q; want wj-%d (the delivery)", got[0].ID, d.ID)
	}
}

// optOutJourneys: a marketing SMS on promo.sent, a transactional one (a
// code) on code.requested.
var optOutJourneys = map[string]string{
	"promo.yaml": `
key: promo
trigger: { event: promo.sent }
steps:
  - id: promo
    send: { channel: sms, template: SMS_PROMO }
`,
	"code.yaml": `
key: code
trigger: { event: code.requested }
steps:
  - id: code
    send: { channel: sms, category: transactional, template: SMS_CODE, params: { code: "{{ .event.code }}" } }
`,
	"bye.yaml": `
key: bye
trigger: { event: sms.unsubscribed }
steps:
  - { id: bye_tag, update: { add_tags: [sms_unsubscribed] } }
`,
}

// checkOptedOut: once the member with phone opted out, a marketing SMS is
// not sent (the delivery is unreachable, the gateway not called) and a
// transactional one still is.
func checkOptedOut(t *testing.T, h *harness, g *smsGateway, phone string) {
	t.Helper()
	h.eventually("the member's SMS opt-out", 10*time.Second, func() bool {
		var m model.Member
		return h.db.Where("phone = ?", phone).First(&m).Error == nil && m.OptedOut("sms")
	})
	// The reply becomes sms.unsubscribed, which journeys start on.
	h.eventually("a journey on sms.unsubscribed", 10*time.Second, func() bool {
		var m model.Member
		return h.db.Where("phone = ?", phone).First(&m).Error == nil && slices.Contains(m.Tags, "sms_unsubscribed")
	})
	if got := h.postEvents(fmt.Sprintf(`{"id": "promo-%s", "type": "promo.sent", "member": {"phone": %q}}`, phone, phone)); got != http.StatusAccepted {
		t.Fatalf("promo.sent: %d", got)
	}
	h.eventually("the marketing SMS to be refused", 10*time.Second, func() bool {
		return h.count(&model.StepVisit{}, "step_id = ? AND outcome = ?", "promo", "unreachable") == 1
	})
	var d model.Delivery
	if err := h.db.Joins("JOIN step_visits ON step_visits.id = deliveries.step_visit_id").
		Where("step_visits.step_id = ?", "promo").First(&d).Error; err != nil {
		t.Fatal(err)
	}
	if d.Status != model.DeliveryFailed || !strings.Contains(d.Error, "opted out") {
		t.Errorf("the marketing delivery is %s (%q); want failed: opted out", d.Status, d.Error)
	}
	if got, _ := g.requests(); len(got) != 0 {
		t.Errorf("the gateway got %+v; want nothing for an opted-out member's marketing SMS", got)
	}
	if got := h.postEvents(fmt.Sprintf(`{"id": "code-%s", "type": "code.requested", "member": {"phone": %q}, "props": {"code": "4321"}}`, phone, phone)); got != http.StatusAccepted {
		t.Fatalf("code.requested: %d", got)
	}
	h.eventually("the transactional SMS to be sent", 10*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ? AND status = ?", "sms", model.DeliverySent) == 1
	})
	if got, _ := g.requests(); len(got) != 1 || got[0].Template != "SMS_CODE" || got[0].Params["code"] != "4321" {
		t.Errorf("the gateway got %+v; want the code only", got)
	}
}

// A member who replied TD, posted by the brand as sms.received through
// the events API, gets no marketing SMS; codes still reach them.
func TestSMSOptOutByReplyThroughEventsAPI(t *testing.T) {
	parallel(t)
	g := &smsGateway{}
	h := newSMSHarness(t, g, optOutJourneys)
	if got := h.postEvents(`{"id": "r-1", "type": "sms.received", "member": {"phone": "13800000002"}, "props": {"text": " td "}}`); got != http.StatusAccepted {
		t.Fatalf("POST sms.received: %d; want 202 (sms.* is not reserved)", got)
	}
	checkOptedOut(t, h, g, "13800000002")
}

// The same through Aliyun's reply push (POST /sms/aliyun/uplink).
func TestSMSOptOutByAliyunUplink(t *testing.T) {
	parallel(t)
	g := &smsGateway{}
	h := newSMSHarness(t, g, optOutJourneys)
	push := `[{"phone_number": "13800000003", "send_time": "2026-11-24 18:30:00", "content": "退订", "sign_name": "微旅程", "dest_code": "1234", "sequence_id": 99}]`
	if status, _ := h.request(http.MethodPost, "/sms/aliyun/uplink?token=wrong", push, ""); status != http.StatusForbidden {
		t.Errorf("a push with the wrong token: %d; want 403", status)
	}
	status, answer := h.request(http.MethodPost, "/sms/aliyun/uplink?token=uplink-token", push, "")
	if status != http.StatusOK || !strings.Contains(string(answer), `"code":0`) {
		t.Fatalf("Aliyun push: %d %s; want 200 {\"code\":0}", status, answer)
	}
	if n := h.count(&model.Event{}, "type = ?", "sms.received"); n != 1 {
		t.Errorf("%d sms.received events stored; want 1", n)
	}
	checkOptedOut(t, h, g, "13800000003")
}

// The startup banner labels the log provider as development (nothing is
// sent), names a real provider, and never shows the SMS secrets.
func TestBannerLabelsSMSProvider(t *testing.T) {
	parallel(t)
	for _, tc := range []struct {
		cfg  config.Config
		want string
	}{
		{config.Config{SMSProvider: "log"}, "log provider (DEVELOPMENT): SMS are logged, NOT sent"},
		{config.Config{SMSProvider: "aliyun", SMSSignName: "微旅程", SMSAliyunAccessKeySecret: "ak-secret-value",
			SMSUplinkToken: "uplink-secret-value"}, `aliyun provider, signature "微旅程"`},
		{config.Config{SMSProvider: "webhook", SMSWebhookSecret: "webhook-secret-value"}, "webhook provider"},
	} {
		var banner bytes.Buffer
		printBanner(&banner, &App{Cfg: tc.cfg, Addr: "127.0.0.1:8080", Opts: Options{Role: RoleAll}})
		out := banner.String()
		if !strings.Contains(out, tc.want) {
			t.Errorf("banner of %s does not say %q:\n%s", tc.cfg.SMSProvider, tc.want, out)
		}
		if strings.Contains(out, "secret-value") {
			t.Errorf("banner shows an SMS secret:\n%s", out)
		}
	}
}
