package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// After a follow WeChat takes three customer-service messages within a
// minute: a journey of four sends three, and the fourth takes its fallback
// without calling WeChat.
func TestFourMessagesAfterAFollow(t *testing.T) {
	parallel(t)
	h := newHarness(t, map[string]string{"four.yaml": `
key: four
trigger: { event: wechat.subscribe }
steps:
  - { id: m1, send: { channel: wechat.text, text: "一" }, next: m2 }
  - { id: m2, send: { channel: wechat.text, text: "二" }, next: m3 }
  - { id: m3, send: { channel: wechat.text, text: "三" }, next: m4 }
  - id: m4
    send: { channel: wechat.text, text: "四", template_id: TPL_FOUR, fallback: wechat.template }
`})
	if status, _ := h.send(h.safe, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_four", Scene: "store_001"}); status != http.StatusOK {
		t.Fatalf("subscribe: %d", status)
	}
	msgs := h.waitMessages("o_four", 4, 10*time.Second)
	var texts, templates int
	for _, m := range msgs {
		switch m.Kind {
		case "custom":
			texts++
		case "template":
			templates++
		}
	}
	if texts != 3 || templates != 1 {
		t.Fatalf("WeChat got %d customer-service and %d template messages; want 3 and 1 (the fourth text never called)", texts, templates)
	}
	h.eventually("the fourth step to take its fallback", 10*time.Second, func() bool {
		return h.visit("o_four", "m4").Outcome == "fallback:wechat.template"
	})
	var d model.Delivery
	if err := h.db.Where("channel = ? AND status = ?", "wechat.text", model.DeliveryFailed).First(&d).Error; err != nil {
		t.Fatalf("the delivery log has no failed text: %v", err)
	}
	if d.ErrorCode != 0 || d.Error == "" {
		t.Errorf("the fourth text's delivery says %d %q; want why it was not sent (allowance spent, not called)", d.ErrorCode, d.Error)
	}
}
