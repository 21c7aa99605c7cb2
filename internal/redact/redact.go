// Package redact masks credentials in text before it is logged, stored or
// answered: access tokens and secrets in query strings, form bodies, DSNs and
// JSON, and passwords in URLs.
//
// String masks a string; Error wraps an error so that its message is masked
// while errors.Is and errors.As still see the original chain; Handler wraps a
// slog.Handler so every record's message, string attributes and error
// attributes are masked before they are written.
//
// The masked value is replaced by Mask, the placeholder net/url uses for
// passwords, so "…?access_token=abc" becomes "…?access_token=xxxxx".
package redact

import (
	"regexp"
	"strings"
)

// Mask replaces every redacted value.
const Mask = "xxxxx"

// keys are the parameter and field names whose values are credentials
// (matched case-insensitively, as a whole name).
const keys = `access_token|refresh_token|component_access_token|authorizer_access_token|authorizer_refresh_token|` +
	`id_token|token|secret|appsecret|app_secret|corpsecret|component_appsecret|client_secret|` +
	`password|passwd|pwd|encodingaeskey|encoding_aes_key|aes_key|aeskey|api_key|apikey|session_key`

var (
	// name=value in a query string, a form body or a key=value DSN. The
	// value ends at a separator; an already masked value is left alone.
	paramRE = regexp.MustCompile(`(?i)(^|[^A-Za-z0-9_])(` + keys + `)=([^&\s"'#,;<>\\]+)`)
	// "name":"value" in JSON, also inside a %q-quoted string (\"name\":\"value\").
	jsonRE = regexp.MustCompile(`(?i)(\\?")(` + keys + `)(\\?"\s*:\s*\\?")((?:[^"\\]|\\[^"])*)`)
	// scheme://user:password@host — the password goes, the user stays.
	// The password runs to the last '@' of the authority, so an unescaped '@'
	// in it is masked too.
	userinfoRE = regexp.MustCompile(`(?i)([a-z][a-z0-9+.\-]*://[^/?#@\s:]*):([^/?#\s]+)@`)
	// user:password@tcp(host) — go-sql-driver/mysql's DSN.
	mysqlRE = regexp.MustCompile(`([A-Za-z0-9_.\-]*):([^@\s/:]+)@(tcp|unix)\(`)
)

// String returns s with every credential it recognises replaced by Mask:
// the values of access_token, secret, appsecret, password and similar names
// in query strings, form bodies and key=value DSNs; the same names' values
// in JSON ("access_token":"…"); and the password of URLs
// (scheme://user:password@host) and MySQL DSNs (user:password@tcp(…)).
func String(s string) string {
	if !maybeSecret(s) {
		return s
	}
	s = paramRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := paramRE.FindStringSubmatch(m)
		if sub[3] == Mask {
			return m
		}
		return sub[1] + sub[2] + "=" + Mask
	})
	s = jsonRE.ReplaceAllString(s, "${1}${2}${3}"+Mask)
	s = userinfoRE.ReplaceAllString(s, "${1}:"+Mask+"@")
	s = mysqlRE.ReplaceAllString(s, "${1}:"+Mask+"@${3}(")
	return s
}

// maybeSecret is a cheap test that lets most strings skip the expressions:
// everything String masks contains '=', '"' followed by ':', or '@'.
func maybeSecret(s string) bool {
	return strings.ContainsAny(s, "=@") || (strings.Contains(s, `"`) && strings.Contains(s, ":"))
}

// Error returns err with its message passed through String. When nothing in
// the message needs masking it returns err itself; otherwise the result's
// Error() is the masked message and Unwrap returns err, so errors.Is and
// errors.As (temporary or permanent classes, context.DeadlineExceeded,
// *url.Error's Timeout) see the same chain as before. Error(nil) is nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := String(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

// redactedError is an error whose message was masked.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Timeout reports whether the wrapped error is a timeout, so os.IsTimeout
// and net.Error checks that look only at the outer error still work.
func (e *redactedError) Timeout() bool {
	t, ok := e.err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}
