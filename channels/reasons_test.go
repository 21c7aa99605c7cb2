package channels_test

import (
	"fmt"
	"testing"

	"github.com/wejourney/wejourney/channels"
)

// TestReason reads recorded failures back as the engine records them (the
// error's text and code) and checks the class, the explanation and whether
// a retry by hand is offered.
func TestReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		channel   string
		err       error
		wantClass string
		wantKey   string
		retry     bool
	}{
		{"wechat.text", &channels.Error{Class: channels.ErrUnreachable, Code: 45015, Msg: "response out of time limit"}, channels.ClassUnreachable, "wechat_45015", false},
		{"wechat.text", &channels.Error{Class: channels.ErrUnreachable, Code: 43004, Msg: "member has unfollowed"}, channels.ClassUnreachable, "wechat_unfollowed", false},
		{"wechat.text", &channels.Error{Class: channels.ErrUnreachable, Code: 45047, Msg: "out of response count limit"}, channels.ClassUnreachable, "wechat_45047", false},
		{"wechat.template", &channels.Error{Class: channels.ErrQuota, Code: 45009, Msg: "reach max api daily quota limit"}, channels.ClassQuota, "wechat_daily_quota", true},
		{"wechat.template", &channels.Error{Class: channels.ErrUnreachable, Code: 40003, Msg: "invalid openid"}, channels.ClassUnreachable, "wechat_openid", false},
		{"wecom.welcome", &channels.Error{Class: channels.ErrPermanent, Code: 41051, Msg: "welcome code used"}, channels.ClassPermanent, "wechat_welcome_used", false},
		{"wechat.text", &channels.Error{Class: channels.ErrPermanent, Code: 40001, Msg: "invalid credential"}, channels.ClassPermanent, "wechat_token", false},
		{"wechat.text", &channels.Error{Code: -1, Msg: "system error"}, channels.ClassTemporary, "wechat_busy", true},
		{"sms", &channels.Error{Class: channels.ErrQuota, Msg: "isv.BUSINESS_LIMIT_CONTROL: 触发号码天级流控"}, channels.ClassQuota, "sms_quota", true},
		{"sms", &channels.Error{Class: channels.ErrPermanent, Msg: "isv.SMS_TEMPLATE_ILLEGAL: bad template"}, channels.ClassPermanent, "sms_refused", false},
		{"sms", &channels.Error{Class: channels.ErrUnreachable, Msg: "member opted out of marketing sms; not sent"}, channels.ClassUnreachable, "opted_out", false},
		{"email", &channels.Error{Class: channels.ErrUnreachable, Code: 550, Msg: "recipient refused: 550 mailbox unavailable"}, channels.ClassUnreachable, "email_550", false},
		{"email", &channels.Error{Code: 451, Msg: "try again later"}, channels.ClassTemporary, "email_4xx", true},
		{"webhook", &channels.Error{Code: 502, Msg: "webhook: Bad Gateway"}, channels.ClassTemporary, "webhook_http", true},
		{"wechat.text", fmt.Errorf("journey: %w %q: %w", channels.ErrNoSender, "wechat.text", channels.ErrPermanent), channels.ClassPermanent, "no_sender", false},
		// A timeout or a connection error: the provider may have the
		// message; no explanation beyond the raw error, never a retry.
		{"wechat.text", fmt.Errorf("post: context deadline exceeded"), channels.ClassUnknown, "", false},
		{"wechat.text", &channels.Error{Code: 48001, Msg: "api unauthorized"}, channels.ClassTemporary, "class_temporary", true},
	} {
		code := channels.Describe(tc.err).Code
		got := channels.Reason(tc.channel, code, tc.err.Error())
		if got.Class != tc.wantClass || got.Key != tc.wantKey || got.Retryable() != tc.retry {
			t.Errorf("Reason(%s, %d, %q) = %+v retryable %v; want class %s key %q retryable %v",
				tc.channel, code, tc.err, got, got.Retryable(), tc.wantClass, tc.wantKey, tc.retry)
		}
	}
}
