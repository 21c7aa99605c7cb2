// Package wechat delivers journey messages through WeChat Official Accounts
// with github.com/silenceper/wechat/v2.
//
// Sender implements channels.Sender for wechat.text, wechat.news,
// wechat.image and wechat.miniprogram_page (customer-service messages,
// /cgi-bin/message/custom/send), wechat.template (template messages,
// /cgi-bin/message/template/send) and wechat.subscribe_message
// (subscription messages, subscribe.go). The contract:
//
//   - The account is msg.To.AppID, looked up through Config.Accounts on every
//     send. An empty AppID or OpenID is channels.ErrUnreachable; an unknown
//     account or channel, or a message missing a field its channel needs, is
//     channels.ErrPermanent.
//   - An account with an empty AppSecret is a sandbox: the message is logged
//     at Info ("wechat sandbox: would send") and Result.Sandbox is true. No
//     HTTP call is made.
//   - WeChat errcodes become *channels.Error through Classify, so errors.Is
//     matches channels.ErrQuota, ErrUnreachable or ErrPermanent; anything
//     else (network, non-200, unknown codes) is temporary.
//   - No returned error holds the access token or the AppSecret: the URLs in
//     transport and non-200 errors are masked with internal/redact (the
//     error chain is kept for errors.Is and errors.As).
//   - Every call (custom send, template send, stable_token) goes to
//     Config.APIBase with Config.HTTPClient: each Sender has its own, and
//     the package keeps no process-wide state, so Senders for different
//     APIs (a fake per test, an egress gateway) live side by side.
//   - Access tokens come from WeChat's stable_token API, so processes
//     fetching tokens never void each other's, and are kept in Config.Cache
//     under silenceper's key (TokenCacheKey), one per account; pass a
//     RedisCache to share one token between processes. On 40001/40014/42001
//     (token invalid or expired) the cached token is dropped and the send is
//     retried once with a fresh token; there are no other retries, the
//     engine owns them.
//   - A template send passes msg.IdempotencyKey as client_msg_id, so WeChat
//     drops a retried send it already accepted, and returns the msgid as
//     Result.ProviderID.
//   - wechat.subscribe_message (subscribe.go) spends one authorisation
//     (Config.Grants) per message and sends on the API of its source:
//     /cgi-bin/message/template/subscribe (一次性订阅消息),
//     /cgi-bin/message/subscribe/bizsend (订阅通知) or the mini-program's
//     /cgi-bin/message/subscribe/send; no authorisation is
//     channels.ErrUnreachable without a call.
//
// SilenceSDK is the one process-wide switch (silenceper logs through
// logrus's global logger): call it once from main.
package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/credential"
	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"
	"github.com/sirupsen/logrus"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/internal/jsonapi"
	"github.com/wejourney/wejourney/internal/redact"
)

// DefaultAPIBase is WeChat's Official Account API, Config.APIBase's default.
const DefaultAPIBase = "https://api.weixin.qq.com"

// The paths Sender calls under Config.APIBase; the same as silenceper's
// message and credential packages use.
const (
	customSendPath   = "/cgi-bin/message/custom/send"
	templateSendPath = "/cgi-bin/message/template/send"
	stableTokenPath  = "/cgi-bin/stable_token"
)

// Defaults of Config.HTTPClient: idle connections kept per host and the
// overall timeout of one API call.
const (
	defaultMaxConns = 64
	defaultTimeout  = 10 * time.Second
)

// ErrUnknownAccount is wrapped by Accounts implementations when no account
// has the requested appid.
var ErrUnknownAccount = errors.New("wechat: unknown official account")

// Account is one Official Account's credentials. An empty AppSecret makes the
// account a sandbox: messages are logged, never sent.
type Account struct {
	AppID     string
	AppSecret string
	Token     string // server callback token (not used for sending)
	AESKey    string // EncodingAESKey for callbacks (not used for sending)
}

// Accounts looks up an account by appid (the engine stores them in its DB).
// It returns an error wrapping ErrUnknownAccount when there is none. It must
// be safe for concurrent use.
type Accounts interface {
	Account(ctx context.Context, appid string) (Account, error)
}

// Config configures a Sender.
type Config struct {
	// Accounts resolves msg.To.AppID to credentials. Required.
	Accounts Accounts
	// Cache keeps access tokens (silenceper's cache.Cache). Nil means a
	// process-local in-memory cache. Production passes a RedisCache so all
	// processes share one token per account.
	Cache cache.Cache
	// Logger receives sandbox sends and token refreshes. Nil means slog.Default().
	Logger *slog.Logger
	// APIBase is where every API call goes (send and stable_token): an egress
	// gateway, or an internal/fakewx server in tests. "" means DefaultAPIBase.
	APIBase string
	// HTTPClient makes every API call. Nil means a client from
	// NewHTTPClient(64, 10*time.Second).
	HTTPClient *http.Client
	// Allowance tracks each member's customer-service allowance; a
	// customer-service send with none left is not made (ErrUnreachable,
	// the step's fallback runs). Nil: every send is attempted.
	Allowance *Allowance
	// Holds keeps APIs whose daily quota (45009) is spent: their sends
	// wait for the reset without calling WeChat. Nil: each send calls and
	// WeChat answers 45009 again.
	Holds *channels.Holds
	// Limiter and Rates bound calls per account and API (APICustom,
	// APITemplate, APISubscribe) across every process. Nil or a zero
	// Rate: no limit.
	Limiter channels.Limiter
	Rates   map[string]channels.Rate
	// Clock tells the time of allowances and holds. Nil: the real clock.
	Clock clock.Clock
	// Grants spends the subscription-message authorisations
	// wechat.subscribe_message sends on (subscribe.go). Nil: that channel's
	// sends fail as channels.ErrPermanent.
	Grants Grants
}

// Sender sends Official Account messages. It implements channels.Sender and
// is safe for concurrent use.
type Sender struct {
	accounts Accounts
	cache    cache.Cache
	log      *slog.Logger
	base     string
	client   *http.Client
	grants   Grants

	allowance *Allowance
	holds     *channels.Holds
	limiter   channels.Limiter
	rates     map[string]channels.Rate
	clock     clock.Clock

	mu     sync.Mutex
	tokens map[string]*tokenSource // appid -> its token source
}

var _ channels.Sender = (*Sender)(nil)

// NewSender returns a Sender for cfg. It panics if cfg.Accounts is nil.
func NewSender(cfg Config) *Sender {
	if cfg.Accounts == nil {
		panic("wechat: NewSender: Config.Accounts is required")
	}
	s := &Sender{
		accounts: cfg.Accounts,
		cache:    cfg.Cache,
		log:      cfg.Logger,
		base:     strings.TrimRight(cfg.APIBase, "/"),
		client:   cfg.HTTPClient,
		grants:   cfg.Grants,
		tokens:   map[string]*tokenSource{},

		allowance: cfg.Allowance,
		holds:     cfg.Holds,
		limiter:   cfg.Limiter,
		rates:     cfg.Rates,
		clock:     cfg.Clock,
	}
	if s.clock == nil {
		s.clock = clock.Real()
	}
	if s.base == "" {
		s.base = DefaultAPIBase
	}
	if s.client == nil {
		s.client = NewHTTPClient(defaultMaxConns, defaultTimeout)
	}
	if s.cache == nil {
		s.cache = NewMemoryCache()
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Capabilities are the channels a Sender serves and what each can do:
// every one but wechat.subscribe_message needs a subscribed member
// addressed by openid; template messages carry client_msg_id, so WeChat
// drops a re-sent one it accepted. wechat.subscribe_message (subscribe.go)
// needs an authorisation instead of following.
func Capabilities() map[string]channels.Capabilities {
	cs := channels.Capabilities{NeedsSubscribed: true, Address: channels.ByOpenID}
	text, tmpl := cs, cs
	text.Requires = []string{"text"}
	tmpl.Requires = []string{"template_id"}
	tmpl.Resend, tmpl.IdempotencyField = true, "client_msg_id"
	return map[string]channels.Capabilities{
		channels.WeChatText:            text,
		channels.WeChatNews:            cs,
		channels.WeChatImage:           cs,
		channels.WeChatMiniprogramPage: cs,
		channels.WeChatTemplate:        tmpl,
		channels.WeChatSubscribe:       subscribeCapabilities(),
	}
}

// Channels implements channels.Provider.
func (s *Sender) Channels() map[string]channels.Capabilities { return Capabilities() }

// Send delivers msg once; see the package doc for the contract.
func (s *Sender) Send(ctx context.Context, msg channels.Message) (channels.Result, error) {
	if msg.Channel == channels.WeChatSubscribe {
		return s.sendSubscribe(ctx, s.grants, msg) // subscribe.go
	}
	body, err := buildBody(msg)
	if err != nil {
		return channels.Result{}, err
	}
	appid := msg.To.AppID
	acct, err := s.accounts.Account(ctx, appid)
	if err != nil {
		if errors.Is(err, ErrUnknownAccount) {
			return channels.Result{}, fmt.Errorf("%s: account %q: %w: %w", msg.Channel, appid, err, channels.ErrPermanent)
		}
		return channels.Result{}, fmt.Errorf("%s: account %q: %w", msg.Channel, appid, err)
	}
	window, err := s.admit(ctx, appid, msg)
	if err != nil {
		return channels.Result{}, fmt.Errorf("%s to %s via %s: %w", msg.Channel, msg.To.OpenID, appid, err)
	}
	if acct.AppSecret == "" {
		s.logSandbox(ctx, msg)
		return channels.Result{Sandbox: true}, nil
	}
	if acct.AppID == "" {
		acct.AppID = appid
	}

	path := customSendPath
	if msg.Channel == channels.WeChatTemplate {
		path = templateSendPath
	}
	msgID, err := s.send(ctx, s.tokenSource(acct), path, body)
	s.settle(ctx, appid, msg, window, err)
	if err != nil {
		return channels.Result{}, fmt.Errorf("%s to %s via %s: %w", msg.Channel, msg.To.OpenID, acct.AppID, err)
	}
	var res channels.Result
	if msgID != 0 {
		res.ProviderID = strconv.FormatInt(msgID, 10)
	}
	return res, nil
}

// buildBody checks msg and turns it into silenceper's request struct.
func buildBody(msg channels.Message) (any, error) {
	permanent := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s: %w", msg.Channel, fmt.Sprintf(format, args...), channels.ErrPermanent)
	}
	switch msg.Channel {
	case channels.WeChatText, channels.WeChatNews, channels.WeChatImage,
		channels.WeChatMiniprogramPage, channels.WeChatTemplate:
	default:
		return nil, permanent("not a WeChat Official Account channel")
	}
	if msg.To.AppID == "" {
		return nil, fmt.Errorf("%s: member has no Official Account appid: %w", msg.Channel, channels.ErrUnreachable)
	}
	to := msg.To.OpenID
	if to == "" {
		return nil, fmt.Errorf("%s: member has no openid for %s: %w", msg.Channel, msg.To.AppID, channels.ErrUnreachable)
	}
	x := msg.Extra
	switch msg.Channel {
	case channels.WeChatText:
		if msg.Text == "" {
			return nil, permanent("empty text")
		}
		return message.NewCustomerTextMessage(to, msg.Text), nil
	case channels.WeChatNews:
		if x["title"] == "" && msg.URL == "" {
			return nil, permanent("news needs a title or a url")
		}
		return &message.CustomerMessage{
			ToUser:  to,
			Msgtype: message.MsgTypeNews,
			News: &message.MediaNews{Articles: []message.MediaArticles{{
				Title:       x["title"],
				Description: x["description"],
				URL:         msg.URL,
				Picurl:      x["picurl"],
			}}},
		}, nil
	case channels.WeChatImage:
		if x["media_id"] == "" {
			return nil, permanent("image needs extra media_id")
		}
		return message.NewCustomerImgMessage(to, x["media_id"]), nil
	case channels.WeChatMiniprogramPage:
		if x["appid"] == "" || x["pagepath"] == "" || x["thumb_media_id"] == "" {
			return nil, permanent("miniprogram page needs extra appid, pagepath and thumb_media_id")
		}
		return message.NewCustomerMiniprogrampageMessage(to, x["title"], x["appid"], x["pagepath"], x["thumb_media_id"]), nil
	default: // channels.WeChatTemplate
		if msg.TemplateID == "" {
			return nil, permanent("no template id")
		}
		tm := &message.TemplateMessage{
			ToUser:      to,
			TemplateID:  msg.TemplateID,
			URL:         msg.URL,
			Data:        make(map[string]*message.TemplateDataItem, len(msg.Data)),
			ClientMsgID: msg.IdempotencyKey, // WeChat dedupes on it
		}
		for k, v := range msg.Data {
			tm.Data[k] = &message.TemplateDataItem{Value: v}
		}
		tm.MiniProgram.AppID = x["miniprogram_appid"]
		tm.MiniProgram.PagePath = x["miniprogram_pagepath"]
		return tm, nil
	}
}

func (s *Sender) logSandbox(ctx context.Context, msg channels.Message) {
	attrs := []any{
		slog.String("channel", msg.Channel),
		slog.String("appid", msg.To.AppID),
		slog.String("openid", msg.To.OpenID),
	}
	if msg.Text != "" {
		attrs = append(attrs, slog.String("text", msg.Text))
	}
	if msg.TemplateID != "" {
		attrs = append(attrs, slog.String("template_id", msg.TemplateID), slog.Any("data", msg.Data))
	}
	if msg.URL != "" {
		attrs = append(attrs, slog.String("url", msg.URL))
	}
	if len(msg.Extra) > 0 {
		attrs = append(attrs, slog.Any("extra", msg.Extra))
	}
	s.log.InfoContext(ctx, "wechat sandbox: would send", attrs...)
}

// tokenSource returns the token source of acct, creating it (or replacing
// it when the secret changed) on first use.
func (s *Sender) tokenSource(acct Account) *tokenSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts, ok := s.tokens[acct.AppID]; ok && ts.secret == acct.AppSecret {
		return ts
	}
	ts := &tokenSource{s: s, appid: acct.AppID, secret: acct.AppSecret}
	s.tokens[acct.AppID] = ts
	return ts
}

// TokenCacheKey is the cache key under which an Official Account's stable
// access token is kept: silenceper's (v2.1.10, credential.StableAccessToken),
// so a token cached by either is used by both. Sender deletes it to force a
// refresh.
func TokenCacheKey(appid string) string {
	return fmt.Sprintf("%s_stable_access_token_%s", credential.CacheKeyOfficialAccountPrefix, appid)
}

// tokenSource hands out one account's stable access token through its
// Sender's APIBase, HTTPClient and Cache. It is a silenceper
// credential.AccessTokenContextHandle, like the StableAccessToken it
// replaces, whose cache key and expiry margin it keeps.
type tokenSource struct {
	s      *Sender
	appid  string
	secret string
	mu     sync.Mutex // one stable_token call at a time for this account
}

var _ credential.AccessTokenContextHandle = (*tokenSource)(nil)

// tokenAnswer is what stable_token answers.
type tokenAnswer struct {
	util.CommonError
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// GetAccessToken implements credential.AccessTokenHandle.
func (t *tokenSource) GetAccessToken() (string, error) {
	return t.GetAccessTokenContext(context.Background())
}

// GetAccessTokenContext returns the cached token, or fetches one from
// stable_token (once for all concurrent callers) and caches it until 5
// minutes before it expires.
func (t *tokenSource) GetAccessTokenContext(ctx context.Context) (string, error) {
	key := TokenCacheKey(t.appid)
	if tok, _ := t.s.cache.Get(key).(string); tok != "" {
		return tok, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok, _ := t.s.cache.Get(key).(string); tok != "" {
		return tok, nil // fetched while we waited
	}
	raw, err := t.s.postJSON(ctx, stableTokenPath, map[string]any{
		"grant_type":    "client_credential",
		"appid":         t.appid,
		"secret":        t.secret,
		"force_refresh": false,
	})
	if err != nil {
		return "", err
	}
	var ans tokenAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		return "", fmt.Errorf("stable_token answer %s: %w", redact.String(fmt.Sprintf("%.200q", raw)), err)
	}
	if ans.ErrCode != 0 {
		return "", &ans.CommonError
	}
	if ans.AccessToken == "" {
		return "", errors.New("stable_token answer has no access_token")
	}
	if err := t.s.cache.Set(key, ans.AccessToken, time.Duration(ans.ExpiresIn-300)*time.Second); err != nil {
		return "", fmt.Errorf("caching the access token: %w", err)
	}
	return ans.AccessToken, nil
}

// sendAnswer is what both send APIs answer.
type sendAnswer struct {
	util.CommonError
	MsgID int64 `json:"msgid"`
}

// isTokenErr reports whether code means "this access token is not (or no
// longer) valid", which Send answers with one refresh.
func isTokenErr(code int64) bool { return code == 40001 || code == 40014 || code == 42001 }

// send posts body to path with ts's access token, refreshing the token once
// when WeChat rejects it. It returns the answer's msgid.
//
// silenceper's Manager.Send and Template.Send take no context, flatten the
// errcode into a fmt.Errorf string and use its process-global HTTP client,
// so we post its request structs to the same endpoints ourselves.
func (s *Sender) send(ctx context.Context, ts *tokenSource, path string, body any) (int64, error) {
	for attempt := 0; ; attempt++ {
		token, err := ts.GetAccessTokenContext(ctx)
		if err != nil {
			return 0, tokenError(err)
		}
		raw, err := s.postJSON(ctx, path+"?access_token="+url.QueryEscape(token), body)
		if err != nil {
			return 0, fmt.Errorf("wechat: %w", err) // network or non-200: temporary
		}
		var ans sendAnswer
		if err := json.Unmarshal(raw, &ans); err != nil {
			return 0, fmt.Errorf("wechat: answer %s: %w", redact.String(fmt.Sprintf("%.200q", raw)), err)
		}
		if ans.ErrCode == 0 {
			return ans.MsgID, nil
		}
		if isTokenErr(ans.ErrCode) && attempt == 0 {
			s.dropToken(ts.appid, token, ans.ErrCode)
			continue
		}
		return 0, Classify(int(ans.ErrCode), ans.ErrMsg)
	}
}

// ErrSandbox is returned by Call for an account without an AppSecret: it
// cannot call WeChat's API.
var ErrSandbox = errors.New("wechat: the account has no AppSecret (sandbox)")

// Call calls one Official Account API of the account appid with its access
// token: a POST of body as JSON when body is not nil, a GET otherwise; query
// holds the other query parameters (Call adds access_token). The answer is
// decoded into out when out is not nil. A non-zero errcode is returned as
// Classify's *channels.Error; a rejected token is refreshed once. An
// unknown account wraps ErrUnknownAccount, an account without an AppSecret
// is ErrSandbox. Errors never hold the token or the secret.
//
// It is the one way wejourney calls the Official Account API besides
// sending (user info, follower lists, QR codes, code2session is not one: it
// takes the secret, see CallWithSecret).
func (s *Sender) Call(ctx context.Context, appid, path string, query url.Values, body, out any) error {
	acct, err := s.accounts.Account(ctx, appid)
	if err != nil {
		return fmt.Errorf("wechat: account %q: %w", appid, err)
	}
	if acct.AppSecret == "" {
		return fmt.Errorf("%w: %s", ErrSandbox, appid)
	}
	if acct.AppID == "" {
		acct.AppID = appid
	}
	ts := s.tokenSource(acct)
	method := http.MethodGet
	if body != nil {
		method = http.MethodPost
	}
	for attempt := 0; ; attempt++ {
		token, err := ts.GetAccessTokenContext(ctx)
		if err != nil {
			return tokenError(err)
		}
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("access_token", token)
		raw, err := s.do(ctx, method, path+"?"+q.Encode(), body)
		if err != nil {
			return fmt.Errorf("wechat: %w", err)
		}
		var ans util.CommonError
		if err := json.Unmarshal(raw, &ans); err != nil {
			return fmt.Errorf("wechat: %s answer %s: %w", path, redact.String(fmt.Sprintf("%.200q", raw)), err)
		}
		if ans.ErrCode != 0 {
			if isTokenErr(ans.ErrCode) && attempt == 0 {
				s.dropToken(ts.appid, token, ans.ErrCode)
				continue
			}
			return fmt.Errorf("wechat: %s: %w", path, Classify(int(ans.ErrCode), ans.ErrMsg))
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return fmt.Errorf("wechat: %s answer: %w", path, err)
			}
		}
		return nil
	}
}

// CallWithSecret calls an API that takes the account's appid and secret
// instead of an access token (the mini-program's jscode2session): a GET of
// path with query plus appid and secret. The answer is decoded into out;
// a non-zero errcode is returned as Classify's *channels.Error. Errors
// never hold the secret.
func (s *Sender) CallWithSecret(ctx context.Context, appid, path string, query url.Values, out any) error {
	acct, err := s.accounts.Account(ctx, appid)
	if err != nil {
		return fmt.Errorf("wechat: account %q: %w", appid, err)
	}
	if acct.AppSecret == "" {
		return fmt.Errorf("%w: %s", ErrSandbox, appid)
	}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("appid", appid)
	q.Set("secret", acct.AppSecret)
	raw, err := s.do(ctx, http.MethodGet, path+"?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("wechat: %w", redact.Error(err))
	}
	var ans util.CommonError
	if err := json.Unmarshal(raw, &ans); err != nil {
		return fmt.Errorf("wechat: %s answer %s: %w", path, redact.String(fmt.Sprintf("%.200q", raw)), err)
	}
	if ans.ErrCode != 0 {
		return fmt.Errorf("wechat: %s: %w", path, Classify(int(ans.ErrCode), ans.ErrMsg))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("wechat: %s answer: %w", path, err)
		}
	}
	return nil
}

// postJSON posts body as JSON (HTML characters unescaped, as silenceper
// does) to APIBase + pathQuery with the Sender's client and returns the
// answer of a 200. Its errors are masked with redact: net/http's *url.Error
// and the non-200 error name the URL, access token included.
func (s *Sender) postJSON(ctx context.Context, pathQuery string, body any) ([]byte, error) {
	return s.do(ctx, http.MethodPost, pathQuery, body)
}

// do is postJSON for POST, and a GET when method is http.MethodGet (body
// unused).
func (s *Sender) do(ctx context.Context, method, pathQuery string, body any) ([]byte, error) {
	return jsonapi.Do(ctx, s.client, method, s.base+pathQuery, body)
}

// dropToken removes appid's cached token if it is still the rejected one (so
// a token another goroutine or process just refreshed is kept).
func (s *Sender) dropToken(appid, rejected string, code int64) {
	key := TokenCacheKey(appid)
	if cur, _ := s.cache.Get(key).(string); cur != "" && cur != rejected {
		return
	}
	if err := s.cache.Delete(key); err != nil {
		s.log.Warn("wechat: dropping rejected access token", "appid", appid, "errcode", code, "err", err)
		return
	}
	s.log.Info("wechat: access token rejected, refreshing", "appid", appid, "errcode", code)
}

// tokenError classifies an error from a token source: a WeChat errcode
// (*util.CommonError) through Classify; anything else (network, non-200,
// cache) is temporary, its message masked in case it names a credential.
func tokenError(err error) error {
	var ce *util.CommonError
	if errors.As(err, &ce) {
		return fmt.Errorf("wechat: access token: %w", Classify(int(ce.ErrCode), ce.ErrMsg))
	}
	return fmt.Errorf("wechat: access token: %w", redact.Error(err))
}

// Classify turns a WeChat errcode into a *channels.Error: 45009 (daily
// quota; the sender holds the API until the reset) and 45011 (minute
// quota; RetryAfter a minute) are channels.ErrQuota; 40003, 43004, 43101,
// 45015 and 45047 are channels.ErrUnreachable; requests WeChat calls wrong
// (40008, 40013, 40037, 40125, 41004, 41030, 44002, 47001, 47003, 48001)
// are channels.ErrPermanent; other codes are temporary (Class nil). Code 0
// is nil.
func Classify(code int, msg string) error {
	if code == 0 {
		return nil
	}
	var class error
	switch code {
	case 45009: // api daily quota: held until it resets (Sender.settle)
		return &channels.Error{Class: channels.ErrQuota, Code: code, Msg: msg, RetryAfter: time.Hour}
	case 45011: // api minute frequency: retried after a minute
		return &channels.Error{Class: channels.ErrQuota, Code: code, Msg: msg, RetryAfter: time.Minute}
	case 40003, // invalid openid
		43004, // not following the account
		43101, // refused to receive messages / not subscribed
		45015, // outside the 48 h customer-service window
		45047: // over the window's count of customer-service messages
		class = channels.ErrUnreachable
	case 40008, // invalid message type
		40013, // invalid appid
		40037, // invalid template id
		44002, // empty POST body
		47001, // malformed request data
		47003, // argument invalid (subscription message data)
		41030, // invalid page (subscription messages)
		40125, // invalid appsecret
		41004, // appsecret missing
		48001: // api unauthorized
		class = channels.ErrPermanent
	}
	return &channels.Error{Class: class, Code: code, Msg: msg}
}

// NewHTTPClient returns an HTTP client suited to high send rates: up to
// maxConns idle connections per host and the given overall request timeout
// (0: none; the caller's context still applies). http.DefaultClient keeps
// only 2 idle connections per host, so at hundreds of sends per second it
// opens (and leaves in TIME_WAIT) a new connection for most of them.
// Config.HTTPClient defaults to NewHTTPClient(64, 10*time.Second).
func NewHTTPClient(maxConns int, timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxConns
	t.MaxIdleConnsPerHost = maxConns
	return &http.Client{Transport: t, Timeout: timeout}
}

// SilenceSDK sends logrus output to io.Discard. silenceper logs callback
// bodies and signatures through logrus's global logger (at debug when its
// root package is imported); this package logs through slog instead.
//
// It is the package's one process-wide setting, because logrus's standard
// logger is global: any other user of it is silenced too. Call it once from
// main; calling it again changes nothing.
func SilenceSDK() {
	logrus.SetOutput(io.Discard)
}

// NewMemoryCache returns a process-local cache.Cache that is safe for
// concurrent use: silenceper's cache.Memory with every call serialised
// (cache.Memory reads its map without its lock, which is a data race under
// concurrent sends). It is the default Cache of this package's Sender and
// of wecom's Client.
func NewMemoryCache() cache.Cache {
	return &lockedCache{c: cache.NewMemory()}
}

// lockedCache serialises a cache.Cache that is not safe for concurrent use
// (silenceper's cache.Memory).
type lockedCache struct {
	mu sync.Mutex
	c  cache.Cache
}

// Get reads key under the lock.
func (l *lockedCache) Get(key string) any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Get(key)
}

// Set writes key under the lock.
func (l *lockedCache) Set(key string, val any, timeout time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Set(key, val, timeout)
}

// IsExist reports under the lock whether key exists.
func (l *lockedCache) IsExist(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.IsExist(key)
}

// Delete removes key under the lock.
func (l *lockedCache) Delete(key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.Delete(key)
}
