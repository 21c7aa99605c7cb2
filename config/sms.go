package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of the SMS rate limits (WEJOURNEY_SMS_PHONE_RATE,
// WEJOURNEY_SMS_RATE): 5 an hour and 10 a day to one phone number (the
// providers' own flow control for one number), 100 provider calls a second.
const (
	DefaultSMSPhoneRate = "5/h,10/d"
	DefaultSMSRate      = "100/s"
)

// Rate is N calls per Per.
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRates reads comma-separated rates "N/period": the period is s, m,
// h or d (one second, minute, hour, day) or a Go duration ("30m"). "0"
// means no limit (no rates).
func ParseRates(s string) ([]Rate, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return []Rate{}, nil
	}
	var out []Rate
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		n, per, ok := strings.Cut(part, "/")
		count, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil || count < 1 {
			return nil, fmt.Errorf("%q: want N/period, e.g. 5/h,10/d (periods s, m, h, d or a duration like 30m), or 0 for no limit", part)
		}
		var d time.Duration
		switch per = strings.TrimSpace(per); per {
		case "s":
			d = time.Second
		case "m":
			d = time.Minute
		case "h":
			d = time.Hour
		case "d":
			d = 24 * time.Hour
		default:
			if d, err = time.ParseDuration(per); err != nil || d <= 0 {
				return nil, fmt.Errorf("%q: the period %q is not s, m, h, d or a duration like 30m", part, per)
			}
		}
		out = append(out, Rate{N: count, Per: d})
	}
	return out, nil
}

// SMSPhoneRates is WEJOURNEY_SMS_PHONE_RATE parsed (DefaultSMSPhoneRate
// when empty; empty for "0").
func (c Config) SMSPhoneRates() ([]Rate, error) {
	if c.SMSPhoneRate == "" {
		return ParseRates(DefaultSMSPhoneRate)
	}
	return ParseRates(c.SMSPhoneRate)
}

// SMSProviderRate is WEJOURNEY_SMS_RATE parsed: one rate (DefaultSMSRate
// when empty), or the zero Rate for "0" (no limit).
func (c Config) SMSProviderRate() (Rate, error) {
	s := c.SMSRate
	if s == "" {
		s = DefaultSMSRate
	}
	rs, err := ParseRates(s)
	switch {
	case err != nil:
		return Rate{}, err
	case len(rs) > 1:
		return Rate{}, fmt.Errorf("%q: want one rate, e.g. 100/s", s)
	case len(rs) == 0:
		return Rate{}, nil
	}
	return rs[0], nil
}

// validateSMS checks the SMS provider and its keys. Secrets are never
// echoed.
func (c Config) validateSMS(bad func(env, format string, args ...any)) {
	need := func(provider string, pairs ...string) {
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i+1] == "" {
				bad(pairs[i], "required with WEJOURNEY_SMS_PROVIDER=%s", provider)
			}
		}
	}
	endpoint := func(env, v string) {
		if v == "" || !strings.Contains(v, "://") {
			return
		}
		if u, err := url.Parse(v); err != nil || !oneOf(u.Scheme, "http", "https") || u.Host == "" {
			bad(env, "%q: want a host name or an http(s) URL", v)
		}
	}
	switch c.SMSProvider {
	case "log":
	case "aliyun":
		need("aliyun", "WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_ID", c.SMSAliyunAccessKeyID,
			"WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_SECRET", c.SMSAliyunAccessKeySecret,
			"WEJOURNEY_SMS_SIGN_NAME", c.SMSSignName)
		endpoint("WEJOURNEY_SMS_ALIYUN_ENDPOINT", c.SMSAliyunEndpoint)
	case "tencent":
		need("tencent", "WEJOURNEY_SMS_TENCENT_SECRET_ID", c.SMSTencentSecretID,
			"WEJOURNEY_SMS_TENCENT_SECRET_KEY", c.SMSTencentSecretKey,
			"WEJOURNEY_SMS_TENCENT_SDK_APP_ID", c.SMSTencentSDKAppID,
			"WEJOURNEY_SMS_SIGN_NAME", c.SMSSignName)
		endpoint("WEJOURNEY_SMS_TENCENT_ENDPOINT", c.SMSTencentEndpoint)
	case "webhook":
		need("webhook", "WEJOURNEY_SMS_WEBHOOK_URL", c.SMSWebhookURL, "WEJOURNEY_SMS_WEBHOOK_SECRET", c.SMSWebhookSecret)
		if c.SMSWebhookURL != "" {
			// Not echoed: the URL may hold the gateway's credentials.
			if u, err := url.Parse(c.SMSWebhookURL); err != nil || !oneOf(u.Scheme, "http", "https") || u.Host == "" {
				bad("WEJOURNEY_SMS_WEBHOOK_URL", "not an http(s) URL")
			}
		}
	default:
		bad("WEJOURNEY_SMS_PROVIDER", "%q: want aliyun, tencent, webhook or log (development: messages are logged, not sent)", c.SMSProvider)
	}
	if _, err := c.SMSPhoneRates(); err != nil {
		bad("WEJOURNEY_SMS_PHONE_RATE", "%v", err)
	}
	if _, err := c.SMSProviderRate(); err != nil {
		bad("WEJOURNEY_SMS_RATE", "%v", err)
	}
}
