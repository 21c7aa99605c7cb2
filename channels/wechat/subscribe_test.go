package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/fakewx"
)

const mpAppID = "wxminiprog01"

// memGrants is an in-memory Grants with model.ClaimGrant's rules.
type memGrants struct {
	mu       sync.Mutex
	rows     []*memGrant
	released []int64
}

type memGrant struct {
	member     int64
	appid, tid string
	g          Grant
	delivery   int64 // 0: unused
}

func (m *memGrants) add(member int64, appid, tid, source, scene string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows = append(m.rows, &memGrant{member: member, appid: appid, tid: tid, g: Grant{Source: source, Scene: scene}})
}

func (m *memGrants) Claim(_ context.Context, member int64, appid, tid string, delivery int64) (Grant, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rows {
		if r.delivery == delivery {
			ok := r.member == member && r.appid == appid && r.tid == tid
			if ok {
				return r.g, true, nil
			}
			return Grant{}, false, nil
		}
	}
	for _, r := range m.rows {
		if r.delivery == 0 && r.member == member && r.appid == appid && r.tid == tid {
			r.delivery = delivery
			return r.g, true, nil
		}
	}
	return Grant{}, false, nil
}

func (m *memGrants) Release(_ context.Context, delivery int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.released = append(m.released, delivery)
	for _, r := range m.rows {
		if r.delivery == delivery {
			r.delivery = 0
		}
	}
	return nil
}

// unused counts the grants no delivery holds.
func (m *memGrants) unused() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.rows {
		if r.delivery == 0 {
			n++
		}
	}
	return n
}

var subAccounts = accounts{
	appID:       {AppID: appID, AppSecret: "secret"},
	mpAppID:     {AppID: mpAppID, AppSecret: "mp-secret"},
	"wxsandbox": {AppID: "wxsandbox"},
}

func newSubSender(t *testing.T, base string, g Grants) (*Sender, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	return NewSender(Config{Accounts: subAccounts, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		APIBase: base, Grants: g}), &logs
}

func subTo(openid, mpOpenID string) channels.Recipient {
	r := channels.Recipient{MemberID: 7}
	if openid != "" {
		r.AppID, r.OpenID = appID, openid
	}
	if mpOpenID != "" {
		r.MPAppID, r.MPOpenID = mpAppID, mpOpenID
	}
	return r
}

func TestSubscribeSendsOnTheGrantsAPI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		grantApp string
		source   string
		msg      channels.Message
		wantKind string
		wantApp  string
		wantTo   string
		wantBody string
	}{
		{
			name: "oa_once", grantApp: appID, source: "oa_once",
			msg: channels.Message{Text: "您的订单已发货", URL: "https://brand.example/o/1",
				Extra: map[string]string{"title": "发货通知", "miniprogram_appid": "wxmp", "miniprogram_pagepath": "pages/o?id=1"}},
			wantKind: fakewx.KindSubscribeOnce, wantApp: appID, wantTo: "o-oa",
			wantBody: `{"touser":"o-oa","template_id":"TPL","url":"https://brand.example/o/1",
				"miniprogram":{"appid":"wxmp","pagepath":"pages/o?id=1"},"scene":"1000","title":"发货通知",
				"data":{"content":{"value":"您的订单已发货"}}}`,
		},
		{
			name: "oa_popup", grantApp: appID, source: "oa_popup",
			msg:      channels.Message{URL: "https://brand.example/p", Data: map[string]string{"thing1": "积分到账", "time2": "2026-11-24"}},
			wantKind: fakewx.KindBizSend, wantApp: appID, wantTo: "o-oa",
			wantBody: `{"touser":"o-oa","template_id":"TPL","page":"https://brand.example/p",
				"data":{"thing1":{"value":"积分到账"},"time2":{"value":"2026-11-24"}},"miniprogram":{"appid":"","pagepath":""}}`,
		},
		{
			name: "miniprogram", grantApp: mpAppID, source: "miniprogram",
			msg:      channels.Message{Data: map[string]string{"thing1": "预约成功"}, Extra: map[string]string{"page": "pages/booking?id=9"}},
			wantKind: fakewx.KindMPSubscribe, wantApp: mpAppID, wantTo: "mp-o",
			wantBody: `{"touser":"mp-o","template_id":"TPL","page":"pages/booking?id=9",
				"data":{"thing1":{"value":"预约成功","color":""}},"miniprogram_state":"formal","lang":"zh_CN"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, fakewx.Config{})
			g := &memGrants{}
			g.add(7, tt.grantApp, "TPL", tt.source, "1000")
			s, _ := newSubSender(t, fake.URL, g)
			msg := tt.msg
			msg.Channel, msg.TemplateID, msg.DeliveryID, msg.To = channels.WeChatSubscribe, "TPL", 11, subTo("o-oa", "mp-o")
			res, err := s.Send(context.Background(), msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if res.ProviderID == "" {
				t.Error("no ProviderID")
			}
			got := fake.Messages()
			if len(got) != 1 {
				t.Fatalf("fake got %d messages, want 1", len(got))
			}
			m := got[0]
			if m.Kind != tt.wantKind || m.AppID != tt.wantApp || m.ToUser != tt.wantTo {
				t.Errorf("got kind %s app %s to %s, want %s %s %s", m.Kind, m.AppID, m.ToUser, tt.wantKind, tt.wantApp, tt.wantTo)
			}
			var gotBody, wantBody any
			if err := json.Unmarshal(m.Raw, &gotBody); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.wantBody), &wantBody); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantBody, gotBody); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSubscribeWithoutGrantCallsNothing(t *testing.T) {
	t.Parallel()
	base, hits := noHTTP(t)
	g := &memGrants{}
	g.add(7, appID, "OTHER", "oa_once", "1")
	s, _ := newSubSender(t, base, g)
	_, err := s.Send(context.Background(), channels.Message{Channel: channels.WeChatSubscribe, TemplateID: "TPL",
		DeliveryID: 1, To: subTo("o1", "mp1"), Text: "x", Extra: map[string]string{"title": "t"}})
	if !errors.Is(err, channels.ErrUnreachable) || !strings.Contains(err.Error(), "no authorisation for template TPL") {
		t.Errorf("err = %v, want ErrUnreachable: no authorisation for template TPL", err)
	}
	if hits.Load() != 0 {
		t.Errorf("%d HTTP calls, want none", hits.Load())
	}
}

func TestSubscribeOneSendPerAuthorisation(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	g := &memGrants{}
	g.add(7, appID, "TPL", "oa_once", "5")
	s, _ := newSubSender(t, fake.URL, g)
	msg := channels.Message{Channel: channels.WeChatSubscribe, TemplateID: "TPL", To: subTo("o1", ""),
		Text: "hi", Extra: map[string]string{"title": "t"}}
	msg.DeliveryID = 1
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatalf("first send: %v", err)
	}
	msg.DeliveryID = 2
	if _, err := s.Send(context.Background(), msg); !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("second send without a new authorisation: err = %v, want ErrUnreachable", err)
	}
	if n := len(fake.Messages()); n != 1 {
		t.Errorf("WeChat got %d messages, want 1", n)
	}
	g.add(7, appID, "TPL", "oa_once", "6") // the member authorises again
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatalf("send after a new authorisation: %v", err)
	}
	if n := len(fake.Messages()); n != 2 {
		t.Errorf("WeChat got %d messages, want 2", n)
	}
}

func TestSubscribeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code        int
		class       error // nil: temporary
		wantRelease bool
	}{
		{43101, channels.ErrUnreachable, false}, // the member refused: the authorisation is gone
		{40003, channels.ErrUnreachable, false},
		{40037, channels.ErrPermanent, true}, // WeChat refused the request: nothing spent
		{47001, channels.ErrPermanent, true},
		{47003, channels.ErrPermanent, true},
		{45009, channels.ErrQuota, false}, // retried by the engine on the same grant
		{-1, nil, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, fakewx.Config{})
			fake.SetError("o1", tt.code)
			g := &memGrants{}
			g.add(7, appID, "TPL", "oa_popup", "")
			s, _ := newSubSender(t, fake.URL, g)
			_, err := s.Send(context.Background(), channels.Message{Channel: channels.WeChatSubscribe, TemplateID: "TPL",
				DeliveryID: 3, To: subTo("o1", ""), Data: map[string]string{"thing1": "x"}})
			var ce *channels.Error
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("err = %v, want code %d", err, tt.code)
			}
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("err = %v, want class %v", err, tt.class)
			}
			if tt.class == nil && ce.Class != nil {
				t.Errorf("err = %v, want temporary", err)
			}
			if released := g.unused() == 1; released != tt.wantRelease {
				t.Errorf("authorisation given back = %v, want %v", released, tt.wantRelease)
			}
		})
	}
}

func TestSubscribeLocalErrors(t *testing.T) {
	t.Parallel()
	base, hits := noHTTP(t)
	msg := channels.Message{Channel: channels.WeChatSubscribe, TemplateID: "TPL", DeliveryID: 4, To: subTo("o1", ""),
		Data: map[string]string{"k": "v"}}

	noGrants, _ := newSubSender(t, base, nil)
	if _, err := noGrants.Send(context.Background(), msg); !errors.Is(err, channels.ErrPermanent) {
		t.Errorf("no grant store: err = %v, want ErrPermanent", err)
	}
	g := &memGrants{}
	g.add(7, appID, "TPL", "oa_once", "1")
	s, _ := newSubSender(t, base, g)
	if _, err := s.Send(context.Background(), msg); !errors.Is(err, channels.ErrPermanent) { // oa_once needs text and title
		t.Errorf("oa_once without title: err = %v, want ErrPermanent", err)
	}
	if g.unused() != 1 {
		t.Error("a message refused before sending spent the authorisation")
	}
	noAddr := msg
	noAddr.To = channels.Recipient{MemberID: 7}
	if _, err := s.Send(context.Background(), noAddr); !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("no openid: err = %v, want ErrUnreachable", err)
	}
	if hits.Load() != 0 {
		t.Errorf("%d HTTP calls, want none", hits.Load())
	}

	sb := &memGrants{}
	sb.add(7, "wxsandbox", "TPL", "oa_popup", "")
	sandbox, logs := newSubSender(t, base, sb)
	msg.To = channels.Recipient{MemberID: 7, AppID: "wxsandbox", OpenID: "o1"}
	res, err := sandbox.Send(context.Background(), msg)
	if err != nil || !res.Sandbox {
		t.Errorf("sandbox: %+v, %v; want Sandbox", res, err)
	}
	if !strings.Contains(logs.String(), "would send") {
		t.Error("sandbox send not logged")
	}
}

func TestSubscriptionsProvider(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	s, _ := newSubSender(t, fake.URL, nil) // the app's Sender has no grants
	g := &memGrants{}
	g.add(7, mpAppID, "TPL", "miniprogram", "")
	p := s.Subscriptions(g)
	caps := p.Channels()[channels.WeChatSubscribe]
	if caps.NeedsSubscribed || caps.Resend || !cmp.Equal(caps.Requires, []string{"template_id"}) {
		t.Errorf("capabilities %+v", caps)
	}
	if got := caps.Address(subTo("", "mp-o")); got != "mp-o" {
		t.Errorf("Address of a mini-program member = %q", got)
	}
	if _, ok := Capabilities()[channels.WeChatSubscribe]; !ok {
		t.Error("Capabilities() lacks wechat.subscribe_message")
	}
	_, err := p.Send(context.Background(), channels.Message{Channel: channels.WeChatSubscribe, TemplateID: "TPL", DeliveryID: 9,
		To: subTo("o-oa", "mp-o"), Data: map[string]string{"thing1": "x"}})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if m := fake.Messages(); len(m) != 1 || m[0].Kind != fakewx.KindMPSubscribe || m[0].ToUser != "mp-o" {
		t.Errorf("fake got %+v", m)
	}
}

// TestSubscribeDailyQuotaHolds: a 45009 holds the account's subscription
// API; the next send waits without calling WeChat and keeps its grant.
func TestSubscribeDailyQuotaHolds(t *testing.T) {
	t.Parallel()
	tt := setupThrottled(t)
	g := &memGrants{}
	g.add(7, appID, "TPL", "oa_popup", "")
	g.add(7, appID, "TPL", "oa_popup", "")
	p := tt.s.Subscriptions(g)
	msg := channels.Message{Channel: channels.WeChatSubscribe, TemplateID: "TPL", DeliveryID: 1, To: subTo("o1", ""),
		Data: map[string]string{"thing1": "x"}}
	tt.fake.SetError("o1", 45009)
	if _, err := p.Send(context.Background(), msg); !errors.Is(err, channels.ErrQuota) {
		t.Fatalf("first send: %v, want ErrQuota", err)
	}
	tt.fake.SetError("o1", 0)
	msg.DeliveryID = 2
	_, err := p.Send(context.Background(), msg)
	var ce *channels.Error
	if !errors.As(err, &ce) || ce.Code != 45009 || ce.RetryAfter <= 0 {
		t.Fatalf("send while held: %v, want the hold (45009, RetryAfter)", err)
	}
	if n := len(tt.fake.Messages()); n != 0 {
		t.Errorf("WeChat got %d messages while the quota was held", n)
	}
	if g.unused() != 0 {
		t.Error("a held delivery gave its grant back: its retry would have none")
	}
}

// Test sends (channels test, a test run sending to a tester) have no
// delivery: each spends an authorisation of its own, never the one an
// earlier test send spent, and a refused one gives back only its own.
func TestSubscribeTestSendsSpendOneGrantEach(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	g := &memGrants{}
	g.add(7, appID, "TPL", "oa_popup", "")
	g.add(8, appID, "TPL", "oa_popup", "")
	g.add(9, appID, "TPL", "oa_popup", "")
	s, _ := newSubSender(t, fake.URL, g)
	send := func(member int64, openid string) error {
		to := subTo(openid, "")
		to.MemberID = member
		_, err := s.Send(context.Background(), channels.Message{Channel: channels.WeChatSubscribe, TemplateID: "TPL", To: to,
			IdempotencyKey: channels.TestKey(), Data: map[string]string{"thing1": "x"}})
		return err
	}
	if err := send(7, "o7"); err != nil {
		t.Fatalf("member 7's test send: %v", err)
	}
	if err := send(8, "o8"); err != nil {
		t.Fatalf("member 8's test send after member 7's: %v", err)
	}
	if err := send(7, "o7"); !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("member 7's second test send, its grant spent: err = %v, want ErrUnreachable", err)
	}
	if n := len(fake.Messages()); n != 2 {
		t.Errorf("WeChat got %d messages, want 2", n)
	}
	fake.SetError("o9", 40037) // refused before it counted (invalid template id): the grant is given back
	if err := send(9, "o9"); err == nil {
		t.Fatal("member 9's refused test send succeeded")
	}
	if n := g.unused(); n != 1 {
		t.Errorf("%d grants unused after the refusal, want member 9's alone", n)
	}
}
