package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels/webhook"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// crmRequest is one request a brand's CRM received from a webhook step.
type crmRequest struct {
	method, path, key, auth, contentType string
	signed                               bool
	body                                 map[string]any
}

// A webhook step calls the brand's CRM with the member in a JSON body
// (a nickname with quotes stays valid JSON through `json`), signed with
// WEJOURNEY_WEBHOOK_SECRET; the CRM's 503 is retried with the same
// Idempotency-Key, and its 200 makes the delivery sent, once.
func TestWebhookStepCallsTheCRM(t *testing.T) {
	parallel(t)
	var (
		mu   sync.Mutex
		got  []crmRequest
		fail = 1
	)
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		req := crmRequest{method: r.Method, path: r.URL.Path, key: r.Header.Get("Idempotency-Key"), auth: r.Header.Get("Authorization"),
			contentType: r.Header.Get("Content-Type"), signed: webhook.Verify("crm-secret", raw, r.Header.Get(webhook.SignatureHeader))}
		if err := json.Unmarshal(raw, &req.body); err != nil {
			t.Errorf("the CRM got a body that is not JSON: %v: %s", err, raw)
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, req)
		if fail > 0 {
			fail--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer crm.Close()
	fake := fakewx.New(fakewx.Config{})
	defer fake.Close()
	cfg := testConfig(t, fake, map[string]string{"lead.yaml": `
key: lead
trigger: { event: form.submitted }
steps:
  - id: crm
    webhook:
      url: "` + crm.URL + `/leads?source={{ .event.form }}"
      method: put
      headers: { Authorization: "Bearer crm-token" }
      body: '{"phone": {{ json .member.phone }}, "name": {{ json .event.name }}, "form": "{{ .event.form }}"}'
`})
	cfg.WebhookSecret = "crm-secret"
	h := startHarness(t, cfg, fake)
	if status := h.postEvents(`{"id": "f-1", "type": "form.submitted", "member": {"phone": "13800000002"}, "props": {"form": "bind", "name": "小\"明\""}}`); status != http.StatusAccepted {
		t.Fatalf("POST /api/v1/events: %d", status)
	}
	h.eventually("the webhook to succeed after the CRM's 503", 20*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ? AND status = ?", "webhook", model.DeliverySent) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("the CRM got %d requests; want 2 (a 503, then the retry)", len(got))
	}
	var d model.Delivery
	if err := h.db.Where("channel = ?", "webhook").First(&d).Error; err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.method != http.MethodPut || r.path != "/leads" || r.auth != "Bearer crm-token" || r.contentType != "application/json" || !r.signed {
			t.Errorf("request %d: %s %s auth %q type %q signed %v; want a signed PUT /leads with the Authorization header and JSON",
				i, r.method, r.path, r.auth, r.contentType, r.signed)
		}
		if want := fmt.Sprintf("wj-%d", d.ID); r.key != want {
			t.Errorf("request %d: Idempotency-Key %q; want %q (the delivery, the same on the retry)", i, r.key, want)
		}
		if r.body["phone"] != "13800000002" || r.body["name"] != `小"明"` || r.body["form"] != "bind" {
			t.Errorf("request %d: body %v; want the member's phone, the name with its quotes, the form", i, r.body)
		}
	}
}
