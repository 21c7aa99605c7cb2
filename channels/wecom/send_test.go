package wecom

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/internal/fakewecom"
)

// recLimiter records the keys and rates it was asked for.
type recLimiter struct {
	mu    sync.Mutex
	keys  []string
	rates []channels.Rate
}

func (l *recLimiter) Take(_ context.Context, key string, r channels.Rate) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, key)
	l.rates = append(l.rates, r)
	return nil
}

type sendFixture struct {
	fk    *fakewecom.Server
	s     *Sender
	lim   *recLimiter
	clock *clock.Simulated
	mr    *miniredis.Miniredis
}

func newSendFixture(t *testing.T) *sendFixture {
	t.Helper()
	fk := newFake(t)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	clk := clock.NewSimulated(time.Date(2026, 11, 24, 10, 0, 0, 0, channels.ChinaTime))
	lim := &recLimiter{}
	c := New(Config{Accounts: accounts{
		app:                   {CorpID: corpID, AgentID: "1000002", Secret: secret},
		corpID + "/1000009":   {CorpID: corpID},
		corpID + "/notnumber": {CorpID: corpID, Secret: secret},
	}, APIBase: fk.URL, Logger: slog.New(slog.DiscardHandler)})
	s := NewSender(SenderConfig{Client: c, DefaultApp: app, Limiter: lim, Redis: rdb, Clock: clk, Logger: slog.New(slog.DiscardHandler),
		Holds: channels.NewHolds(rdb)})
	return &sendFixture{fk: fk, s: s, lim: lim, clock: clk, mr: mr}
}

// body returns the only accepted request of path as generic JSON.
func body(t *testing.T, fk *fakewecom.Server, path string) map[string]any {
	t.Helper()
	reqs := fk.Requests(path)
	if len(reqs) != 1 {
		t.Fatalf("%s got %d requests, want 1", path, len(reqs))
	}
	var m map[string]any
	reqs[0].Decode(&m)
	return m
}

// jsonOf is v as the generic JSON body comparisons use.
func jsonOf(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func wantBody(t *testing.T, got map[string]any, want any) {
	t.Helper()
	if w := jsonOf(t, want); !reflect.DeepEqual(got, w) {
		g, _ := json.Marshal(got)
		ww, _ := json.Marshal(w)
		t.Errorf("body\n got %s\nwant %s", g, ww)
	}
}

func TestWelcomeBodyWithAttachments(t *testing.T) {
	t.Parallel()
	f := newSendFixture(t)
	code := f.fk.IssueWelcomeCode()
	_, err := f.s.Send(context.Background(), channels.Message{Channel: channels.WeComWelcome, Text: "欢迎光临 store_001",
		To: channels.Recipient{ExternalUserID: "wmCustomer"},
		Extra: map[string]string{"welcome_code": code, "user_id": "rep1",
			"image_media_id": "MEDIA1",
			"link_url":       "https://brand.example/coupon", "link_title": "领券", "link_picurl": "https://brand.example/p.png", "link_desc": "新客专享",
			"miniprogram_appid": "wxmini", "miniprogram_page": "pages/index?from=wecom", "miniprogram_title": "商城", "miniprogram_pic_media_id": "MEDIA2"}})
	if err != nil {
		t.Fatal(err)
	}
	wantBody(t, body(t, f.fk, fakewecom.SendWelcomePath), map[string]any{
		"welcome_code": code,
		"text":         map[string]any{"content": "欢迎光临 store_001"},
		"attachments": []any{
			map[string]any{"msgtype": "image", "image": map[string]any{"media_id": "MEDIA1"}},
			map[string]any{"msgtype": "link", "link": map[string]any{"title": "领券", "url": "https://brand.example/coupon", "picurl": "https://brand.example/p.png", "desc": "新客专享"}},
			map[string]any{"msgtype": "miniprogram", "miniprogram": map[string]any{"title": "商城", "pic_media_id": "MEDIA2", "appid": "wxmini", "page": "pages/index?from=wecom"}},
		},
	})
	if w := f.fk.Welcomes(); len(w) != 1 || w[0].Code != code || w[0].Errcode != 0 {
		t.Errorf("welcomes = %+v", w)
	}
	if len(f.lim.keys) != 1 || f.lim.keys[0] != "wecom:"+app+":send_welcome_msg" || f.lim.rates[0] != RateWelcome {
		t.Errorf("limiter asked %v %v", f.lim.keys, f.lim.rates)
	}
	caps := f.s.Channels()[channels.WeComWelcome]
	if !caps.Urgent || caps.Address(channels.Recipient{ExternalUserID: "wmX"}) != "wmX" || !reflect.DeepEqual(caps.Requires, []string{"text"}) {
		t.Errorf("welcome capabilities %+v", caps)
	}
}

func TestWelcomeCodeOnceWithinTwentySeconds(t *testing.T) {
	t.Parallel()
	f := newSendFixture(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	f.fk.SetNow(func() time.Time { return now })
	welcome := func(code string) error {
		_, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComWelcome, Text: "hi", Extra: map[string]string{"welcome_code": code}})
		return err
	}
	code := f.fk.IssueWelcomeCode()
	if err := welcome(code); err != nil {
		t.Fatal(err)
	}
	err := welcome(code)
	var ce *channels.Error
	if !errors.Is(err, channels.ErrUnreachable) || !errors.As(err, &ce) || ce.Code != 41051 || ce.Msg == "" {
		t.Fatalf("second use: %v, want unreachable 41051", err)
	}
	late := f.fk.IssueWelcomeCode()
	now = now.Add(21 * time.Second)
	if err := welcome(late); !errors.Is(err, channels.ErrUnreachable) || !errors.As(err, &ce) || ce.Code != 41050 {
		t.Fatalf("after 21 s: %v, want unreachable (expired)", err)
	}
	calls := f.fk.Calls(fakewecom.SendWelcomePath)
	if err := welcome(""); !errors.Is(err, channels.ErrUnreachable) {
		t.Fatalf("no code: %v, want unreachable", err)
	}
	if f.fk.Calls(fakewecom.SendWelcomePath) != calls {
		t.Error("a message without a welcome code called WeCom")
	}
}

func TestTextToRep(t *testing.T) {
	t.Parallel()
	f := newSendFixture(t)
	ctx := context.Background()
	res, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "a customer from store_001 just added you",
		Extra: map[string]string{"user_id": "rep1"}})
	if err != nil || res.ProviderID == "" {
		t.Fatalf("send: %+v %v", res, err)
	}
	wantBody(t, body(t, f.fk, fakewecom.MessageSendPath), map[string]any{
		"touser": "rep1", "msgtype": "text", "agentid": 1000002, "text": map[string]any{"content": "a customer from store_001 just added you"}})
	if f.lim.keys[0] != "wecom:"+app+":message_send" || f.lim.rates[0] != RateAppMessage {
		t.Errorf("limiter asked %v %v", f.lim.keys, f.lim.rates)
	}
	f.s.cfg.Rates = map[string]channels.Rate{APIAppMessage: {N: 5, Per: time.Second}}
	if _, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "x", Extra: map[string]string{"user_id": "rep1"}}); err != nil {
		t.Fatal(err)
	}
	if r := f.lim.rates[1]; r != (channels.Rate{N: 5, Per: time.Second}) {
		t.Errorf("configured rate: limiter asked %v", r)
	}
	f.s.cfg.Rates = nil

	// extra.to_user wins over the event's rep; the app comes from extra.wecom_app.
	f.fk.SetInvalidUsers("rep_gone")
	_, err = f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "x", Extra: map[string]string{"user_id": "rep1", "to_user": "rep_gone"}})
	if !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("invaliduser: %v, want unreachable", err)
	}
	n := f.fk.Calls(fakewecom.MessageSendPath)
	if _, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "x"}); !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("no rep: %v, want unreachable", err)
	}
	if _, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "x", Extra: map[string]string{"user_id": "r", "wecom_app": corpID + "/notnumber"}}); !errors.Is(err, channels.ErrPermanent) {
		t.Errorf("agentid not a number: %v, want permanent", err)
	}
	if f.fk.Calls(fakewecom.MessageSendPath) != n {
		t.Error("a refused message reached WeCom")
	}
}

func TestMarkTag(t *testing.T) {
	t.Parallel()
	f := newSendFixture(t)
	ctx := context.Background()
	msg := channels.Message{Channel: channels.WeComMarkTag, To: channels.Recipient{ExternalUserID: "wmC"},
		Extra: map[string]string{"user_id": "rep1", "add_tags": "etTagA, etTagB", "remove_tags": "etOld"}}
	if _, err := f.s.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	wantBody(t, body(t, f.fk, fakewecom.MarkTagPath), map[string]any{
		"userid": "rep1", "external_userid": "wmC", "add_tag": []string{"etTagA", "etTagB"}, "remove_tag": []string{"etOld"}})
	if caps := f.s.Channels()[channels.WeComMarkTag]; len(caps.Requires) != 0 {
		t.Errorf("mark_tag requires %v", caps.Requires)
	}
	for name, m := range map[string]channels.Message{
		"no tags":        {Channel: channels.WeComMarkTag, To: msg.To, Extra: map[string]string{"user_id": "rep1"}},
		"no rep":         {Channel: channels.WeComMarkTag, To: msg.To, Extra: map[string]string{"add_tags": "t"}},
		"no external id": {Channel: channels.WeComMarkTag, Extra: map[string]string{"user_id": "rep1", "add_tags": "t"}},
	} {
		if _, err := f.s.Send(ctx, m); err == nil {
			t.Errorf("%s: sent", name)
		}
	}
	if f.fk.Calls(fakewecom.MarkTagPath) != 1 {
		t.Error("a refused mark_tag reached WeCom")
	}
}

func TestGroupMessageMonthlyLimit(t *testing.T) {
	t.Parallel()
	f := newSendFixture(t)
	ctx := context.Background()
	msg := channels.Message{Channel: channels.WeComGroupMessage, Text: "双十一", To: channels.Recipient{ExternalUserID: "wmC"},
		Extra: map[string]string{"user_id": "rep1", "link_url": "https://b.example/s", "link_title": "大促"}}
	res, err := f.s.Send(ctx, msg)
	if err != nil || res.ProviderID == "" {
		t.Fatalf("first: %+v %v", res, err)
	}
	wantBody(t, body(t, f.fk, fakewecom.AddMsgTemplatePath), map[string]any{
		"chat_type": "single", "external_userid": []string{"wmC"}, "sender": "rep1", "text": map[string]any{"content": "双十一"},
		"attachments": []any{map[string]any{"msgtype": "link", "link": map[string]any{"title": "大促", "url": "https://b.example/s"}}}})
	for i := 2; i <= 4; i++ {
		if _, err := f.s.Send(ctx, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_, err = f.s.Send(ctx, msg)
	var ce *channels.Error
	if !errors.Is(err, channels.ErrUnreachable) || !errors.As(err, &ce) || ce.Msg != "monthly limit of 4 group messages for this customer" {
		t.Fatalf("fifth: %v, want unreachable (monthly limit)", err)
	}
	if n := f.fk.Calls(fakewecom.AddMsgTemplatePath); n != 4 {
		t.Errorf("WeCom got %d calls, want 4 (the fifth refused before calling)", n)
	}
	key := GroupCountKey(corpID, "wmC", "202611")
	if ttl := f.mr.TTL(key); ttl <= 0 || ttl > 40*24*time.Hour {
		t.Errorf("counter TTL %v", ttl)
	}
	// Another customer is counted apart; a refused customer is not counted.
	f.fk.SetGroupFail("wmRefused")
	other := msg
	other.To.ExternalUserID = "wmRefused"
	if _, err := f.s.Send(ctx, other); !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("fail_list: %v, want unreachable", err)
	}
	if v, _ := f.mr.Get(GroupCountKey(corpID, "wmRefused", "202611")); v != "0" {
		t.Errorf("a refused message was counted: %q", v)
	}
	// December in Shanghai starts a new count (16:00 UTC on Nov 30).
	f.clock.Set(time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC))
	if _, err := f.s.Send(ctx, msg); err != nil {
		t.Errorf("new month: %v", err)
	}
}

func TestSendErrorClasses(t *testing.T) {
	t.Parallel()
	welcome := channels.Message{Channel: channels.WeComWelcome, Text: "hi", Extra: map[string]string{"welcome_code": "C"}}
	for _, tc := range []struct {
		name       string
		errcode    int
		class      error // nil: temporary
		retryAfter time.Duration
	}{
		{"busy", -1, nil, 0},
		{"daily quota until midnight in Shanghai", 45009, channels.ErrQuota, 14 * time.Hour},
		{"concurrency", 45033, channels.ErrQuota, time.Second},
		{"not an external contact", 84061, channels.ErrUnreachable, 0},
		{"invalid external userid", 40096, channels.ErrUnreachable, 0},
		{"IP not allowed", 60020, channels.ErrPermanent, 0},
		{"API forbidden", 48002, channels.ErrPermanent, 0},
		{"no permission", 301002, channels.ErrPermanent, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSendFixture(t)
			f.fk.SetError(fakewecom.SendWelcomePath, tc.errcode)
			_, err := f.s.Send(context.Background(), welcome)
			var ce *channels.Error
			if !errors.As(err, &ce) || ce.Code != tc.errcode {
				t.Fatalf("err = %v, want code %d", err, tc.errcode)
			}
			for _, c := range []error{channels.ErrQuota, channels.ErrUnreachable, channels.ErrPermanent} {
				if errors.Is(err, c) != (c == tc.class) {
					t.Errorf("err = %v: class %v, want %v", err, ce.Class, tc.class)
				}
			}
			if ce.RetryAfter != tc.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", ce.RetryAfter, tc.retryAfter)
			}
			if f.fk.Calls(fakewecom.SendWelcomePath) != 1 {
				t.Errorf("calls = %d, want 1 (no retry)", f.fk.Calls(fakewecom.SendWelcomePath))
			}
		})
	}
}

func TestSendTokenRefreshedOnceAndConfiguration(t *testing.T) {
	t.Parallel()
	f := newSendFixture(t)
	ctx := context.Background()
	msg := channels.Message{Channel: channels.WeComText, Text: "x", Extra: map[string]string{"user_id": "rep1"}}
	if _, err := f.s.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	f.fk.ExpireTokens()
	if _, err := f.s.Send(ctx, msg); err != nil {
		t.Fatalf("after the token expired: %v", err)
	}
	if n := f.fk.Calls(fakewecom.TokenPath); n != 2 {
		t.Errorf("token fetches = %d, want 2", n)
	}

	// An app with no secret logs; an unknown app or none is a configuration error.
	res, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "x", Extra: map[string]string{"user_id": "r", "wecom_app": corpID + "/1000009"}})
	if err != nil || !res.Sandbox {
		t.Errorf("sandbox app: %+v %v", res, err)
	}
	if _, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "x", Extra: map[string]string{"user_id": "r", "wecom_app": "wwnobody/1"}}); !errors.Is(err, channels.ErrPermanent) {
		t.Errorf("unknown app: %v, want permanent", err)
	}
	none := NewSender(SenderConfig{Client: f.s.cfg.Client})
	if _, err := none.Send(ctx, msg); !errors.Is(err, channels.ErrPermanent) || !errors.Is(err, ErrNoApp) {
		t.Errorf("no app: %v, want permanent ErrNoApp", err)
	}
}

// TestDailyQuotaHoldsTheAPI: after WeCom's 45009 the API is held until
// midnight in China for every sender sharing the Redis, without calling
// WeCom; other APIs still go.
func TestDailyQuotaHoldsTheAPI(t *testing.T) {
	t.Parallel()
	f := newSendFixture(t)
	ctx := context.Background()
	text := func(to string) error {
		_, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComText, Text: "hi", Extra: map[string]string{"user_id": to}})
		return err
	}
	f.fk.SetError(fakewecom.MessageSendPath, 45009)
	err := text("rep_a")
	var ce *channels.Error
	// 10:00 in Shanghai: 14 hours to midnight.
	if !errors.As(err, &ce) || !errors.Is(err, channels.ErrQuota) || ce.RetryAfter != 14*time.Hour {
		t.Fatalf("45009: %v, want a quota error until midnight", err)
	}
	f.fk.SetError(fakewecom.MessageSendPath, 0)
	calls := f.fk.Calls(fakewecom.MessageSendPath)
	if err := text("rep_b"); !errors.As(err, &ce) || ce.Code != 45009 || ce.RetryAfter != 14*time.Hour {
		t.Fatalf("while held: %v, want held", err)
	}
	if f.fk.Calls(fakewecom.MessageSendPath) != calls {
		t.Fatal("WeCom was called while the quota was held")
	}
	if _, err := f.s.Send(ctx, channels.Message{Channel: channels.WeComMarkTag, To: channels.Recipient{ExternalUserID: "wm1"},
		Extra: map[string]string{"user_id": "rep_a", "add_tags": "et1"}}); err != nil {
		t.Fatalf("mark_tag while message/send is held: %v", err)
	}
	f.clock.Advance(14 * time.Hour)
	if err := text("rep_b"); err != nil {
		t.Fatalf("after midnight: %v", err)
	}
}
