package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "wejourney.yaml")
	if err := os.WriteFile(file, []byte("http_addr: 0.0.0.0:9000\nwechat_appid: wxfile\nwechat_token: filetoken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WEJOURNEY_WECHAT_APPID": "wxenv"}
	got, err := Load(file, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.HTTPAddr = "0.0.0.0:9000"
	want.WeChatAppID = "wxenv"
	want.WeChatToken = "filetoken"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load() mismatch (-want +got):\n%s", diff)
	}
}

// TestLoadMissingDefaultFileIsFine changes the working directory, so it
// cannot run in parallel.
func TestLoadMissingDefaultFileIsFine(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := Load(DefaultFile, func(string) string { return "" }); err != nil {
		t.Fatalf("Load(%q) without the file: %v", DefaultFile, err)
	}
	if _, err := Load("nope.yaml", func(string) string { return "" }); err == nil {
		t.Fatal("Load of an explicitly named missing file succeeded")
	}
}

func TestLoadRejectsUnknownYAMLKey(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "w.yaml")
	os.WriteFile(file, []byte("wechat_app_id: typo\n"), 0o600)
	if _, err := Load(file, func(string) string { return "" }); err == nil {
		t.Fatal("a misspelt key was accepted")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // one line per problem, each naming its variable
	}{
		{"defaults are valid", func(*Config) {}, nil},
		{"short AES key", func(c *Config) {
			c.WeChatAppID, c.WeChatToken, c.WeChatAESKey = "wx1", "t", strings.Repeat("a", 42)
		}, []string{"WEJOURNEY_WECHAT_AES_KEY: EncodingAESKey must be 43 characters, got 42"}},
		{"appid without token", func(c *Config) { c.WeChatAppID = "wx1" },
			[]string{"WEJOURNEY_WECHAT_TOKEN: required when WEJOURNEY_WECHAT_APPID is set (the token you entered in the Official Account's server settings)"}},
		{"two problems, two lines", func(c *Config) { c.HTTPAddr = "8080"; c.DatabaseURL = "oracle://x" }, []string{
			`WEJOURNEY_HTTP_ADDR: "8080" is not host:port`,
			`WEJOURNEY_DATABASE_URL: "oracle://x": want sqlite:PATH, postgres://… or mysql://…`,
		}},
		{"AES key that is not base64", func(c *Config) {
			c.WeChatAppID, c.WeChatToken, c.WeChatAESKey = "wx1", "t", strings.Repeat("!", 43)
		}, []string{"WEJOURNEY_WECHAT_AES_KEY: EncodingAESKey is not base64 (copy it again from the server settings: letters and digits only)"}},
		{"postgres without a secret key", func(c *Config) { c.DatabaseURL = "postgres://u@h:5432/db" },
			[]string{"WEJOURNEY_SECRET_KEY: required with postgres (it encrypts account secrets at rest); make one with: openssl rand -base64 32"}},
		{"postgres with a secret key", func(c *Config) {
			c.DatabaseURL, c.SecretKey = "postgres://u@h:5432/db", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
		}, nil},
		{"bad secret key", func(c *Config) { c.SecretKey = "short" },
			[]string{"WEJOURNEY_SECRET_KEY: key 1 is not 32 bytes of base64 or 64 hex digits (make one with: openssl rand -base64 32)"}},
		{"bad sms provider", func(c *Config) { c.SMSProvider = "twilio" },
			[]string{`WEJOURNEY_SMS_PROVIDER: "twilio": want aliyun, tencent, webhook or log (development: messages are logged, not sent)`}},
		{"sms provider log", func(c *Config) { c.SMSProvider = "log" }, nil},
		{"sms provider aliyun without keys", func(c *Config) { c.SMSProvider = "aliyun" }, []string{
			"WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_ID: required with WEJOURNEY_SMS_PROVIDER=aliyun",
			"WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_SECRET: required with WEJOURNEY_SMS_PROVIDER=aliyun",
			"WEJOURNEY_SMS_SIGN_NAME: required with WEJOURNEY_SMS_PROVIDER=aliyun",
		}},
		{"sms provider aliyun", func(c *Config) {
			c.SMSProvider, c.SMSAliyunAccessKeyID, c.SMSAliyunAccessKeySecret, c.SMSSignName = "aliyun", "LTAI", "secret", "微旅程"
		}, nil},
		{"sms provider tencent without app id", func(c *Config) {
			c.SMSProvider, c.SMSTencentSecretID, c.SMSTencentSecretKey, c.SMSSignName = "tencent", "AKID", "key", "微旅程"
		}, []string{"WEJOURNEY_SMS_TENCENT_SDK_APP_ID: required with WEJOURNEY_SMS_PROVIDER=tencent"}},
		{"sms provider webhook without secret, URL not echoed", func(c *Config) {
			c.SMSProvider, c.SMSWebhookURL = "webhook", "ftp://user:pw@gw.example"
		}, []string{
			"WEJOURNEY_SMS_WEBHOOK_SECRET: required with WEJOURNEY_SMS_PROVIDER=webhook",
			"WEJOURNEY_SMS_WEBHOOK_URL: not an http(s) URL",
		}},
		{"sms phone rate", func(c *Config) { c.SMSPhoneRate = "3/30m, 10/d" }, nil},
		{"sms phone rate off", func(c *Config) { c.SMSPhoneRate = "0" }, nil},
		{"frequency caps and quiet hours", func(c *Config) { c.FrequencyCaps, c.QuietHours = "*=2/1d, *=5/7d, sms=1/1d", "22:00-08:00" }, nil},
		{"frequency caps and quiet hours bad", func(c *Config) { c.FrequencyCaps, c.QuietHours = "*=2/week", "22:00" }, []string{
			`WEJOURNEY_FREQUENCY_CAPS: "*=2/week": the period "week" is not a duration like 1d or 12h`,
			`WEJOURNEY_QUIET_HOURS: "22:00": want HH:MM-HH:MM`}},
		{"rate limits", func(c *Config) { c.RateLimits = "wechat.custom=500/s, wecom.send_welcome_msg=100/1s" }, nil},
		{"rate limits misspelt api", func(c *Config) { c.RateLimits = "wechat.costum=500/s" }, []string{
			`WEJOURNEY_RATE_LIMITS: "wechat.costum" is not an API wejourney limits: want one of wechat.custom, wechat.template, wechat.subscribe, ` +
				`wecom.send_welcome_msg, wecom.message_send, wecom.mark_tag, wecom.add_msg_template (SMS has WEJOURNEY_SMS_PHONE_RATE and WEJOURNEY_SMS_RATE)`}},
		{"allowance", func(c *Config) { c.WeChatAllowanceEvent, c.WeChatAllowanceMessage = "4/2m", "x" }, []string{
			`WEJOURNEY_WECHAT_ALLOWANCE_MESSAGE: "x": want N/PERIOD, e.g. 3/1m or 100/s`}},
		{"sms phone rate bad", func(c *Config) { c.SMSPhoneRate = "5/week" },
			[]string{`WEJOURNEY_SMS_PHONE_RATE: "5/week": the period "week" is not s, m, h, d or a duration like 30m`}},
		{"sms rate two rates", func(c *Config) { c.SMSRate = "1/s,2/m" },
			[]string{`WEJOURNEY_SMS_RATE: "1/s,2/m": want one rate, e.g. 100/s`}},
		{"smtp url and from", func(c *Config) {
			c.SMTPURL, c.EmailFrom = "smtp://mailer:hunter2@mail.example.com:587", "Brand <news@brand.example>"
		}, nil},
		{"smtps url without a port", func(c *Config) { c.SMTPURL, c.EmailFrom = "smtps://mailer:pw@mail.example.com", "news@brand.example" }, nil},
		{"smtp url without from", func(c *Config) { c.SMTPURL = "smtp://mailer:hunter2@mail.example.com:587" },
			[]string{`WEJOURNEY_EMAIL_FROM: required when WEJOURNEY_SMTP_URL is set: the sender address, e.g. "Brand <news@brand.example>"`}},
		{"smtp url of another scheme, password not echoed", func(c *Config) {
			c.SMTPURL, c.EmailFrom = "https://mailer:hunter2@mail.example.com", "news@brand.example"
		}, []string{`WEJOURNEY_SMTP_URL: scheme "https": want smtp:// (STARTTLS when offered) or smtps:// (implicit TLS)`}},
		{"smtp url without a host", func(c *Config) { c.SMTPURL, c.EmailFrom = "smtp://mailer:hunter2@:25", "news@brand.example" },
			[]string{"WEJOURNEY_SMTP_URL: no host: want smtp://user:pass@host:587"}},
		{"smtp url with a bad port", func(c *Config) {
			c.SMTPURL, c.EmailFrom = "smtp://mailer:hunter2@mail.example.com:0", "news@brand.example"
		},
			[]string{"WEJOURNEY_SMTP_URL: the port is not a number from 1 to 65535"}},
		{"email from that is no address", func(c *Config) { c.SMTPURL, c.EmailFrom = "smtp://mail.example.com", "brand" },
			[]string{`WEJOURNEY_EMAIL_FROM: "brand" is not an email address: mail: missing '@' or angle-addr`}},
		{"email from alone is fine", func(c *Config) { c.EmailFrom = "journeys@example.com" }, nil},
		{"max conns not a number", func(c *Config) { c.DatabaseMaxConns = "lots" },
			[]string{`WEJOURNEY_DATABASE_MAX_CONNS: "lots": want a number of connections, 1 or more`}},
		{"max conns zero", func(c *Config) { c.DatabaseMaxConns = "0" },
			[]string{`WEJOURNEY_DATABASE_MAX_CONNS: "0": want a number of connections, 1 or more`}},
		{"max conns 20", func(c *Config) { c.DatabaseMaxConns = "20" }, nil},
		{"mini-program appid and secret", func(c *Config) { c.MiniProgramAppID, c.MiniProgramAppSecret = "wxmini", "s" }, nil},
		{"mini-program appid without secret", func(c *Config) { c.MiniProgramAppID = "wxmini" },
			[]string{"WEJOURNEY_MINIPROGRAM_APPSECRET: required when WEJOURNEY_MINIPROGRAM_APPID is set (code2session needs the mini-program's AppSecret)"}},
		{"mini-program secret without appid", func(c *Config) { c.MiniProgramAppSecret = "s" },
			[]string{"WEJOURNEY_MINIPROGRAM_APPID: required when WEJOURNEY_MINIPROGRAM_APPSECRET is set"}},
		{"mini-program appid of the Official Account", func(c *Config) {
			c.WeChatAppID, c.WeChatToken, c.MiniProgramAppID, c.MiniProgramAppSecret = "wx1", "t", "wx1", "s"
		}, []string{`WEJOURNEY_MINIPROGRAM_APPID: "wx1" is the Official Account's appid: a mini-program has an appid of its own`}},
		{"events rate 0 turns the limit off", func(c *Config) { c.EventsRate = "0" }, nil},
		{"events rate negative", func(c *Config) { c.EventsRate = "-1" },
			[]string{`WEJOURNEY_EVENTS_RATE: "-1": want events per second per API key, 0 for no limit`}},
		{"events rate not a number", func(c *Config) { c.EventsRate = "fast" },
			[]string{`WEJOURNEY_EVENTS_RATE: "fast": want events per second per API key, 0 for no limit`}},
		{"a WeCom app", func(c *Config) {
			c.WeComCorpID, c.WeComAgentID, c.WeComToken, c.WeComAESKey = "ww5823bf96d3bd56c7", "1000002", "QDG6eK", strings.Repeat("a", 43)
		}, nil},
		{"a WeCom corpid alone", func(c *Config) { c.WeComCorpID = "ww5823bf96d3bd56c7" }, []string{
			"WEJOURNEY_WECOM_AGENTID: required when WEJOURNEY_WECOM_CORPID is set (the app's AgentId in 企业微信 管理后台 → 应用管理)",
			"WEJOURNEY_WECOM_TOKEN: required when WEJOURNEY_WECOM_CORPID is set (the Token of the app's 接收消息 settings)",
			"WEJOURNEY_WECOM_AES_KEY: required when WEJOURNEY_WECOM_CORPID is set (WeCom always encrypts: the EncodingAESKey of the app's 接收消息 settings)",
		}},
		{"a WeCom AES key of 42 characters", func(c *Config) {
			c.WeComCorpID, c.WeComAgentID, c.WeComToken, c.WeComAESKey = "ww1", "1000002", "t", strings.Repeat("a", 42)
		}, []string{"WEJOURNEY_WECOM_AES_KEY: EncodingAESKey must be 43 characters, got 42"}},
		{"a WeCom agentid with a slash", func(c *Config) {
			c.WeComCorpID, c.WeComAgentID, c.WeComToken, c.WeComAESKey = "ww1", "1/2", "t", strings.Repeat("a", 43)
		}, []string{`WEJOURNEY_WECOM_AGENTID: "1/2": want the app's AgentId (digits)`}},
		{"a WeCom token without a corpid", func(c *Config) { c.WeComToken = "t" },
			[]string{"WEJOURNEY_WECOM_CORPID: required when another WEJOURNEY_WECOM_ value is set (the 企业ID in 企业微信 管理后台 → 我的企业)"}},
		{"merge by phone and email", func(c *Config) { c.MergeBy = "phone, email" }, nil},
		{"merge by nickname", func(c *Config) { c.MergeBy = "phone,nickname" },
			[]string{`WEJOURNEY_MERGE_BY: "nickname": want phone, email or both, comma-separated`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Defaults()
			tt.modify(&c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventsPerSecond(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{"": DefaultEventsRate, "0": 0, "250": 250} {
		got, err := Config{EventsRate: in}.EventsPerSecond()
		if err != nil || got != want {
			t.Errorf("EventsPerSecond(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestLoadMiniProgram(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WEJOURNEY_MINIPROGRAM_APPID": "wxmini", "WEJOURNEY_MINIPROGRAM_APPSECRET": "mpsecret", "WEJOURNEY_EVENTS_RATE": "50"}
	got, err := Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got.MiniProgramAppID != "wxmini" || got.MiniProgramAppSecret != "mpsecret" || got.EventsRate != "50" {
		t.Errorf("Load() = appid %q, secret %q, rate %q; want wxmini, mpsecret, 50", got.MiniProgramAppID, got.MiniProgramAppSecret, got.EventsRate)
	}
}

func TestParseDatabaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, dialect, dsn string }{
		{"sqlite:data/w.db", "sqlite", "data/w.db"},
		{"postgres://u@127.0.0.1:5432/test", "postgres", "postgres://u@127.0.0.1:5432/test"},
		{"mysql://root@127.0.0.1:3306/test", "mysql", "root@tcp(127.0.0.1:3306)/test?charset=utf8mb4&loc=UTC&parseTime=true"},
	}
	for _, tt := range tests {
		d, dsn, err := ParseDatabaseURL(tt.in)
		if err != nil || d != tt.dialect || dsn != tt.dsn {
			t.Errorf("ParseDatabaseURL(%q) = %q, %q, %v; want %q, %q", tt.in, d, dsn, err, tt.dialect, tt.dsn)
		}
	}
}
