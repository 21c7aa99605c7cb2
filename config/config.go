// Package config is wejourney's typed configuration: defaults, an optional
// wejourney.yaml, then WEJOURNEY_* environment variables (which win), then
// validation that reports one clear line per problem.
//
// The keys are those of DESIGN.md's configuration table; the yaml file uses
// the same names lower-cased without the WEJOURNEY_ prefix
// (http_addr, database_url, wechat_appid, ...).
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
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
	HTTPAddr      string `env:"WEJOURNEY_HTTP_ADDR" yaml:"http_addr"`
	DatabaseURL   string `env:"WEJOURNEY_DATABASE_URL" yaml:"database_url"`
	RedisURL      string `env:"WEJOURNEY_REDIS_URL" yaml:"redis_url"`
	JourneysDir   string `env:"WEJOURNEY_JOURNEYS_DIR" yaml:"journeys_dir"`
	AdminPassword string `env:"WEJOURNEY_ADMIN_PASSWORD" yaml:"admin_password"`
	APIKey        string `env:"WEJOURNEY_API_KEY" yaml:"api_key"`

	WeChatAppID     string `env:"WEJOURNEY_WECHAT_APPID" yaml:"wechat_appid"`
	WeChatAppSecret string `env:"WEJOURNEY_WECHAT_APPSECRET" yaml:"wechat_appsecret"`
	WeChatToken     string `env:"WEJOURNEY_WECHAT_TOKEN" yaml:"wechat_token"`
	WeChatAESKey    string `env:"WEJOURNEY_WECHAT_AES_KEY" yaml:"wechat_aes_key"`
	WeChatAPIBase   string `env:"WEJOURNEY_WECHAT_API_BASE" yaml:"wechat_api_base"`

	WeComCorpID  string `env:"WEJOURNEY_WECOM_CORPID" yaml:"wecom_corpid"`
	WeComAgentID string `env:"WEJOURNEY_WECOM_AGENTID" yaml:"wecom_agentid"`
	WeComSecret  string `env:"WEJOURNEY_WECOM_SECRET" yaml:"wecom_secret"`
	WeComToken   string `env:"WEJOURNEY_WECOM_TOKEN" yaml:"wecom_token"`
	WeComAESKey  string `env:"WEJOURNEY_WECOM_AES_KEY" yaml:"wecom_aes_key"`
	WeComAPIBase string `env:"WEJOURNEY_WECOM_API_BASE" yaml:"wecom_api_base"`

	SMTPURL     string `env:"WEJOURNEY_SMTP_URL" yaml:"smtp_url"`
	EmailFrom   string `env:"WEJOURNEY_EMAIL_FROM" yaml:"email_from"`
	SMSProvider string `env:"WEJOURNEY_SMS_PROVIDER" yaml:"sms_provider"`
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
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || !oneOf(u.Scheme, "redis", "rediss", "redis-socket", "redis-sentinel", "redis-cluster") {
			bad("WEJOURNEY_REDIS_URL", "%q: want redis://host:6379/0, rediss://…, redis-sentinel://…, redis-cluster://… or redis-socket://…", c.RedisURL)
		}
	}
	if c.WeChatAESKey != "" && len(c.WeChatAESKey) != 43 {
		bad("WEJOURNEY_WECHAT_AES_KEY", "EncodingAESKey must be 43 characters, got %d", len(c.WeChatAESKey))
	}
	if c.WeChatAppID != "" && c.WeChatToken == "" {
		bad("WEJOURNEY_WECHAT_TOKEN", "required when WEJOURNEY_WECHAT_APPID is set (the token you entered in the Official Account's server settings)")
	}
	if c.WeChatAppSecret != "" && c.WeChatAppID == "" {
		bad("WEJOURNEY_WECHAT_APPID", "required when WEJOURNEY_WECHAT_APPSECRET is set")
	}
	if c.WeComAESKey != "" && len(c.WeComAESKey) != 43 {
		bad("WEJOURNEY_WECOM_AES_KEY", "EncodingAESKey must be 43 characters, got %d", len(c.WeComAESKey))
	}
	for env, base := range map[string]string{"WEJOURNEY_WECHAT_API_BASE": c.WeChatAPIBase, "WEJOURNEY_WECOM_API_BASE": c.WeComAPIBase} {
		if u, err := url.Parse(base); err != nil || !oneOf(u.Scheme, "http", "https") || u.Host == "" {
			bad(env, "%q is not an http(s) URL", base)
		}
	}
	if c.SMTPURL != "" {
		if u, err := url.Parse(c.SMTPURL); err != nil || !oneOf(u.Scheme, "smtp", "smtps") {
			bad("WEJOURNEY_SMTP_URL", "%q: want smtp://user:pass@host:587 or smtps://…", c.SMTPURL)
		}
	}
	if !oneOf(c.SMSProvider, "log", "aliyun", "tencent", "webhook") {
		bad("WEJOURNEY_SMS_PROVIDER", "%q: want log, aliyun, tencent or webhook", c.SMSProvider)
	}
	return errors.Join(errs...)
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
