// Package wecom is wejourney's client of the WeCom (企业微信) server API: the
// access token of each app, contact-me links (add_contact_way) and external
// contacts (externalcontact/get).
//
// The contract:
//
//   - An app is named "corpid/agentid", as model.Account.AppID names WeCom
//     accounts; Config.Accounts resolves it to the corp id and the app's
//     secret on every call. An unknown app wraps ErrUnknownAccount; an app
//     without a secret is ErrSandbox (no HTTP call is made).
//   - Access tokens come from GET /cgi-bin/gettoken and are kept in
//     Config.Cache under TokenCacheKey(app) until 5 minutes before they
//     expire; pass a wechat.RedisCache to share them between processes. One
//     fetch at a time per app in a process. On 40014, 42001 or 41001 (token
//     invalid, expired or missing) the cached token is dropped and the call
//     is made once more with a fresh one; there are no other retries.
//   - WeCom errcodes become *channels.Error through Classify, so errors.Is
//     matches channels.ErrQuota, ErrUnreachable or ErrPermanent; anything
//     else (network, non-200, unknown codes) is temporary.
//   - No returned error or log line holds the secret or an access token:
//     URLs are masked with internal/redact.
//   - Every call goes to Config.APIBase with Config.HTTPClient; the package
//     keeps no process-wide state.
package wecom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/silenceper/wechat/v2/cache"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/internal/jsonapi"
	"github.com/wejourney/wejourney/internal/redact"
)

// DefaultAPIBase is WeCom's server API, Config.APIBase's default.
const DefaultAPIBase = "https://qyapi.weixin.qq.com"

// Paths the Client calls under Config.APIBase.
const (
	tokenPath           = "/cgi-bin/gettoken"
	addContactWayPath   = "/cgi-bin/externalcontact/add_contact_way"
	externalContactPath = "/cgi-bin/externalcontact/get"
)

// Limits WeCom puts on add_contact_way.
const (
	// MaxState is the longest contact-me state, in characters.
	MaxState = 30
	// MaxRemark is the longest contact-me remark, in characters.
	MaxRemark = 30
	// MaxUsers is how many reps one contact-me link may name.
	MaxUsers = 100
)

// maxImage bounds how much of a QR code image is read.
const maxImage = 4 << 20

var (
	// ErrUnknownAccount is wrapped by Accounts implementations when no WeCom
	// app has the requested "corpid/agentid".
	ErrUnknownAccount = errors.New("wecom: unknown app")
	// ErrSandbox is returned for an app without a secret: it cannot call
	// WeCom's API.
	ErrSandbox = errors.New("wecom: the app has no secret (sandbox)")
)

// Account is one WeCom app's credentials.
type Account struct {
	CorpID  string
	AgentID string
	Secret  string // the app's secret (for external contacts: one with that permission)
}

// Accounts looks up a WeCom app by "corpid/agentid". It returns an error
// wrapping ErrUnknownAccount when there is none, and must be safe for
// concurrent use.
type Accounts interface {
	Account(ctx context.Context, app string) (Account, error)
}

// Config configures a Client.
type Config struct {
	// Accounts resolves apps to credentials. Required.
	Accounts Accounts
	// Cache keeps access tokens (silenceper's cache.Cache). Nil means a
	// process-local in-memory cache; production passes a Redis one.
	Cache cache.Cache
	// APIBase is where every call goes: "" means DefaultAPIBase.
	APIBase string
	// HTTPClient makes every call, also the fetch of QR code images. Nil
	// means a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives token refreshes. Nil means slog.Default().
	Logger *slog.Logger
}

// Client calls WeCom's API. It is safe for concurrent use.
type Client struct {
	accounts Accounts
	cache    cache.Cache
	base     string
	client   *http.Client
	log      *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex // app -> its token fetch lock
}

// New returns a Client for cfg. It panics if cfg.Accounts is nil.
func New(cfg Config) *Client {
	if cfg.Accounts == nil {
		panic("wecom: New: Config.Accounts is required")
	}
	c := &Client{accounts: cfg.Accounts, cache: cfg.Cache, base: strings.TrimRight(cfg.APIBase, "/"),
		client: cfg.HTTPClient, log: cfg.Logger, locks: map[string]*sync.Mutex{}}
	if c.base == "" {
		c.base = DefaultAPIBase
	}
	if c.client == nil {
		c.client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.cache == nil {
		c.cache = wechat.NewMemoryCache()
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// TokenCacheKey is the cache key of the access token of app ("corpid/agentid").
func TokenCacheKey(app string) string { return "wejourney_wecom_access_token_" + app }

// errAnswer is the errcode and errmsg of every answer.
type errAnswer struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// isTokenErr reports whether code says the access token is not usable.
func isTokenErr(code int) bool { return code == 40014 || code == 42001 || code == 41001 }

// account resolves app.
func (c *Client) account(ctx context.Context, app string) (Account, error) {
	acct, err := c.accounts.Account(ctx, app)
	if err != nil {
		return Account{}, fmt.Errorf("wecom: app %q: %w", app, err)
	}
	if acct.Secret == "" {
		return Account{}, fmt.Errorf("%w: %s", ErrSandbox, app)
	}
	if acct.CorpID == "" {
		acct.CorpID, _, _ = strings.Cut(app, "/")
	}
	return acct, nil
}

// token returns app's cached access token, or fetches one (once for all
// callers of this process) and caches it until 5 minutes before it expires.
func (c *Client) token(ctx context.Context, app string, acct Account) (string, error) {
	key := TokenCacheKey(app)
	if tok, _ := c.cache.Get(key).(string); tok != "" {
		return tok, nil
	}
	c.mu.Lock()
	l, ok := c.locks[app]
	if !ok {
		l = &sync.Mutex{}
		c.locks[app] = l
	}
	c.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	if tok, _ := c.cache.Get(key).(string); tok != "" {
		return tok, nil // fetched while we waited
	}
	q := url.Values{"corpid": {acct.CorpID}, "corpsecret": {acct.Secret}}
	raw, err := c.do(ctx, http.MethodGet, tokenPath+"?"+q.Encode(), nil)
	if err != nil {
		return "", fmt.Errorf("wecom: access token: %w", err)
	}
	var ans struct {
		errAnswer
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return "", fmt.Errorf("wecom: access token answer %s: %w", redact.String(fmt.Sprintf("%.200q", raw)), err)
	}
	if ans.ErrCode != 0 {
		return "", fmt.Errorf("wecom: access token: %w", Classify(ans.ErrCode, ans.ErrMsg))
	}
	if ans.AccessToken == "" {
		return "", errors.New("wecom: access token answer has no access_token")
	}
	ttl := time.Duration(ans.ExpiresIn-300) * time.Second
	if ttl <= 0 {
		ttl = time.Minute
	}
	if err := c.cache.Set(key, ans.AccessToken, ttl); err != nil {
		return "", fmt.Errorf("wecom: caching the access token: %w", redact.Error(err))
	}
	return ans.AccessToken, nil
}

// dropToken removes app's cached token if it is still the rejected one.
func (c *Client) dropToken(app, rejected string, code int) {
	key := TokenCacheKey(app)
	if cur, _ := c.cache.Get(key).(string); cur != "" && cur != rejected {
		return
	}
	if err := c.cache.Delete(key); err != nil {
		c.log.Warn("wecom: dropping rejected access token", "app", app, "errcode", code, "err", redact.Error(err))
		return
	}
	c.log.Info("wecom: access token rejected, refreshing", "app", app, "errcode", code)
}

// Call calls one WeCom API of app with its access token: a POST of body as
// JSON when body is not nil, a GET otherwise; query holds the other query
// parameters (Call adds access_token). The answer is decoded into out when
// out is not nil. A non-zero errcode is returned as Classify's
// *channels.Error; a rejected token is refreshed once.
func (c *Client) Call(ctx context.Context, app, path string, query url.Values, body, out any) error {
	acct, err := c.account(ctx, app)
	if err != nil {
		return err
	}
	method := http.MethodGet
	if body != nil {
		method = http.MethodPost
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx, app, acct)
		if err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("access_token", tok)
		raw, err := c.do(ctx, method, path+"?"+q.Encode(), body)
		if err != nil {
			return fmt.Errorf("wecom: %w", err)
		}
		var ans errAnswer
		if err := json.Unmarshal(raw, &ans); err != nil {
			return fmt.Errorf("wecom: %s answer %s: %w", path, redact.String(fmt.Sprintf("%.200q", raw)), err)
		}
		if ans.ErrCode != 0 {
			if isTokenErr(ans.ErrCode) && attempt == 0 {
				c.dropToken(app, tok, ans.ErrCode)
				continue
			}
			return fmt.Errorf("wecom: %s: %w", path, Classify(ans.ErrCode, ans.ErrMsg))
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return fmt.Errorf("wecom: %s answer: %w", path, err)
			}
		}
		return nil
	}
}

// do sends one request to APIBase + pathQuery with jsonapi.Do and returns
// the answer of a 200. Its errors are masked with redact (the URL holds the
// token or the secret).
func (c *Client) do(ctx context.Context, method, pathQuery string, body any) ([]byte, error) {
	return jsonapi.Do(ctx, c.client, method, c.base+pathQuery, body)
}

// ContactWay is a contact-me link to create (add_contact_way).
type ContactWay struct {
	// Type is 1 (one rep) or 2 (several reps).
	Type int
	// Scene is 2 (a QR code); 1 (a mini-program button) is not used.
	Scene int
	// Users are the reps' WeCom user ids.
	Users []string
	// State (at most 30 characters) comes back in the contact-added event,
	// so an add is attributed to the link.
	State string
	// Remark is a note for operators (at most 30 characters).
	Remark string
	// SkipVerify adds the customer without the rep's confirmation.
	SkipVerify bool
}

// AddContactWay creates a contact-me link and returns its config_id (WeCom
// cannot list links later: keep it) and the URL of its QR code image.
func (c *Client) AddContactWay(ctx context.Context, app string, w ContactWay) (configID, qrCodeURL string, err error) {
	if w.Type == 0 {
		w.Type = 1
		if len(w.Users) > 1 {
			w.Type = 2
		}
	}
	if w.Scene == 0 {
		w.Scene = 2
	}
	bad := func(format string, args ...any) (string, string, error) {
		return "", "", fmt.Errorf("wecom: add_contact_way: %s: %w", fmt.Sprintf(format, args...), channels.ErrPermanent)
	}
	switch {
	case w.Type != 1 && w.Type != 2:
		return bad("type %d: want 1 or 2", w.Type)
	case len(w.Users) == 0:
		return bad("no user")
	case w.Type == 1 && len(w.Users) != 1:
		return bad("type 1 takes one user, got %d", len(w.Users))
	case len(w.Users) > MaxUsers:
		return bad("%d users: at most %d", len(w.Users), MaxUsers)
	case utf8.RuneCountInString(w.State) > MaxState:
		return bad("state has more than %d characters", MaxState)
	case utf8.RuneCountInString(w.Remark) > MaxRemark:
		return bad("remark has more than %d characters", MaxRemark)
	}
	body := map[string]any{
		"type": w.Type, "scene": w.Scene, "user": w.Users, "state": w.State,
		"skip_verify": w.SkipVerify,
	}
	if w.Remark != "" {
		body["remark"] = w.Remark
	}
	var ans struct {
		ConfigID string `json:"config_id"`
		QRCode   string `json:"qr_code"`
	}
	if err := c.Call(ctx, app, addContactWayPath, nil, body, &ans); err != nil {
		return "", "", err
	}
	if ans.ConfigID == "" {
		return "", "", errors.New("wecom: add_contact_way answered no config_id")
	}
	return ans.ConfigID, ans.QRCode, nil
}

// FollowUser is one rep who has the external contact.
type FollowUser struct {
	UserID string `json:"userid"`
	// State is the contact-me state the contact was added through.
	State  string `json:"state"`
	Remark string `json:"remark"`
}

// Contact is an external contact's detail.
type Contact struct {
	ExternalUserID string
	Name           string
	// UnionID is the WeChat unionid (set when the corp is bound to the
	// brand's Open Platform account and the contact is a WeChat user).
	UnionID string
	// Type is 1 for a WeChat user, 2 for a WeCom user.
	Type        int
	FollowUsers []FollowUser
}

// ExternalContact returns the detail of externalUserID
// (externalcontact/get): the engine fetches the unionid of a new contact.
func (c *Client) ExternalContact(ctx context.Context, app, externalUserID string) (Contact, error) {
	if externalUserID == "" {
		return Contact{}, fmt.Errorf("wecom: externalcontact/get: no external_userid: %w", channels.ErrUnreachable)
	}
	var ans struct {
		ExternalContact struct {
			ExternalUserID string `json:"external_userid"`
			Name           string `json:"name"`
			Type           int    `json:"type"`
			UnionID        string `json:"unionid"`
		} `json:"external_contact"`
		FollowUser []FollowUser `json:"follow_user"`
	}
	if err := c.Call(ctx, app, externalContactPath, url.Values{"external_userid": {externalUserID}}, nil, &ans); err != nil {
		return Contact{}, err
	}
	ec := ans.ExternalContact
	return Contact{ExternalUserID: ec.ExternalUserID, Name: ec.Name, UnionID: ec.UnionID, Type: ec.Type, FollowUsers: ans.FollowUser}, nil
}

// Image fetches the image at rawURL (a contact-me link's qr_code) with the
// Client's HTTP client and returns its bytes and Content-Type. Only http and
// https URLs are fetched, and at most 4 MiB.
func (c *Client) Image(ctx context.Context, rawURL string) ([]byte, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("wecom: image %q: not an http(s) URL", rawURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, "", redact.Error(err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("wecom: image: %w", redact.Error(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxImage))
		return nil, "", fmt.Errorf("wecom: image %s: HTTP %d", redact.String(rawURL), resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxImage+1))
	if err != nil {
		return nil, "", fmt.Errorf("wecom: image: %w", redact.Error(err))
	}
	if len(raw) > maxImage {
		return nil, "", fmt.Errorf("wecom: image %s: larger than %d bytes", redact.String(rawURL), maxImage)
	}
	return raw, resp.Header.Get("Content-Type"), nil
}

// Classify turns a WeCom errcode into a *channels.Error: 45009, 45011,
// 45033 and 45035 are channels.ErrQuota (45011 with a minute's
// RetryAfter, 45033 — too many concurrent calls — with a second's);
// 84061 (not an external contact of the rep), 40096 (invalid
// external_userid) and 41051 (welcome_code already used) are
// channels.ErrUnreachable; bad credentials, ids, parameters and
// permissions (40001, 40003, 40013, 40056, 40058, 41002, 41004, 41011,
// 48002, 60011, 60020, 60111, 82001, 301002) are channels.ErrPermanent;
// other codes (-1 busy, ...) are temporary (Class nil). Code 0 is nil.
func Classify(code int, msg string) error {
	if code == 0 {
		return nil
	}
	e := &channels.Error{Code: code, Msg: msg}
	switch code {
	case 45009, // API call frequency over the limit
		45011, // per-minute frequency
		45033, // too many concurrent calls
		45035: // day quota of the external-contact API
		e.Class = channels.ErrQuota
		switch code {
		case 45011:
			e.RetryAfter = time.Minute
		case 45033:
			e.RetryAfter = time.Second
		}
	case 84061, // no such external contact relation
		40096, // invalid external userid
		41051: // welcome_code used (externaluser has started chatting)
		e.Class = channels.ErrUnreachable
	case 40001, // invalid secret
		40003,  // invalid userid
		40013,  // invalid corpid
		40056,  // invalid agentid
		40058,  // invalid parameter
		41002,  // corpid missing
		41004,  // secret missing
		41011,  // agentid missing
		48002,  // API forbidden (no permission)
		60011,  // no privilege for the user
		60020,  // IP not allowed
		60111,  // userid not found
		82001,  // the reps are outside the app's visible range
		301002: // no permission for the API (the app lacks it)
		e.Class = channels.ErrPermanent
	}
	return e
}
