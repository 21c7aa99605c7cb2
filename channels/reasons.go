package channels

import (
	"strconv"
	"strings"
)

// Classes of a recorded failure (Failure.Class, StoredFailure.Class).
// ClassUnknown is a failure whose text names no class a sender gives: a
// send that may have reached the provider, or an error of wejourney's own.
const (
	ClassUnreachable = "unreachable"
	ClassQuota       = "quota"
	ClassPermanent   = "permanent"
	ClassTemporary   = "temporary"
	ClassUnknown     = "unknown"
)

// StoredFailure is a recorded failure (a delivery's channel, ErrorCode and
// Error) read back: its class and the key of the plain words that explain
// it (Reason).
type StoredFailure struct {
	// Class is one of the Class constants.
	Class string
	// Key names the explanation, e.g. "wechat_45015", "sms_quota",
	// "email_550", "webhook_http"; "" when no explanation is known (show
	// the raw error).
	Key string
}

// Retryable reports whether a failure may be sent again by hand: the
// provider answered that it could not take the message for now (temporary)
// or that a quota was spent. Never a permanent or unreachable one, and
// never one whose text does not say the provider answered (it may have
// taken the message).
func (f StoredFailure) Retryable() bool {
	return f.Class == ClassTemporary || f.Class == ClassQuota
}

// StoredClass returns the class of a recorded error text: the text of an
// *Error, or an error wrapping one of the class sentinels.
func StoredClass(text string) string {
	switch {
	case strings.Contains(text, ErrUnreachable.Error()):
		return ClassUnreachable
	case strings.Contains(text, ErrQuota.Error()):
		return ClassQuota
	case strings.Contains(text, ErrPermanent.Error()):
		return ClassPermanent
	case strings.HasPrefix(text, "temporary: code ") || strings.Contains(text, ": temporary: code "):
		// An *Error without a class: the provider answered "not now".
		return ClassTemporary
	}
	return ClassUnknown
}

// wechatReasons are the WeChat (Official Account, mini-program) and WeCom
// error codes with an explanation of their own, by code.
var wechatReasons = map[int]string{
	-1:    "busy",
	40001: "token",
	42001: "token",
	40003: "openid",
	43004: "unfollowed",
	43101: "refused",
	45009: "daily_quota",
	45015: "45015",
	45047: "45047",
	41050: "welcome_expired",
	41051: "welcome_used",
}

// Reason reads back a recorded failure of channel: its class (from the
// error text) and the key of its explanation (from the channel, the code
// and the class). A key is "" when nothing more than the raw error can be
// said.
func Reason(channel string, code int, text string) StoredFailure {
	f := StoredFailure{Class: StoredClass(text)}
	family, _, _ := strings.Cut(channel, ".")
	switch {
	case strings.Contains(text, ErrNoSender.Error()):
		f.Key = "no_sender"
	case strings.Contains(text, "opted out of marketing"):
		f.Key = "opted_out"
	case family == "wechat" || family == "wecom":
		if k, ok := wechatReasons[code]; ok {
			f.Key = "wechat_" + k
		}
	case family == SMS:
		switch f.Class {
		case ClassUnreachable:
			f.Key = "sms_unreachable"
		case ClassQuota:
			f.Key = "sms_quota"
		case ClassPermanent:
			f.Key = "sms_refused"
		}
	case family == Email:
		switch {
		case code == 550 || code == 551 || code == 553:
			f.Key = "email_550"
		case code >= 400 && code < 500:
			f.Key = "email_4xx"
		case f.Class == ClassUnreachable:
			f.Key = "email_unreachable"
		}
	case family == "webhook":
		if code >= 100 && code < 600 {
			f.Key = "webhook_http"
		}
	}
	if f.Key == "" {
		switch f.Class {
		case ClassUnreachable, ClassQuota, ClassPermanent, ClassTemporary:
			f.Key = "class_" + f.Class
		}
	}
	return f
}

// CodeText is code as a reason's words show it ("45015", "HTTP 502").
func CodeText(channel string, code int) string {
	if strings.HasPrefix(channel, "webhook") {
		return "HTTP " + strconv.Itoa(code)
	}
	return strconv.Itoa(code)
}
