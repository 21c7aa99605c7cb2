package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// wecomWelcomeJourney answers a contact add through a store's contact-me
// link: a welcome with a link (or, when WeCom refuses the code, a note to
// the rep instead), a note to the rep, and a corp tag.
const wecomWelcomeJourney = `key: wecom-welcome
name: WeCom welcome
trigger:
  event: wecom.contact_added
  where: 'event.state startsWith "store_"'
steps:
  - id: welcome
    send:
      channel: wecom.welcome
      text: "欢迎光临 {{ .event.state }}"
      extra: { link_url: "https://brand.example/coupon", link_title: "新客礼券" }
      fallback: missed
    next: notify
  - id: missed
    send: { channel: wecom.text, text: "no welcome was sent to a customer from {{ .event.state }}: greet them yourself" }
    next: tag
  - id: notify
    send: { channel: wecom.text, text: "a customer from {{ .event.state }} just added you" }
    next: tag
  - id: tag
    send: { channel: wecom.mark_tag, extra: { add_tags: "etStoreCustomer" } }
`

// weComAddCodeXML is weComAddXML with the welcome code WeCom issued.
func weComAddCodeXML(corpid, rep, externalID, state, code string) string {
	return strings.Replace(weComAddXML(corpid, rep, externalID, state), "<![CDATA[WC1]]>", "<![CDATA["+code+"]]>", 1)
}

// A WeCom add with a welcome_code runs a journey whose wecom.welcome,
// wecom.text (to the rep) and wecom.mark_tag each reach WeCom once, with
// the bodies WeCom documents. When another app used the code first
// (41051), the welcome is not retried: the step takes its fallback.
func TestWeComJourneySends(t *testing.T) {
	parallel(t)
	const (
		corpid, agentid, token = "wwtestcorp00000002", "1000002", "wecom-test-token"
		aesKey                 = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
		app                    = corpid + "/" + agentid
	)
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	wc := fakewecom.New()
	t.Cleanup(wc.Close)
	wc.AddCorp(corpid, "wecom-secret")
	cfg := testConfig(t, fake, map[string]string{"wecom.yaml": wecomWelcomeJourney})
	cfg.WeComCorpID, cfg.WeComAgentID, cfg.WeComSecret, cfg.WeComToken, cfg.WeComAESKey = corpid, agentid, "wecom-secret", token, aesKey
	cfg.WeComAPIBase = wc.URL
	h := startHarness(t, cfg, fake)

	visitDone := func(ext, step string) bool {
		var v model.StepVisit
		err := h.db.Joins("JOIN members ON members.id = step_visits.member_id").
			Where("members.external_user_id = ? AND step_visits.step_id = ?", ext, step).First(&v).Error
		return err == nil && v.Status == model.VisitDone
	}

	// 1. The welcome goes out; the rep is told; the customer is tagged.
	code := wc.IssueWelcomeCode()
	if status, answer := h.postWeCom(corpid, agentid, token, aesKey, weComAddCodeXML(corpid, "rep_wang", "wm_cust_1", "store_001", code)); status != 200 || answer != "success" {
		t.Fatalf("callback answered %d %q", status, answer)
	}
	h.eventually("the journey to tag the customer", 15*time.Second, func() bool { return visitDone("wm_cust_1", "tag") })

	welcomes := wc.Welcomes()
	if len(welcomes) != 1 || welcomes[0].Code != code || welcomes[0].Errcode != 0 {
		t.Fatalf("welcomes = %+v, want one accepted", welcomes)
	}
	var wbody struct {
		WelcomeCode string `json:"welcome_code"`
		Text        struct{ Content string }
		Attachments []struct {
			MsgType string `json:"msgtype"`
			Link    struct{ Title, URL string }
		}
	}
	json.Unmarshal(welcomes[0].Body, &wbody)
	if wbody.Text.Content != "欢迎光临 store_001" || len(wbody.Attachments) != 1 || wbody.Attachments[0].MsgType != "link" ||
		wbody.Attachments[0].Link.URL != "https://brand.example/coupon" || wbody.Attachments[0].Link.Title != "新客礼券" {
		t.Errorf("welcome body %s", welcomes[0].Body)
	}
	if lat := welcomes[0].At.Sub(welcomes[0].IssuedAt); lat > fakewecom.WelcomeCodeTTL {
		t.Errorf("welcome sent %v after the code was issued", lat)
	}
	texts := wc.Requests(fakewecom.MessageSendPath)
	if len(texts) != 1 {
		t.Fatalf("message/send got %d requests, want 1", len(texts))
	}
	var tbody struct {
		ToUser  string `json:"touser"`
		AgentID int    `json:"agentid"`
		Text    struct{ Content string }
	}
	json.Unmarshal(texts[0].Body, &tbody)
	if tbody.ToUser != "rep_wang" || tbody.AgentID != 1000002 || tbody.Text.Content != "a customer from store_001 just added you" {
		t.Errorf("message/send body %s", texts[0].Body)
	}
	tags := wc.Requests(fakewecom.MarkTagPath)
	var mbody struct {
		UserID         string   `json:"userid"`
		ExternalUserID string   `json:"external_userid"`
		AddTag         []string `json:"add_tag"`
	}
	if len(tags) != 1 {
		t.Fatalf("mark_tag got %d requests, want 1", len(tags))
	}
	json.Unmarshal(tags[0].Body, &mbody)
	if mbody.UserID != "rep_wang" || mbody.ExternalUserID != "wm_cust_1" || strings.Join(mbody.AddTag, ",") != "etStoreCustomer" {
		t.Errorf("mark_tag body %s", tags[0].Body)
	}
	if n := h.count(&model.Delivery{}, "channel = ? AND status = ?", channels.WeComWelcome, model.DeliverySent); n != 1 {
		t.Errorf("sent welcome deliveries = %d, want 1", n)
	}

	// 2. Another app of the corp answers the add first: ours gets 41051 and
	// takes the fallback, once.
	code2 := wc.IssueWelcomeCode()
	other := wecom.New(wecom.Config{Accounts: fixedWeCom{wecom.Account{CorpID: corpid, Secret: "wecom-secret"}},
		APIBase: wc.URL, Logger: slog.New(slog.DiscardHandler)})
	if err := other.Call(context.Background(), corpid+"/1000099", "/cgi-bin/externalcontact/send_welcome_msg", nil,
		map[string]any{"welcome_code": code2, "text": map[string]string{"content": "the other app's welcome"}}, nil); err != nil {
		t.Fatalf("the other app's welcome: %v", err)
	}
	if status, _ := h.postWeCom(corpid, agentid, token, aesKey, weComAddCodeXML(corpid, "rep_li", "wm_cust_2", "store_002", code2)); status != 200 {
		t.Fatalf("callback answered %d", status)
	}
	h.eventually("the second journey to tag the customer", 15*time.Second, func() bool { return visitDone("wm_cust_2", "tag") })
	var second []fakewecom.WelcomeCall
	for _, w := range wc.Welcomes() {
		if w.Code == code2 {
			second = append(second, w)
		}
	}
	if len(second) != 2 || second[0].Errcode != 0 || second[1].Errcode != 41051 {
		t.Fatalf("calls with the second code = %+v, want the other app's and one 41051 (no retry)", second)
	}
	var d model.Delivery
	if err := h.db.Joins("JOIN members ON members.id = deliveries.member_id").
		Where("members.external_user_id = ? AND deliveries.channel = ?", "wm_cust_2", channels.WeComWelcome).First(&d).Error; err != nil {
		t.Fatal(err)
	}
	if d.Status != model.DeliveryFailed || d.ErrorCode != 41051 {
		t.Errorf("welcome delivery %s / %d / %s, want failed 41051", d.Status, d.ErrorCode, d.Error)
	}
	texts = wc.Requests(fakewecom.MessageSendPath)
	if len(texts) != 2 {
		t.Fatalf("message/send got %d requests, want 2", len(texts))
	}
	json.Unmarshal(texts[1].Body, &tbody)
	if tbody.ToUser != "rep_li" || !strings.Contains(tbody.Text.Content, "greet them yourself") {
		t.Errorf("fallback message %s", texts[1].Body)
	}
	if visitDone("wm_cust_2", "notify") {
		t.Error("the notify step ran after the fallback")
	}
	if n := len(wc.Requests(fakewecom.MarkTagPath)); n != 2 {
		t.Errorf("mark_tag requests = %d, want 2", n)
	}
}

// fixedWeCom resolves every app to one account.
type fixedWeCom struct{ a wecom.Account }

func (f fixedWeCom) Account(context.Context, string) (wecom.Account, error) { return f.a, nil }
