package model

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Column sizes of the values that come from outside (callbacks, the events
// API) and land in sized columns. Sizes count characters, as PostgreSQL's
// varchar(n) and MySQL's utf8mb4 varchar(n) do.
const (
	MaxDedupeKey     = 191 // Event.DedupeKey
	MaxMemberKey     = 191 // Event.MemberKey
	MaxEventType     = 64  // Event.Type
	MaxEventSource   = 32  // Event.Source
	MaxIdentityValue = 191 // MemberIdentity.Value
	MaxAppID         = 64  // Member.AppID
	MaxOpenID        = 128 // Member.OpenID
	MaxUnionID       = 128 // Member.UnionID
	MaxExternalUser  = 128 // Member.ExternalUserID
	MaxUserID        = 128 // Member.UserID
	MaxPhone         = 32  // Member.Phone
	MaxEmail         = 191 // Member.Email
	MaxNickname      = 128 // Member.Nickname
	MaxScene         = 128 // Member.FirstScene, Member.LastScene
	// MaxTextBytes is what a text column holds everywhere: MySQL's TEXT
	// stores 65,535 bytes (Event.Props and Event.Member as JSON).
	MaxTextBytes = 65535
)

// fitSep separates the kept prefix from the digest in a fitted key.
const fitSep = "~"

// Fits reports whether s can be stored as is in a column of max
// characters: valid UTF-8, no NUL byte (PostgreSQL refuses both), and at
// most max characters.
func Fits(s string, max int) bool {
	return (len(s) <= max || utf8.RuneCountInString(s) <= max) && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// FitKey returns s when it Fits in max characters, and otherwise a stable
// stand-in that does: the longest clean prefix of s that leaves room, "~",
// and the hex SHA-256 of all of s. Equal inputs give equal keys, so a
// fitted key still deduplicates and still finds its row; distinct inputs
// give distinct keys. Fitting a fitted key returns it unchanged. With max
// below 65 the result is the digest cut to max characters.
func FitKey(s string, max int) string {
	if Fits(s, max) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	digest := hex.EncodeToString(sum[:])
	room := max - len(fitSep) - len(digest)
	if room < 0 {
		if max < 0 {
			max = 0
		}
		return digest[:min(max, len(digest))]
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == room || r == 0 || r == utf8.RuneError {
			break // a RuneError here is an invalid byte: the prefix stops before it
		}
		b.WriteRune(r)
		n++
	}
	return b.String() + fitSep + digest
}
