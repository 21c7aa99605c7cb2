package model

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gorm.io/gorm"
)

// SecretPrefix starts every value a SecretBox sealed: "enc:v1:" + base64 of
// nonce ‖ AES-256-GCM ciphertext. A stored value without it is plaintext
// written before encryption (still read, and re-sealed by ReencryptAccounts).
const SecretPrefix = "enc:v1:"

// ErrWrongSecretKey is returned when a sealed value opens under none of the
// box's keys.
var ErrWrongSecretKey = errors.New("cannot decrypt account secrets: WEJOURNEY_SECRET_KEY is not the key they were stored with")

// SecretBox seals account secrets with AES-256-GCM under the first of its
// keys and opens values sealed under any of them, so keys can be rotated:
// start with "new,old", let ReencryptAccounts re-seal, then drop "old".
// It is safe for concurrent use.
type SecretBox struct {
	aeads []cipher.AEAD // aeads[0] seals
}

// NewSecretBox returns a box over keys (each 32 bytes; config.SecretKeys).
// The first key seals; every key opens.
func NewSecretBox(keys [][]byte) (*SecretBox, error) {
	if len(keys) == 0 {
		return nil, errors.New("model: secret box needs at least one key")
	}
	b := &SecretBox{}
	for i, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("model: secret key %d is %d bytes, want 32", i+1, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("model: secret key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("model: secret key %d: %w", i+1, err)
		}
		b.aeads = append(b.aeads, aead)
	}
	return b, nil
}

// Seal encrypts plain under the first key with a fresh random nonce. The
// empty string stays empty (an account without a secret is a sandbox, and
// that must stay visible).
func (b *SecretBox) Seal(plain string) (string, error) {
	if plain == "" {
		return "", nil
	}
	aead := b.aeads[0]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("model: secret nonce: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(plain), nil)
	return SecretPrefix + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// Open returns the plaintext of a stored value: a sealed value is opened
// with each key in turn (ErrWrongSecretKey when none fits); a value without
// SecretPrefix is returned as it is.
func (b *SecretBox) Open(stored string) (string, error) {
	plain, _, err := b.open(stored)
	return plain, err
}

// open is Open that also reports which key opened the value (-1: plaintext).
func (b *SecretBox) open(stored string) (string, int, error) {
	rest, sealed := strings.CutPrefix(stored, SecretPrefix)
	if !sealed {
		return stored, -1, nil
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil {
		return "", 0, fmt.Errorf("model: sealed secret is not base64: %w", err)
	}
	for i, aead := range b.aeads {
		if len(raw) < aead.NonceSize()+aead.Overhead() {
			return "", 0, errors.New("model: sealed secret is too short")
		}
		plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], nil)
		if err == nil {
			return string(plain), i, nil
		}
	}
	return "", 0, ErrWrongSecretKey
}

// stale reports whether stored should be re-sealed: it is plaintext (not
// empty), or was sealed under a key other than the first.
func (b *SecretBox) stale(stored string) (bool, error) {
	_, key, err := b.open(stored)
	if err != nil {
		return false, err
	}
	return (key == -1 && stored != "") || key > 0, nil
}

// sealAccount returns acct with its secrets sealed.
func (b *SecretBox) sealAccount(acct Account) (Account, error) {
	var err error
	for _, f := range []*string{&acct.AppSecret, &acct.Token, &acct.AESKey} {
		if *f, err = b.Seal(*f); err != nil {
			return Account{}, err
		}
	}
	return acct, nil
}

// openAccount returns acct with its secrets opened.
func (b *SecretBox) openAccount(acct Account) (Account, error) {
	var err error
	for _, f := range []*string{&acct.AppSecret, &acct.Token, &acct.AESKey} {
		if *f, err = b.Open(*f); err != nil {
			return Account{}, fmt.Errorf("%w (account %s)", err, acct.AppID)
		}
	}
	return acct, nil
}

// ReencryptAccounts checks that every account's secrets open under box and
// re-seals under box's first key those stored in plaintext or under an
// older key. It returns how many accounts it re-sealed, or an error wrapping
// ErrWrongSecretKey when some account's secrets open under none of the keys
// (nothing is changed then). A row changed by someone else meanwhile is
// left to them (its update matches the old values only).
func ReencryptAccounts(db *gorm.DB, box *SecretBox) (int, error) {
	var accts []Account
	if err := db.Select("id", "app_id", "app_secret", "token", "aes_key").Order("id").Find(&accts).Error; err != nil {
		return 0, fmt.Errorf("model: load accounts: %w", err)
	}
	var todo []Account
	for _, a := range accts {
		var stale bool
		for _, v := range []string{a.AppSecret, a.Token, a.AESKey} {
			s, err := box.stale(v)
			if err != nil {
				return 0, fmt.Errorf("%w (account %s)", err, a.AppID)
			}
			stale = stale || s
		}
		if stale {
			todo = append(todo, a)
		}
	}
	n := 0
	for _, old := range todo {
		plain, err := box.openAccount(old)
		if err != nil {
			return n, err
		}
		sealed, err := box.sealAccount(plain)
		if err != nil {
			return n, err
		}
		res := db.Model(&Account{}).
			Where("id = ? AND COALESCE(app_secret, '') = ? AND COALESCE(token, '') = ? AND COALESCE(aes_key, '') = ?", old.ID, old.AppSecret, old.Token, old.AESKey).
			Updates(map[string]any{"app_secret": sealed.AppSecret, "token": sealed.Token, "aes_key": sealed.AESKey})
		if res.Error != nil {
			return n, fmt.Errorf("model: re-encrypt account %q: %w", old.AppID, res.Error)
		}
		n += int(res.RowsAffected)
	}
	return n, nil
}

// LoadOrCreateKeyFile returns the secret key kept in path (base64 of 32
// bytes), creating the file with a new random key (mode 0600, its directory
// 0700 if missing) when there is none. created reports a new key. Processes
// starting together agree on one key: the file appears whole or not at all
// (written aside, then hard-linked into place, which fails if it exists).
func LoadOrCreateKeyFile(path string) (key string, created bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read secret key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("create secret key directory: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("generate secret key: %w", err)
	}
	key = base64.StdEncoding.EncodeToString(raw)
	tmp, err := os.CreateTemp(dir, ".secret-key-*") // mode 0600
	if err != nil {
		return "", false, fmt.Errorf("create secret key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(key + "\n"); err != nil {
		tmp.Close()
		return "", false, fmt.Errorf("write secret key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", false, fmt.Errorf("write secret key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", false, fmt.Errorf("write secret key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKeyFile(path) // another process made it first
	} else if err != nil {
		return "", false, fmt.Errorf("create secret key: %w", err)
	}
	return key, true, nil
}
