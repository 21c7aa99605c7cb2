package model

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
)

func newKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func newBox(t *testing.T, keys ...[]byte) *SecretBox {
	t.Helper()
	b, err := NewSecretBox(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func migratedDB(t *testing.T) *gorm.DB {
	t.Helper()
	db, err := Open("sqlite", filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestSecretBoxRoundTrip(t *testing.T) {
	oldKey, newK := newKey(1), newKey(2)
	old := newBox(t, oldKey)
	sealed, err := old.Seal("app-secret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sealed, SecretPrefix) || strings.Contains(sealed, "app-secret") {
		t.Fatalf("sealed value %q is not enc:v1: ciphertext", sealed)
	}
	again, _ := old.Seal("app-secret")
	if again == sealed {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	for name, box := range map[string]*SecretBox{"same key": old, "rotated (new,old)": newBox(t, newK, oldKey)} {
		if got, err := box.Open(sealed); err != nil || got != "app-secret" {
			t.Errorf("%s: Open = %q, %v; want app-secret", name, got, err)
		}
	}
	if got, err := newBox(t, newK).Open(sealed); !errors.Is(err, ErrWrongSecretKey) || got != "" {
		t.Errorf("Open under a wrong key = %q, %v; want ErrWrongSecretKey and nothing", got, err)
	}
	if got, err := old.Open("plain-from-v1"); err != nil || got != "plain-from-v1" {
		t.Errorf("Open(plaintext) = %q, %v; want it as it is", got, err)
	}
	if got, _ := old.Seal(""); got != "" {
		t.Errorf("Seal(\"\") = %q, want empty (a sandbox account stays one)", got)
	}
	tampered := sealed[:len(sealed)-2] + "AA"
	if _, err := old.Open(tampered); err == nil {
		t.Error("a tampered value opened")
	}
	if _, err := NewSecretBox([][]byte{[]byte("short")}); err == nil {
		t.Error("NewSecretBox accepted a 5-byte key")
	}
}

func TestAccountsStoredSealedAndRotated(t *testing.T) {
	db := migratedDB(t)
	oldKey, newK := newKey(1), newKey(2)
	// One account from before encryption, one sealed under the old key.
	if err := db.Create(&Account{Kind: AccountWeChatOA, AppID: "wxplain", AppSecret: "plain-secret", Token: "plain-token"}).Error; err != nil {
		t.Fatal(err)
	}
	if err := UpsertAccount(db, newBox(t, oldKey), Account{Kind: AccountWeChatOA, AppID: "wxold", AppSecret: "old-secret", Token: "old-token", AESKey: "old-aes"}); err != nil {
		t.Fatal(err)
	}

	if _, err := ReencryptAccounts(db, newBox(t, newK)); !errors.Is(err, ErrWrongSecretKey) {
		t.Fatalf("ReencryptAccounts with only a wrong key = %v, want ErrWrongSecretKey", err)
	}
	var raw Account
	db.Where("app_id = ?", "wxplain").First(&raw)
	if raw.AppSecret != "plain-secret" {
		t.Fatal("a failed ReencryptAccounts changed rows")
	}

	rotating := newBox(t, newK, oldKey)
	n, err := ReencryptAccounts(db, rotating)
	if err != nil || n != 2 {
		t.Fatalf("ReencryptAccounts(new,old) = %d, %v; want 2 re-sealed", n, err)
	}
	var rows []Account
	db.Order("app_id").Find(&rows)
	for _, r := range rows {
		for _, v := range []string{r.AppSecret, r.Token} {
			if !strings.HasPrefix(v, SecretPrefix) || strings.Contains(v, "secret") || strings.Contains(v, "token") {
				t.Errorf("account %s holds %q, want ciphertext", r.AppID, v)
			}
		}
	}
	if n, err := ReencryptAccounts(db, rotating); err != nil || n != 0 {
		t.Errorf("second ReencryptAccounts = %d, %v; want nothing left to do", n, err)
	}

	// The old key can now be dropped.
	accts := NewAccounts(db, newBox(t, newK))
	for appid, want := range map[string]Account{
		"wxplain": {AppSecret: "plain-secret", Token: "plain-token"},
		"wxold":   {AppSecret: "old-secret", Token: "old-token", AESKey: "old-aes"},
	} {
		got, err := accts.Get(context.Background(), appid)
		if err != nil || got.AppSecret != want.AppSecret || got.Token != want.Token || got.AESKey != want.AESKey {
			t.Errorf("Get(%s) = %+v, %v; want secrets %+v", appid, got, err, want)
		}
	}
	if _, err := NewAccounts(db, newBox(t, oldKey)).Get(context.Background(), "wxold"); !errors.Is(err, ErrWrongSecretKey) {
		t.Errorf("Get under the dropped key = %v, want ErrWrongSecretKey", err)
	}
	if _, err := NewAccounts(db, nil).Get(context.Background(), "wxold"); !errors.Is(err, ErrWrongSecretKey) {
		t.Errorf("Get without a key = %v, want ErrWrongSecretKey", err)
	}
}

// countQueries counts the SELECTs db runs from now on.
func countQueries(t *testing.T, db *gorm.DB) *int64 {
	t.Helper()
	var mu sync.Mutex
	var n int64
	err := db.Callback().Query().Before("gorm:query").Register(fmt.Sprintf("count:%s", t.Name()), func(*gorm.DB) {
		mu.Lock()
		n++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestAccountsCacheIsBounded(t *testing.T) {
	for _, tt := range []struct {
		name       string
		knownLimit int
		appids     int
		maxQueries int64
	}{
		// One list read a second, plus 50 spare lookups, over the flood's 10 s.
		{"appid list", knownMax, 200_000, 11 * (1 + knownSpare)},
		// Too many accounts for a list: one lookup each, memory still bounded.
		{"no list", 0, 3 * missCacheMax, 3*missCacheMax + 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := migratedDB(t)
			box := newBox(t, newKey(1))
			if err := UpsertAccount(db, box, Account{Kind: AccountWeChatOA, AppID: "wxsandbox", Token: "t"}); err != nil {
				t.Fatal(err)
			}
			accts := NewAccounts(db, box)
			accts.knownLimit = tt.knownLimit
			clock := time.Now()
			accts.now = func() time.Time { return clock }
			queries := countQueries(t, db)
			ctx := context.Background()

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range tt.appids {
				if i%(tt.appids/10) == 0 {
					clock = clock.Add(time.Second) // the flood lasts 10 s
				}
				appid := fmt.Sprintf("wx%016x", i*7919+1)
				if _, err := accts.Get(ctx, appid); !errors.Is(err, ErrUnknownAccount) {
					t.Fatalf("Get(%s) = %v, want ErrUnknownAccount", appid, err)
				}
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)

			if n := accts.misses.Len(); n > missCacheMax {
				t.Errorf("%d unknown appids cached, want at most %d", n, missCacheMax)
			}
			if n := accts.hits.Len(); n > accountCacheMax {
				t.Errorf("%d accounts cached, want at most %d", n, accountCacheMax)
			}
			if *queries > tt.maxQueries {
				t.Errorf("%d unknown appids cost %d queries, want at most %d", tt.appids, *queries, tt.maxQueries)
			}
			if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
				t.Errorf("heap grew by %d MiB for %d unknown appids", grew>>20, tt.appids)
			}
			// The real account is still found, and a repeat costs no query.
			if a, err := accts.Get(ctx, "wxsandbox"); err != nil || a.Token != "t" {
				t.Errorf("Get(wxsandbox) after the flood = %+v, %v", a, err)
			}
			q := *queries
			if _, err := accts.Get(ctx, "wxsandbox"); err != nil || *queries != q {
				t.Errorf("a cached account cost %d queries (%v)", *queries-q, err)
			}
		})
	}
}

func TestAccountsSeeNewAccountAtOnce(t *testing.T) {
	db := migratedDB(t)
	accts := NewAccounts(db, nil)
	ctx := context.Background()
	if _, err := accts.Get(ctx, "wxfirst"); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("Get before the account exists = %v", err)
	}
	// The appid list was just read; an account added now is found anyway
	// (after its miss expires: unknown appids are remembered for 10 s).
	if err := UpsertAccount(db, nil, Account{Kind: AccountWeChatOA, AppID: "wxsecond", Token: "t2"}); err != nil {
		t.Fatal(err)
	}
	if a, err := accts.Get(ctx, "wxsecond"); err != nil || a.Token != "t2" {
		t.Errorf("Get of an account added after the list was read = %+v, %v", a, err)
	}
	for _, bad := range []string{"", "wx/../x", "wx x", strings.Repeat("w", 129)} {
		if _, err := accts.Get(ctx, bad); !errors.Is(err, ErrUnknownAccount) {
			t.Errorf("Get(%q) = %v, want ErrUnknownAccount", bad, err)
		}
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secret.key")
	key, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateKeyFile = %v, created %v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || again != key {
		t.Errorf("second LoadOrCreateKeyFile = %q, created %v, %v; want the same key, not created", again, created, err)
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".secret-key-*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}
