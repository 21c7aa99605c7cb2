package channels

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestTestRequestMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		channel string
		req     TestRequest
		check   func(Message) bool
	}{
		{WeChatText, TestRequest{To: "oX", AppID: "wx1", Text: "hi"}, func(m Message) bool { return m.To.OpenID == "oX" && m.To.AppID == "wx1" && m.Text == "hi" }},
		{WeChatSubscribe, TestRequest{To: "oM", AppID: "wxmini"}, func(m Message) bool { return m.To.MPOpenID == "oM" && m.To.MPAppID == "wxmini" }},
		{SMS, TestRequest{To: "138", Template: "T", Params: map[string]string{"code": "1"}}, func(m Message) bool {
			return m.To.Phone == "138" && m.Template == "T" && m.Data["code"] == "1"
		}},
		{Email, TestRequest{To: "a@b.example", Subject: "s"}, func(m Message) bool { return m.To.Email == "a@b.example" && m.Subject == "s" }},
		{WeComText, TestRequest{To: "rep1", AppID: "ww/1"}, func(m Message) bool {
			return m.Extra["to_user"] == "rep1" && m.Extra["wecom_app"] == "ww/1" && m.To.ExternalUserID == ""
		}},
		{WeComWelcome, TestRequest{To: "wmX", Extra: map[string]string{"welcome_code": "C"}}, func(m Message) bool {
			return m.To.ExternalUserID == "wmX" && m.Extra["welcome_code"] == "C"
		}},
	} {
		m, err := tc.req.Message(tc.channel)
		if err != nil {
			t.Fatalf("%s: %v", tc.channel, err)
		}
		if !tc.check(m) || m.Channel != tc.channel || m.Category != "transactional" || !strings.HasPrefix(m.IdempotencyKey, "test-") {
			t.Errorf("%s: message %+v", tc.channel, m)
		}
	}
	a, _ := TestRequest{To: "x"}.Message(SMS)
	b, _ := TestRequest{To: "x"}.Message(SMS)
	if a.IdempotencyKey == b.IdempotencyKey {
		t.Error("two test sends share an idempotency key")
	}
	if _, err := (TestRequest{}).Message(SMS); !errors.Is(err, ErrNoAddress) {
		t.Errorf("no address: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err   error
		class string
		code  int
	}{
		{&Error{Class: ErrUnreachable, Code: 41051, Msg: "used"}, "unreachable", 41051},
		{fmt.Errorf("wrapped: %w", &Error{Class: ErrQuota, Code: 45009}), "quota", 45009},
		{fmt.Errorf("bad: %w", ErrPermanent), "permanent", 0},
		{errors.New("dial tcp: refused https://x/?access_token=SECRET"), "temporary", 0},
	} {
		f := Describe(tc.err)
		if f.Class != tc.class || f.Code != tc.code || strings.Contains(f.Error, "SECRET") {
			t.Errorf("Describe(%v) = %+v", tc.err, f)
		}
	}
}
