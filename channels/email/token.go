package email

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind says what a tracking token is for: the route it travels in.
type Kind byte

// Token kinds.
const (
	// Open is the open pixel's token (GET /t/o/{token}).
	Open Kind = 'o'
	// Click is a tracked link's token (GET /t/c/{token}); it carries the
	// link's original URL.
	Click Kind = 'c'
	// Unsubscribe is the unsubscribe link's token (GET/POST /u/{token}).
	Unsubscribe Kind = 'u'
)

// Claims are what a token carries: which delivery (and so which member)
// it was made for, and for a click, where the link goes.
type Claims struct {
	Kind       Kind
	DeliveryID int64
	MemberID   int64
	// URL is the original link of a Click token; "" for the others.
	URL string
}

// ErrBadToken is returned by Tokens.Verify for a token that was not made
// with one of its keys, was altered, or does not decode.
var ErrBadToken = errors.New("email: invalid token")

const (
	// MaxToken is the longest token Verify looks at; longer ones are bad.
	MaxToken = 8192
	// macLen is how many bytes of the HMAC-SHA256 a token keeps: 128 bits.
	macLen = 16
	// tokenContext keeps these MACs apart from any other use of the keys.
	tokenContext = "wejourney email token v1\x00"
)

// Tokens signs and verifies tracking and unsubscribe tokens with
// HMAC-SHA256. A token is base64url(payload) "." base64url(MAC), where the
// payload is the kind letter, the delivery and member ids in base 36 and,
// for clicks, the URL. The first key signs; every key verifies (rotation).
// It is safe for concurrent use.
type Tokens struct {
	keys [][]byte
}

// NewTokens returns the token signer of keys: at least one, none empty.
func NewTokens(keys ...[]byte) (*Tokens, error) {
	if len(keys) == 0 {
		return nil, errors.New("email: tokens need a key")
	}
	for i, k := range keys {
		if len(k) == 0 {
			return nil, fmt.Errorf("email: token key %d is empty", i)
		}
	}
	return &Tokens{keys: keys}, nil
}

// Sign returns the token of c.
func (t *Tokens) Sign(c Claims) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(encodeClaims(c)))
	return payload + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(t.keys[0], payload))
}

// Verify checks tok's MAC in constant time against every key and returns
// its claims, or ErrBadToken.
func (t *Tokens) Verify(tok string) (Claims, error) {
	if t == nil || len(tok) > MaxToken {
		return Claims{}, ErrBadToken
	}
	payload, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return Claims{}, ErrBadToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != macLen {
		return Claims{}, ErrBadToken
	}
	valid := false
	for _, k := range t.keys {
		if hmac.Equal(got, tokenMAC(k, payload)) {
			valid = true
		}
	}
	if !valid {
		return Claims{}, ErrBadToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Claims{}, ErrBadToken
	}
	c, ok := decodeClaims(string(raw))
	if !ok {
		return Claims{}, ErrBadToken
	}
	return c, nil
}

func tokenMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenContext))
	m.Write([]byte(payload))
	return m.Sum(nil)[:macLen]
}

// encodeClaims is the compact payload: "c1z.2k.https://…".
func encodeClaims(c Claims) string {
	return string(c.Kind) + strconv.FormatInt(c.DeliveryID, 36) + "." + strconv.FormatInt(c.MemberID, 36) + "." + c.URL
}

func decodeClaims(s string) (Claims, bool) {
	if len(s) < 1 {
		return Claims{}, false
	}
	c := Claims{Kind: Kind(s[0])}
	switch c.Kind {
	case Open, Click, Unsubscribe:
	default:
		return Claims{}, false
	}
	parts := strings.SplitN(s[1:], ".", 3)
	if len(parts) != 3 {
		return Claims{}, false
	}
	var err1, err2 error
	c.DeliveryID, err1 = strconv.ParseInt(parts[0], 36, 64)
	c.MemberID, err2 = strconv.ParseInt(parts[1], 36, 64)
	if err1 != nil || err2 != nil {
		return Claims{}, false
	}
	c.URL = parts[2]
	if (c.Kind == Click) != (c.URL != "") {
		return Claims{}, false
	}
	return c, true
}
