package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

// postEvents posts a body to the events API with the test key and returns
// the status.
func (h *harness) postEvents(body string) int {
	h.t.Helper()
	status, _ := h.request(http.MethodPost, "/api/v1/events", body, "test-api-key")
	return status
}

// Followers from before wejourney was connected are known only from brand
// events: their subscription is unknown, and WeChat sends to them are
// attempted. WeChat's 43004 answer settles a member as unsubscribed and the
// step takes its fallback.
func TestBrandEventForUnseenFollowerSends(t *testing.T) {
	parallel(t)
	h := newHarness(t, map[string]string{"paid.yaml": `
key: paid
trigger: { event: order.paid }
steps:
  - id: thanks
    send: { channel: wechat.text, text: "谢谢惠顾 {{ .event.order }}", fallback: by_sms }
  - id: by_sms
    send: { channel: sms, template: SMS_THANKS }
`})
	const n = 20
	var sb strings.Builder
	sb.WriteString(`{"events": [`)
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"id": "order-%d", "type": "order.paid", "member": {"openid": "o-old-%d", "appid": %q, "phone": "1380000%04d"}, "props": {"order": "A-%d"}}`,
			i, i, testAppID, i, i)
	}
	sb.WriteString("]}")
	h.fake.SetError("o-old-0", 43004) // this one unfollowed long ago
	if got := h.postEvents(sb.String()); got != http.StatusAccepted {
		t.Fatalf("POST /api/v1/events: %d; want 202", got)
	}
	for i := 1; i < n; i++ {
		msgs := h.waitMessages(fmt.Sprintf("o-old-%d", i), 1, 10*time.Second)
		if want := fmt.Sprintf("谢谢惠顾 A-%d", i); msgs[0].Text != want {
			t.Errorf("o-old-%d got %q; want %q", i, msgs[0].Text, want)
		}
	}
	h.eventually("the unfollowed member to take the SMS fallback", 10*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ? AND status = ?", "sms", model.DeliverySandbox) == 1
	})
	var m model.Member
	if err := h.db.Where("open_id = ?", "o-old-0").First(&m).Error; err != nil {
		t.Fatal(err)
	}
	if m.Subscription(testAppID) != model.SubscriptionUnsubscribed {
		t.Errorf("after WeChat answered 43004 the member's subscription is %q; want unsubscribed", m.Subscription(testAppID))
	}
	var others int64
	h.db.Model(&model.Member{}).Where("open_id LIKE ? AND subscriptions IS NULL", "o-old-%").Count(&others)
	if others != n-1 {
		t.Errorf("%d of the %d members WeChat accepted messages for are still unknown; want all (a send does not prove a follow)", others, n-1)
	}
	if got := h.count(&model.Delivery{}, "channel = ? AND status = ?", "wechat.text", model.DeliverySent); got != n-1 {
		t.Errorf("%d WeChat messages sent; want %d", got, n-1)
	}
}
