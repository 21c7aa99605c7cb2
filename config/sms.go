package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/wejourney/wejourney/channels"
)

// Defaults of the SMS rate limits (WEJOURNEY_SMS_PHONE_RATE,
// WEJOURNEY_SMS_RATE): 5 an hour and 10 a day to one phone number (the
// providers' own flow control for one number), 100 provider calls a second.
const (
	DefaultSMSPhoneRate = "5/h,10/d"
	DefaultSMSRate      = "100/s"
)

// ParseRateList reads comma-separated rates "N/period" (see
// channels.ParseRate); "0" means no limit (no rates).
func ParseRateList(s string) ([]channels.Rate, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return []channels.Rate{}, nil
	}
	var out []channels.Rate
	for _, part := range strings.Split(s, ",") {
		r, err := channels.ParseRate(part)
		if err != nil {
			return nil, err
		}
		if r.N < 1 {
			return nil, fmt.Errorf("%q: want at least 1 per period, or 0 alone for no limit", part)
		}
		out = append(out, r)
	}
	return out, nil
}

// SMSPhoneRates is WEJOURNEY_SMS_PHONE_RATE parsed (DefaultSMSPhoneRate
// when empty; empty for "0").
func (c Config) SMSPhoneRates() ([]channels.Rate, error) {
	if c.SMSPhoneRate == "" {
		return ParseRateList(DefaultSMSPhoneRate)
	}
	return ParseRateList(c.SMSPhoneRate)
}

// SMSProviderRate is WEJOURNEY_SMS_RATE parsed: one rate (DefaultSMSRate
// when empty), or the zero Rate for "0" (no limit).
func (c Config) SMSProviderRate() (channels.Rate, error) {
	s := c.SMSRate
	if s == "" {
		s = DefaultSMSRate
	}
	rs, err := ParseRateList(s)
	switch {
	case err != nil:
		return channels.Rate{}, err
	case len(rs) > 1:
		return channels.Rate{}, fmt.Errorf("%q: want one rate, e.g. 100/s", s)
	case len(rs) == 0:
		return channels.Rate{}, nil
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
