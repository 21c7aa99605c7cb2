package journey_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// unionids is an Enricher that knows the unionid of some openids, the way
// the Official Account's user info would tell it.
type unionids map[string]string

func (u unionids) Enrich(_ context.Context, evs []*model.Event) (map[int64]model.MemberRef, error) {
	out := map[int64]model.MemberRef{}
	for _, ev := range evs {
		if id, ok := u[ev.Member.OpenID]; ok && ev.Member.UnionID == "" {
			out[ev.ID] = model.MemberRef{UnionID: id}
		}
	}
	return out, nil
}

const waitingJourney = `
key: nurture
trigger: { event: order.paid }
steps:
  - { id: pause, wait: 1h, next: hello }
  - { id: hello, send: { channel: wechat.text, text: hi } }
`

// A member known from the brand's system (user_id and unionid) and a
// follower whose unionid the worker looks up are one person: the follow
// merges them. Both histories stay, and of their two enrollments in one
// journey one stays.
func TestMergeByUnionID(t *testing.T) {
	t.Parallel()
	known := unionids{}
	h := newHarnessWith(t, func(c *journey.Config) { c.Enrich = known })
	h.publish(waitingJourney)
	h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{UserID: "crm-7", UnionID: "u1"}})
	h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{AppID: testAppID, OpenID: "o2", UserID: "crm-9"}})
	// o1's unionid is not known yet: o1 is a member of its own.
	h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{AppID: testAppID, OpenID: "o1"}})
	known["o1"] = "u1"
	h.subscribe("o1", "store_1")
	var live []model.Member
	if err := h.db.Where("merged_into IS NULL").Order("id").Find(&live).Error; err != nil {
		t.Fatal(err)
	}
	if len(live) != 2 {
		t.Fatalf("%d members; want 2 (crm-7 with o1 merged, crm-9)", len(live))
	}
	m := live[0]
	if m.UserID != "crm-7" || m.OpenID != "o1" || m.UnionID != "u1" || m.Subscription(testAppID) != model.SubscriptionSubscribed {
		t.Errorf("merged member: user_id %q openid %q unionid %q subscription %q; want crm-7, o1, u1, subscribed",
			m.UserID, m.OpenID, m.UnionID, m.Subscription(testAppID))
	}
	var ids []model.MemberIdentity
	if err := h.db.Where("member_id = ?", m.ID).Order("kind").Find(&ids).Error; err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 {
		t.Errorf("identities of the merged member: %+v; want openid, unionid and user_id", ids)
	}
	var evs int64
	h.db.Model(&model.Event{}).Where("member_id = ?", m.ID).Count(&evs)
	if evs != 3 {
		t.Errorf("the merged member has %d events; want 3: both histories (2 orders) and the follow", evs)
	}
	var active int64
	h.db.Model(&model.Enrollment{}).Where("member_id = ? AND status = ?", m.ID, model.EnrollmentActive).Count(&active)
	if active != 1 {
		t.Errorf("the merged member is active %d times in the journey; want 1", active)
	}
	var merged model.Enrollment
	if err := h.db.Where("end_reason = ?", journey.ReasonMerged).First(&merged).Error; err != nil {
		t.Errorf("no enrollment ended as merged: %v", err)
	}
	// The one left sends once, to the follower's openid.
	h.clk.Advance(2 * 60 * 60e9)
	h.sweep()
	got := map[string]int{}
	for _, s := range h.rec.sent() {
		got[s.OpenID]++
	}
	if diff := cmp.Diff(map[string]int{"o1": 1, "o2": 1}, got); diff != "" {
		t.Errorf("messages per openid (-want +got):\n%s", diff)
	}
}

// A phone names one person only when the brand says so (MergeBy).
func TestMergeByPhoneOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mergeBy []string
		want    int
	}{{nil, 2}, {[]string{model.IdentityPhone}, 1}} {
		h := newHarnessWith(t, func(c *journey.Config) { c.MergeBy = tc.mergeBy })
		h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{UserID: "crm-1", Phone: "13800000000"}})
		h.route(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{UserID: "crm-2"}})
		h.route(&model.Event{Type: "form.submitted", Source: "api", Member: model.MemberRef{UserID: "crm-2", Phone: "13800000000"}})
		var n int64
		h.db.Model(&model.Member{}).Where("merged_into IS NULL").Count(&n)
		if int(n) != tc.want {
			t.Errorf("MergeBy %v: %d members; want %d", tc.mergeBy, n, tc.want)
		}
	}
}

// A member.updated event emits member.attribute_changed for each attribute
// it changed, and a journey can start (or exit) on it.
func TestAttributeChanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: upgraded
trigger: { event: member.attribute_changed, where: 'event.name == "tier" && event.new == "gold"' }
entry: { once: true }
steps:
  - { id: hello, send: { channel: wechat.text, text: "{{ .event.old }} → {{ .event.new }}" } }
`)
	h.subscribe("o1", "")
	upd := func(props map[string]any) {
		h.route(&model.Event{Type: "member.updated", Source: "api", Member: model.MemberRef{AppID: testAppID, OpenID: "o1"}, Props: props})
		h.drain()
	}
	upd(map[string]any{"tier": "silver", "city": "上海"})
	upd(map[string]any{"tier": "gold", "city": "上海"})
	upd(map[string]any{"tier": "gold"})
	var changes []model.Event
	if err := h.db.Where("type = ?", "member.attribute_changed").Order("id").Find(&changes).Error; err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Props["name"].(string)+"="+c.Props["new"].(string))
	}
	if diff := cmp.Diff([]string{"city=上海", "tier=silver", "tier=gold"}, got); diff != "" {
		t.Errorf("attribute changes (-want +got):\n%s", diff)
	}
	sent := h.rec.sent()
	if len(sent) != 1 || sent[0].Text != "silver → gold" {
		t.Errorf("sent %+v; want one message \"silver → gold\"", sent)
	}
}

// An update step's set emits member.attribute_changed too, once per
// attribute it changed: another journey starts on it, and setting the
// same value again emits nothing.
func TestUpdateStepEmitsAttributeChanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(`
key: stage
trigger: { event: wechat.subscribe }
steps:
  - { id: aware, update: { set: { stage: aware, source: qr } } }
`)
	h.publish(`
key: aware
trigger: { event: member.attribute_changed, where: 'event.name == "stage" && event.new == "aware"' }
steps:
  - { id: hello, send: { channel: wechat.text, text: "{{ .event.old }}→{{ .event.new }}" } }
`)
	h.subscribe("o1", "")
	h.drain()
	h.drain() // the attribute changes route after the step's transaction
	h.unsubscribe("o1")
	h.subscribe("o1", "") // the same values again: no change
	h.drain()
	h.drain()
	var changes []model.Event
	if err := h.db.Where("type = ?", "member.attribute_changed").Order("id").Find(&changes).Error; err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Props["name"].(string)+"="+c.Props["new"].(string))
	}
	if diff := cmp.Diff([]string{"source=qr", "stage=aware"}, got); diff != "" {
		t.Errorf("attribute changes (-want +got):\n%s", diff)
	}
	sent := h.rec.sent()
	if len(sent) != 1 || sent[0].Text != "→aware" {
		t.Errorf("sent %+v; want one message \"→aware\"", sent)
	}
}
