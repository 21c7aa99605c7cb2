package email

import (
	"errors"
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	a, _ := NewTokens([]byte("key a"))
	b, _ := NewTokens([]byte("key b"))
	rotated, _ := NewTokens([]byte("key b"), []byte("key a"))
	c := Claims{Kind: Click, DeliveryID: 123456789, MemberID: 99, URL: "https://brand.example/p?q=1.2.3"}
	tok := a.Sign(c)
	if got, err := a.Verify(tok); err != nil || got != c {
		t.Fatalf("Verify(Sign(c)) = %+v, %v; want %+v", got, err, c)
	}
	if got, err := rotated.Verify(tok); err != nil || got != c {
		t.Errorf("a rotated key set does not verify an older key's token: %v", err)
	}
	if _, err := b.Verify(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("another key's token: %v; want ErrBadToken", err)
	}
	payload, sig, _ := strings.Cut(tok, ".")
	forged := a.Sign(Claims{Kind: Click, DeliveryID: 123456789, MemberID: 99, URL: "https://evil.example/"})
	fp, _, _ := strings.Cut(forged, ".")
	flip := func(s string) string {
		r := []byte(s)
		if r[0] == 'A' {
			r[0] = 'B'
		} else {
			r[0] = 'A'
		}
		return string(r)
	}
	for name, bad := range map[string]string{
		"altered url":       fp + "." + sig,
		"altered signature": payload + "." + flip(sig),
		"altered payload":   flip(payload) + "." + sig,
		"no signature":      payload,
		"empty":             "",
		"short signature":   payload + "." + sig[:10],
		"huge":              strings.Repeat("A", MaxToken+1),
		"not base64":        "!!!." + sig,
	} {
		if _, err := a.Verify(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v; want ErrBadToken", name, err)
		}
	}
	for _, k := range []Claims{{Kind: Open, DeliveryID: 1, MemberID: 2}, {Kind: Unsubscribe, DeliveryID: 0, MemberID: 0}} {
		if got, err := a.Verify(a.Sign(k)); err != nil || got != k {
			t.Errorf("%+v: got %+v, %v", k, got, err)
		}
	}
	// A click token needs its URL; an open token has none.
	if _, err := a.Verify(a.Sign(Claims{Kind: Click, DeliveryID: 1})); !errors.Is(err, ErrBadToken) {
		t.Errorf("click token without a URL: %v", err)
	}
	if _, err := NewTokens(); err == nil {
		t.Error("NewTokens() with no key: no error")
	}
}
