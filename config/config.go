// Package config is wejourney's typed configuration: defaults, an optional
// wejourney.yaml, then WEJOURNEY_* environment variables (which win), then
// validation that reports one clear line per problem.
//
// The keys are those of DESIGN.md's configuration table; the yaml file uses
// the same names lower-cased without the WEJOURNEY_ prefix
// (http_addr, database_url, wechat_appid, ...).
package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
)

// Sandbox credentials of the default Official Account when none is configured:
// callbacks are verified with this token and sends are only logged.
const (
	SandboxAppID = "wxsandbox"
	SandboxToken = "wejourney"
)

// Config is the whole configuration. Field tags name the environment variable
// (env) and the yaml key (yaml).
type Config struct {
	HTTPAddr    string `env:"WEJOURNEY_HTTP_ADDR" yaml:"http_addr"`
	DatabaseURL string `env:"WEJOURNEY_DATABASE_URL" yaml:"database_url"`
	RedisURL    string `env:"WEJOURNEY_REDIS_URL" yaml:"redis_url"`
	// DatabaseMaxConns caps one process's connections to PostgreSQL or
	// MySQL (SQLite always has one): empty for 32. Several processes on one
	// database share its max_connections (PostgreSQL's default is 100).
	DatabaseMaxConns string `env:"WEJOURNEY_DATABASE_MAX_CONNS" yaml:"database_max_conns"`
	JourneysDir      string `env:"WEJOURNEY_JOURNEYS_DIR" yaml:"journeys_dir"`
	AdminPassword    string `env:"WEJOURNEY_ADMIN_PASSWORD" yaml:"admin_password"`
	APIKey           string `env:"WEJOURNEY_API_KEY" yaml:"api_key"`

	WeChatAppID     string `env:"WEJOURNEY_WECHAT_APPID" yaml:"wechat_appid"`
	WeChatAppSecret string `env:"WEJOURNEY_WECHAT_APPSECRET" yaml:"wechat_appsecret"`
	WeChatToken     string `env:"WEJOURNEY_WECHAT_TOKEN" yaml:"wechat_token"`
	WeChatAESKey    string `env:"WEJOURNEY_WECHAT_AES_KEY" yaml:"wechat_aes_key"`
	WeChatAPIBase   string `env:"WEJOURNEY_WECHAT_API_BASE" yaml:"wechat_api_base"`

	// MiniProgramAppID and MiniProgramAppSecret are the mini-program whose
	// wx.login codes POST /api/v1/miniprogram/session exchanges (code2session,
	// through WeChatAPIBase). Both or neither.
	MiniProgramAppID     string `env:"WEJOURNEY_MINIPROGRAM_APPID" yaml:"miniprogram_appid"`
	MiniProgramAppSecret string `env:"WEJOURNEY_MINIPROGRAM_APPSECRET" yaml:"miniprogram_appsecret"`

	// EventsRate is how many events per second one API key may post to the
	// events API (the burst is the same number): empty for
	// DefaultEventsRate, "0" for no limit.
	EventsRate string `env:"WEJOURNEY_EVENTS_RATE" yaml:"events_rate"`

	WeComCorpID  string `env:"WEJOURNEY_WECOM_CORPID" yaml:"wecom_corpid"`
	WeComAgentID string `env:"WEJOURNEY_WECOM_AGENTID" yaml:"wecom_agentid"`
	WeComSecret  string `env:"WEJOURNEY_WECOM_SECRET" yaml:"wecom_secret"`
	WeComToken   string `env:"WEJOURNEY_WECOM_TOKEN" yaml:"wecom_token"`
	WeComAESKey  string `env:"WEJOURNEY_WECOM_AES_KEY" yaml:"wecom_aes_key"`
	WeComAPIBase string `env:"WEJOURNEY_WECOM_API_BASE" yaml:"wecom_api_base"`

	// SMTPURL sends email over SMTP: smtp://user:pass@host:587 (STARTTLS
	// when the server offers it) or smtps://user:pass@host:465 (implicit
	// TLS). Empty: email is logged ("would send"). EmailFrom, the sender
	// address, is required with it.
	SMTPURL   string `env:"WEJOURNEY_SMTP_URL" yaml:"smtp_url"`
	EmailFrom string `env:"WEJOURNEY_EMAIL_FROM" yaml:"email_from"`
	// SMSProvider sends SMS: "aliyun", "tencent", "webhook" (the brand's
	// own gateway) or "log" (development: messages are logged, not sent).
	SMSProvider string `env:"WEJOURNEY_SMS_PROVIDER" yaml:"sms_provider"`
	// SMSSignName is the approved SMS signature (签名): aliyun and tencent.
	SMSSignName string `env:"WEJOURNEY_SMS_SIGN_NAME" yaml:"sms_sign_name"`
	// Alibaba Cloud SMS: an AccessKey allowed dysmsapi:SendSms; the
	// endpoint is a host (default dysmsapi.aliyuncs.com) or an http(s) URL.
	SMSAliyunAccessKeyID     string `env:"WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_ID" yaml:"sms_aliyun_access_key_id"`
	SMSAliyunAccessKeySecret string `env:"WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_SECRET" yaml:"sms_aliyun_access_key_secret"`
	SMSAliyunEndpoint        string `env:"WEJOURNEY_SMS_ALIYUN_ENDPOINT" yaml:"sms_aliyun_endpoint"`
	// Tencent Cloud SMS: a SecretId/SecretKey, the SMS application's
	// SdkAppId, the region (default ap-guangzhou) and the endpoint (a host,
	// default sms.tencentcloudapi.com, or an http(s) URL).
	SMSTencentSecretID  string `env:"WEJOURNEY_SMS_TENCENT_SECRET_ID" yaml:"sms_tencent_secret_id"`
	SMSTencentSecretKey string `env:"WEJOURNEY_SMS_TENCENT_SECRET_KEY" yaml:"sms_tencent_secret_key"`
	SMSTencentSDKAppID  string `env:"WEJOURNEY_SMS_TENCENT_SDK_APP_ID" yaml:"sms_tencent_sdk_app_id"`
	SMSTencentRegion    string `env:"WEJOURNEY_SMS_TENCENT_REGION" yaml:"sms_tencent_region"`
	SMSTencentEndpoint  string `env:"WEJOURNEY_SMS_TENCENT_ENDPOINT" yaml:"sms_tencent_endpoint"`
	// SMSWebhookURL and SMSWebhookSecret are the brand's SMS gateway and
	// the key its requests are signed with (DESIGN.md's webhook contract).
	SMSWebhookURL    string `env:"WEJOURNEY_SMS_WEBHOOK_URL" yaml:"sms_webhook_url"`
	SMSWebhookSecret string `env:"WEJOURNEY_SMS_WEBHOOK_SECRET" yaml:"sms_webhook_secret"`
	// WebhookSecret signs the requests of webhook steps
	// (X-Wejourney-Signature: sha256=<hex> of the body); empty, they are
	// not signed.
	WebhookSecret string `env:"WEJOURNEY_WEBHOOK_SECRET" yaml:"webhook_secret"`
	// SMSUplinkToken protects the providers' reply callbacks
	// (/sms/aliyun/uplink?token=…, /sms/tencent/uplink?token=…): empty, the
	// routes answer 404.
	SMSUplinkToken string `env:"WEJOURNEY_SMS_UPLINK_TOKEN" yaml:"sms_uplink_token"`
	// SMSPhoneRate bounds the SMS sent to one phone number, all processes
	// together: comma-separated N/period ("5/h,10/d"; periods s, m, h, d or
	// a Go duration, "3/30m"); empty for DefaultSMSPhoneRate; "0" for none.
	SMSPhoneRate string `env:"WEJOURNEY_SMS_PHONE_RATE" yaml:"sms_phone_rate"`
	// SMSRate bounds calls to the SMS provider, all processes together
	// ("100/s"); empty for DefaultSMSRate; "0" for none.
	SMSRate string `env:"WEJOURNEY_SMS_RATE" yaml:"sms_rate"`

	// PublicURL is the public base URL (callback URLs shown to operators,
	// tracking links); empty: http:// + HTTPAddr.
	PublicURL string `env:"WEJOURNEY_PUBLIC_URL" yaml:"public_url"`
	// SecretKey encrypts account secrets at rest: one or more comma-separated
	// 32-byte keys (base64 or 64 hex digits); the first encrypts, every one
	// decrypts (rotation). Required with PostgreSQL or MySQL; on the embedded
	// SQLite default it is generated into the database's directory.
	SecretKey string `env:"WEJOURNEY_SECRET_KEY" yaml:"secret_key"`
	// CookieSecure sets the Secure flag of admin cookies: "auto" (default:
	// when the request came over TLS, or through a trusted proxy that says
	// X-Forwarded-Proto: https, or PublicURL is https), "always" or "never".
	CookieSecure string `env:"WEJOURNEY_COOKIE_SECURE" yaml:"cookie_secure"`
	// TrustedProxies are comma-separated IPs or CIDRs whose X-Forwarded-For
	// and X-Forwarded-Proto are believed (client IPs for sign-in limits);
	// empty: none, the peer address is the client.
	TrustedProxies string `env:"WEJOURNEY_TRUSTED_PROXIES" yaml:"trusted_proxies"`
	// DemoJourneys: "auto" (default) loads journeys marked demo: true only
	// while the default account is the sandbox; "on" always; "off" never.
	DemoJourneys string `env:"WEJOURNEY_DEMO_JOURNEYS" yaml:"demo_journeys"`
	// MergeBy is a comma-separated list of "phone" and "email": members
	// sharing one are merged into one person, as members sharing a unionid
	// always are. Empty (default): a phone or email names a member but
	// never merges two.
	MergeBy string `env:"WEJOURNEY_MERGE_BY" yaml:"merge_by"`
	// WeChatAllowanceEvent and WeChatAllowanceMessage are the
	// customer-service allowance a member's follow, QR scan or menu click
	// (default "3/1m": 3 within a minute) and a member's message (default
	// "5/48h") open. WeChat has changed them before.
	WeChatAllowanceEvent   string `env:"WEJOURNEY_WECHAT_ALLOWANCE_EVENT" yaml:"wechat_allowance_event"`
	WeChatAllowanceMessage string `env:"WEJOURNEY_WECHAT_ALLOWANCE_MESSAGE" yaml:"wechat_allowance_message"`
	// RateLimits bounds provider API calls per account, shared by every
	// worker through Redis: a comma-separated list of API=N/PERIOD, e.g.
	// "wechat.custom=500/s,wechat.template=200/s". APIs not listed take
	// their defaults (see docs/configuration.md).
	RateLimits string `env:"WEJOURNEY_RATE_LIMITS" yaml:"rate_limits"`
	// FrequencyCaps bounds the marketing messages a member gets from every
	// journey together: a comma-separated list of CHANNEL=MAX/PERIOD, "*"
	// for every channel, e.g. "*=2/1d,*=5/7d". Empty: no cap.
	// Transactional sends are exempt.
	FrequencyCaps string `env:"WEJOURNEY_FREQUENCY_CAPS" yaml:"frequency_caps"`
	// QuietHours is the daily window (China time, "22:00-08:00") in which
	// marketing sends of every journey wait; a journey's own quiet_hours
	// replaces it ("off": none). Empty: none.
	QuietHours string `env:"WEJOURNEY_QUIET_HOURS" yaml:"quiet_hours"`
}

// Caps returns FrequencyCaps parsed.
func (c Config) Caps() ([]journey.FrequencyCap, error) {
	caps, err := journey.ParseFrequencyCaps(c.FrequencyCaps)
	if err != nil {
		return nil, fmt.Errorf("WEJOURNEY_FREQUENCY_CAPS: %w", err)
	}
	return caps, nil
}

// Allowance returns the WeChat customer-service allowance after an event
// and after a message.
func (c Config) Allowance() (event, message channels.Rate, err error) {
	event, message = channels.Rate{N: 3, Per: time.Minute}, channels.Rate{N: 5, Per: 48 * time.Hour}
	if c.WeChatAllowanceEvent != "" {
		if event, err = channels.ParseRate(c.WeChatAllowanceEvent); err != nil {
			return event, message, fmt.Errorf("WEJOURNEY_WECHAT_ALLOWANCE_EVENT: %w", err)
		}
	}
	if c.WeChatAllowanceMessage != "" {
		if message, err = channels.ParseRate(c.WeChatAllowanceMessage); err != nil {
			return event, message, fmt.Errorf("WEJOURNEY_WECHAT_ALLOWANCE_MESSAGE: %w", err)
		}
	}
	return event, message, nil
}

// RateLimitAPIs are the API names WEJOURNEY_RATE_LIMITS may bound: the
// Official Account's sending APIs (channels/wechat) and WeCom's
// (channels/wecom APIs).
var RateLimitAPIs = []string{"wechat.custom", "wechat.template", "wechat.subscribe",
	"wecom.send_welcome_msg", "wecom.message_send", "wecom.mark_tag", "wecom.add_msg_template"}

// Rates returns RateLimits parsed: API name -> rate. A name not in
// RateLimitAPIs is an error: a misspelt one would limit nothing.
func (c Config) Rates() (map[string]channels.Rate, error) {
	r, err := channels.ParseRates(c.RateLimits)
	if err != nil {
		return nil, fmt.Errorf("WEJOURNEY_RATE_LIMITS: %w", err)
	}
	for k := range r {
		if !slices.Contains(RateLimitAPIs, k) {
			return nil, fmt.Errorf("WEJOURNEY_RATE_LIMITS: %q is not an API wejourney limits: want one of %s (SMS has WEJOURNEY_SMS_PHONE_RATE and WEJOURNEY_SMS_RATE)",
				k, strings.Join(RateLimitAPIs, ", "))
		}
	}
	return r, nil
}

// MergeKinds returns the identity kinds of MergeBy ("phone", "email").
func (c Config) MergeKinds() ([]string, error) {
	var out []string
	for _, k := range strings.Split(c.MergeBy, ",") {
		switch k = strings.TrimSpace(k); k {
		case "":
		case "phone", "email":
			out = append(out, k)
		default:
			return nil, fmt.Errorf("%q: want phone, email or both, comma-separated", k)
		}
	}
	return out, nil
}

// Defaults returns the configuration with nothing set.
func Defaults() Config {
	return Config{
		HTTPAddr:      "127.0.0.1:8080",
		DatabaseURL:   "sqlite:data/wejourney.db",
		JourneysDir:   "journeys",
		WeChatAPIBase: "https://api.weixin.qq.com",
		WeComAPIBase:  "https://qyapi.weixin.qq.com",
		SMSProvider:   "log",
		CookieSecure:  "auto",
		DemoJourneys:  "auto",
	}
}

// DefaultFile is the yaml file Load reads when it exists in the working directory.
const DefaultFile = "wejourney.yaml"

// Load builds the configuration: defaults, then the yaml file at path (skipped
// when path is empty, or is DefaultFile and does not exist), then the
// environment through getenv (os.Getenv when nil). It does not validate.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Defaults()
	if getenv == nil {
		getenv = os.Getenv
	}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist) && path == DefaultFile:
		case err != nil:
			return cfg, fmt.Errorf("config: %w", err)
		default:
			dec := yaml.NewDecoder(strings.NewReader(string(b)))
			dec.KnownFields(true)
			if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
				return cfg, fmt.Errorf("config: %s: %w", path, err)
			}
		}
	}
	v := reflect.ValueOf(&cfg).Elem()
	for i := 0; i < v.NumField(); i++ {
		if val := getenv(v.Type().Field(i).Tag.Get("env")); val != "" {
			v.Field(i).SetString(val)
		}
	}
	return cfg, nil
}

// DefaultMaxConns is a process's database connections when
// WEJOURNEY_DATABASE_MAX_CONNS is empty.
const DefaultMaxConns = 32

// MaxConns is WEJOURNEY_DATABASE_MAX_CONNS as a number (DefaultMaxConns when empty).
func (c Config) MaxConns() (int, error) {
	if c.DatabaseMaxConns == "" {
		return DefaultMaxConns, nil
	}
	n, err := strconv.Atoi(c.DatabaseMaxConns)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q: want a number of connections, 1 or more", c.DatabaseMaxConns)
	}
	return n, nil
}

// DefaultEventsRate is the events API's limit per API key, in events per
// second, when WEJOURNEY_EVENTS_RATE is empty.
const DefaultEventsRate = 1000

// EventsPerSecond is WEJOURNEY_EVENTS_RATE as a number (DefaultEventsRate
// when empty; 0 means no limit).
func (c Config) EventsPerSecond() (int, error) {
	if c.EventsRate == "" {
		return DefaultEventsRate, nil
	}
	n, err := strconv.Atoi(c.EventsRate)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want events per second per API key, 0 for no limit", c.EventsRate)
	}
	return n, nil
}

// Sandbox reports whether the default Official Account has no real
// credentials: callbacks use the sandbox appid and token, sends are logged.
func (c Config) Sandbox() bool { return c.WeChatAppSecret == "" }

// DefaultAppID is the appid of the default Official Account (the sandbox's when none is set).
func (c Config) DefaultAppID() string {
	if c.WeChatAppID == "" {
		return SandboxAppID
	}
	return c.WeChatAppID
}

// DefaultToken is the callback token of the default Official Account.
func (c Config) DefaultToken() string {
	if c.WeChatToken == "" && c.WeChatAppID == "" {
		return SandboxToken
	}
	return c.WeChatToken
}

// Validate checks the configuration and returns every problem, one line each,
// joined with errors.Join; nil when it is usable.
func (c Config) Validate() error {
	var errs []error
	bad := func(env, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", env, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("WEJOURNEY_HTTP_ADDR", "%q is not host:port", c.HTTPAddr)
	}
	if _, _, err := ParseDatabaseURL(c.DatabaseURL); err != nil {
		bad("WEJOURNEY_DATABASE_URL", "%v", err)
	}
	if _, err := c.MaxConns(); err != nil {
		bad("WEJOURNEY_DATABASE_MAX_CONNS", "%v", err)
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || !oneOf(u.Scheme, "redis", "rediss", "redis-socket", "redis-sentinel", "redis-cluster") {
			bad("WEJOURNEY_REDIS_URL", "%q: want redis://host:6379/0, rediss://…, redis-sentinel://…, redis-cluster://… or redis-socket://…", c.RedisURL)
		}
	}
	if err := checkAESKey(c.WeChatAESKey); err != nil {
		bad("WEJOURNEY_WECHAT_AES_KEY", "%v", err)
	}
	if c.WeChatAppID != "" && c.WeChatToken == "" {
		bad("WEJOURNEY_WECHAT_TOKEN", "required when WEJOURNEY_WECHAT_APPID is set (the token you entered in the Official Account's server settings)")
	}
	if c.WeChatAppSecret != "" && c.WeChatAppID == "" {
		bad("WEJOURNEY_WECHAT_APPID", "required when WEJOURNEY_WECHAT_APPSECRET is set")
	}
	if c.MiniProgramAppID != "" && c.MiniProgramAppSecret == "" {
		bad("WEJOURNEY_MINIPROGRAM_APPSECRET", "required when WEJOURNEY_MINIPROGRAM_APPID is set (code2session needs the mini-program's AppSecret)")
	}
	if c.MiniProgramAppSecret != "" && c.MiniProgramAppID == "" {
		bad("WEJOURNEY_MINIPROGRAM_APPID", "required when WEJOURNEY_MINIPROGRAM_APPSECRET is set")
	}
	if c.MiniProgramAppID != "" && c.MiniProgramAppID == c.DefaultAppID() {
		bad("WEJOURNEY_MINIPROGRAM_APPID", "%q is the Official Account's appid: a mini-program has an appid of its own", c.MiniProgramAppID)
	}
	if _, err := c.EventsPerSecond(); err != nil {
		bad("WEJOURNEY_EVENTS_RATE", "%v", err)
	}
	if err := checkAESKey(c.WeComAESKey); err != nil {
		bad("WEJOURNEY_WECOM_AES_KEY", "%v", err)
	}
	c.validateWeCom(bad)
	for env, base := range map[string]string{"WEJOURNEY_WECHAT_API_BASE": c.WeChatAPIBase, "WEJOURNEY_WECOM_API_BASE": c.WeComAPIBase} {
		if u, err := url.Parse(base); err != nil || !oneOf(u.Scheme, "http", "https") || u.Host == "" {
			bad(env, "%q is not an http(s) URL", base)
		}
	}
	if c.SMTPURL != "" {
		// Not echoed: the URL holds the SMTP password.
		if err := checkSMTPURL(c.SMTPURL); err != nil {
			bad("WEJOURNEY_SMTP_URL", "%v", err)
		}
		if c.EmailFrom == "" {
			bad("WEJOURNEY_EMAIL_FROM", "required when WEJOURNEY_SMTP_URL is set: the sender address, e.g. \"Brand <news@brand.example>\"")
		} else if _, err := mail.ParseAddress(c.EmailFrom); err != nil {
			bad("WEJOURNEY_EMAIL_FROM", "%q is not an email address: %v", c.EmailFrom, err)
		}
	}
	c.validateSMS(bad)
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || !oneOf(u.Scheme, "http", "https") || u.Host == "" {
			bad("WEJOURNEY_PUBLIC_URL", "%q is not an http(s) URL", c.PublicURL)
		}
	}
	if _, err := c.SecretKeys(); err != nil {
		bad("WEJOURNEY_SECRET_KEY", "%v", err)
	} else if d, _, err := ParseDatabaseURL(c.DatabaseURL); err == nil && c.SecretKey == "" && d != "sqlite" {
		bad("WEJOURNEY_SECRET_KEY", "required with %s (it encrypts account secrets at rest); make one with: openssl rand -base64 32", d)
	}
	if !oneOf(c.CookieSecure, "auto", "always", "never") {
		bad("WEJOURNEY_COOKIE_SECURE", "%q: want auto, always or never", c.CookieSecure)
	}
	if _, err := c.Proxies(); err != nil {
		bad("WEJOURNEY_TRUSTED_PROXIES", "%v", err)
	}
	if !oneOf(c.DemoJourneys, "auto", "on", "off") {
		bad("WEJOURNEY_DEMO_JOURNEYS", "%q: want auto, on or off", c.DemoJourneys)
	}
	if _, err := c.MergeKinds(); err != nil {
		bad("WEJOURNEY_MERGE_BY", "%v", err)
	}
	if _, _, err := c.Allowance(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.Caps(); err != nil {
		errs = append(errs, err)
	}
	if err := journey.CheckQuietHours(c.QuietHours); err != nil {
		bad("WEJOURNEY_QUIET_HOURS", "%v", err)
	}
	if _, err := c.Rates(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateWeCom checks the default WeCom app: a corpid needs the agentid,
// token and EncodingAESKey of the app's callback settings (WeCom always
// encrypts), and the other WEJOURNEY_WECOM_ values need a corpid. The
// corpid and agentid make the app's account id "corpid/agentid", so they
// hold only letters, digits, '-' and '_'.
func (c Config) validateWeCom(bad func(env, format string, args ...any)) {
	if c.WeComCorpID == "" {
		if c.WeComAgentID != "" || c.WeComSecret != "" || c.WeComToken != "" || c.WeComAESKey != "" {
			bad("WEJOURNEY_WECOM_CORPID", "required when another WEJOURNEY_WECOM_ value is set (the 企业ID in 企业微信 管理后台 → 我的企业)")
		}
		return
	}
	if !idChars(c.WeComCorpID) {
		bad("WEJOURNEY_WECOM_CORPID", "%q: want the 企业ID (letters and digits)", c.WeComCorpID)
	}
	switch {
	case c.WeComAgentID == "":
		bad("WEJOURNEY_WECOM_AGENTID", "required when WEJOURNEY_WECOM_CORPID is set (the app's AgentId in 企业微信 管理后台 → 应用管理)")
	case !idChars(c.WeComAgentID):
		bad("WEJOURNEY_WECOM_AGENTID", "%q: want the app's AgentId (digits)", c.WeComAgentID)
	}
	if c.WeComToken == "" {
		bad("WEJOURNEY_WECOM_TOKEN", "required when WEJOURNEY_WECOM_CORPID is set (the Token of the app's 接收消息 settings)")
	}
	if c.WeComAESKey == "" {
		bad("WEJOURNEY_WECOM_AES_KEY", "required when WEJOURNEY_WECOM_CORPID is set (WeCom always encrypts: the EncodingAESKey of the app's 接收消息 settings)")
	}
}

// idChars reports whether s is letters, digits, '-' and '_' only.
func idChars(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// checkAESKey checks an EncodingAESKey: 43 characters of base64 that decode
// (with the "=" WeChat leaves off) to a 32-byte AES key.
func checkAESKey(k string) error {
	if k == "" {
		return nil
	}
	if len(k) != 43 {
		return fmt.Errorf("EncodingAESKey must be 43 characters, got %d", len(k))
	}
	if b, err := base64.StdEncoding.DecodeString(k + "="); err != nil || len(b) != 32 {
		return errors.New("EncodingAESKey is not base64 (copy it again from the server settings: letters and digits only)")
	}
	return nil
}

// SecretKeys decodes SecretKey: each comma-separated key is 32 bytes as
// base64 (standard or URL alphabet) or 64 hex digits. The first encrypts.
func (c Config) SecretKeys() ([][]byte, error) {
	var keys [][]byte
	for i, k := range strings.Split(c.SecretKey, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		var b []byte
		if h, err := hex.DecodeString(k); err == nil && len(h) == 32 {
			b = h
		} else {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
				if d, err := enc.DecodeString(k); err == nil && len(d) == 32 {
					b = d
					break
				}
			}
		}
		if b == nil {
			return nil, fmt.Errorf("key %d is not 32 bytes of base64 or 64 hex digits (make one with: openssl rand -base64 32)", i+1)
		}
		keys = append(keys, b)
	}
	return keys, nil
}

// Proxies parses TrustedProxies into IPs and CIDRs, as gin's SetTrustedProxies takes them.
func (c Config) Proxies() ([]string, error) {
	var out []string
	for _, p := range strings.Split(c.TrustedProxies, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseDatabaseURL splits a database URL into its gorm dialect ("sqlite",
// "postgres", "mysql") and the driver's DSN. sqlite:PATH takes a file path
// (":memory:" for an in-memory database); mysql://user:pass@host:3306/db
// becomes the go-sql-driver DSN.
func ParseDatabaseURL(raw string) (dialect, dsn string, err error) {
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" {
			return "", "", fmt.Errorf("%q: sqlite needs a path, e.g. sqlite:data/wejourney.db", raw)
		}
		return "sqlite", path, nil
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return "postgres", raw, nil
	case strings.HasPrefix(raw, "mysql://"):
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", fmt.Errorf("%q: %w", raw, err)
		}
		q := u.Query()
		q.Set("parseTime", "true")
		if q.Get("charset") == "" {
			q.Set("charset", "utf8mb4")
		}
		if q.Get("loc") == "" {
			q.Set("loc", "UTC")
		}
		return "mysql", fmt.Sprintf("%s@tcp(%s)%s?%s", u.User.String(), u.Host, u.Path, q.Encode()), nil
	}
	return "", "", fmt.Errorf("%q: want sqlite:PATH, postgres://… or mysql://…", raw)
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// checkSMTPURL checks WEJOURNEY_SMTP_URL: scheme smtp or smtps, a host, a
// port if any from 1 to 65535. Its errors never repeat the URL (it holds
// the password).
func checkSMTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL: want smtp://user:pass@host:587 or smtps://user:pass@host:465")
	}
	if !oneOf(u.Scheme, "smtp", "smtps") {
		return fmt.Errorf("scheme %q: want smtp:// (STARTTLS when offered) or smtps:// (implicit TLS)", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("no host: want smtp://user:pass@host:587")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("the port is not a number from 1 to 65535")
		}
	}
	return nil
}
