package model

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ErrUnknownAccount is returned for an appid no account has.
var ErrUnknownAccount = errors.New("model: unknown account")

// Limits of the account lookup's memory and database use. Appids come from
// callers (callback URLs), so nothing keyed by them may grow without bound.
const (
	accountTTL      = 10 * time.Second // how long a found account is served from memory
	accountCacheMax = 4096             // found accounts kept
	missTTL         = 10 * time.Second // how long an unknown appid is answered from memory
	missCacheMax    = 10000            // unknown appids kept
	knownRefresh    = time.Second      // the list of appids is re-read at most this often
	knownSpare      = 50               // appids not in the list still looked up, per list read
	knownMax        = 10000            // more accounts than this: no list, one query per new appid
	maxAppIDLen     = 128              // accounts.app_id's size
)

// Accounts looks accounts up by appid and returns them with their secrets
// decrypted. Answers are kept in memory for a few seconds so the callback
// path does not query the database on every request, in bounded caches:
//
//   - a found account is kept for 10 s (at most 4096 of them, least recently
//     used dropped first);
//   - the appids of all accounts (when there are at most 10,000) are kept and
//     re-read at most once a second; an appid that is not among them is still
//     looked up (an account added a moment ago is found at once), but only 50
//     such lookups are made per read of the list: a flood of made-up appids
//     costs at most one small query and 50 lookups a second, whatever its size;
//   - with more accounts, an unknown appid is remembered for 10 s (at most
//     10,000 of them);
//   - an appid that cannot be one (empty, too long, or other than letters,
//     digits, '-' and '_' with at most one '/' between two such parts, as in
//     a WeCom app's "corpid/agentid") is unknown without a lookup.
//
// It is safe for concurrent use.
type Accounts struct {
	db  *gorm.DB
	box *SecretBox

	hits   *lru.Cache[string, cachedAccount]
	misses *lru.Cache[string, time.Time] // appid -> until
	now    func() time.Time

	knownLimit int // knownMax; tests lower it

	mu      sync.Mutex
	known   map[string]struct{} // every appid, when complete
	knownAt time.Time           // when known was read; zero: never
	knownOK bool                // known holds every appid
	spare   int                 // lookups of appids not in known left until the next read
}

type cachedAccount struct {
	acct  Account
	until time.Time
}

// NewAccounts returns a lookup over db that opens secrets with box (nil:
// values are returned as stored, and a sealed one is an error).
func NewAccounts(db *gorm.DB, box *SecretBox) *Accounts {
	hits, err := lru.New[string, cachedAccount](accountCacheMax)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	misses, err := lru.New[string, time.Time](missCacheMax)
	if err != nil {
		panic(err)
	}
	return &Accounts{db: db, box: box, hits: hits, misses: misses, now: time.Now, knownLimit: knownMax}
}

// Get returns the account with this appid, its secrets decrypted, or an
// error wrapping ErrUnknownAccount (no such account) or ErrWrongSecretKey.
func (a *Accounts) Get(ctx context.Context, appid string) (Account, error) {
	if !plausibleAppID(appid) {
		return Account{}, fmt.Errorf("%w %.40q", ErrUnknownAccount, appid)
	}
	now := a.now()
	if c, ok := a.hits.Get(appid); ok {
		if now.Before(c.until) {
			return c.acct, nil
		}
		a.hits.Remove(appid)
	}
	if until, ok := a.misses.Get(appid); ok {
		if now.Before(until) {
			return Account{}, fmt.Errorf("%w %q", ErrUnknownAccount, appid)
		}
		a.misses.Remove(appid)
	}
	if known, err := a.isKnown(ctx, appid, now); err != nil {
		return Account{}, err
	} else if !known {
		return Account{}, fmt.Errorf("%w %q", ErrUnknownAccount, appid)
	}

	var acct Account
	err := a.db.WithContext(ctx).Where(&Account{AppID: appid}).First(&acct).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		a.misses.Add(appid, now.Add(missTTL))
		return Account{}, fmt.Errorf("%w %q", ErrUnknownAccount, appid)
	} else if err != nil {
		return Account{}, fmt.Errorf("model: load account: %w", err) // not cached
	}
	if acct, err = a.open(acct); err != nil {
		return Account{}, err
	}
	a.hits.Add(appid, cachedAccount{acct, now.Add(accountTTL)})
	return acct, nil
}

// open decrypts acct's secrets.
func (a *Accounts) open(acct Account) (Account, error) {
	if a.box != nil {
		return a.box.openAccount(acct)
	}
	for _, v := range []string{acct.AppSecret, acct.Token, acct.AESKey} {
		if len(v) >= len(SecretPrefix) && v[:len(SecretPrefix)] == SecretPrefix {
			return Account{}, fmt.Errorf("%w (account %s: no key configured)", ErrWrongSecretKey, acct.AppID)
		}
	}
	return acct, nil
}

// isKnown reports whether appid may be an account: true when it is in the
// list of appids, or when there is no complete list. The list is re-read
// when it is older than knownRefresh and appid is not in it.
func (a *Accounts) isKnown(ctx context.Context, appid string, now time.Time) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.knownOK {
		if _, ok := a.known[appid]; ok {
			return true, nil
		}
		if now.Sub(a.knownAt) < knownRefresh {
			if a.spare > 0 {
				a.spare--
				return true, nil
			}
			return false, nil
		}
	} else if !a.knownAt.IsZero() && now.Sub(a.knownAt) < knownRefresh {
		return true, nil // too many accounts for a list: ask the database
	}
	var ids []string
	err := a.db.WithContext(ctx).Model(&Account{}).Limit(a.knownLimit+1).Pluck("app_id", &ids).Error
	if err != nil {
		return false, fmt.Errorf("model: list accounts: %w", err)
	}
	a.knownAt = now
	a.knownOK = len(ids) <= a.knownLimit
	a.known = nil
	a.spare = knownSpare
	if !a.knownOK {
		return true, nil
	}
	a.known = make(map[string]struct{}, len(ids))
	for _, id := range ids {
		a.known[id] = struct{}{}
	}
	if _, ok := a.known[appid]; !ok {
		return false, nil // read just now: a lookup would find nothing either
	}
	return true, nil
}

// plausibleAppID reports whether s can be an appid at all: 1 to 128
// letters, digits, '-' or '_', with at most one '/' that has such
// characters on both sides (a WeCom app's "corpid/agentid"). Official
// Account appids are "wx" and 16 hex digits, but test and sandbox ids
// ("wxsandbox") are allowed too.
func plausibleAppID(s string) bool {
	if s == "" || len(s) > maxAppIDLen {
		return false
	}
	slash := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' && slash < 0 && i > 0 && i < len(s)-1 {
			slash = i
			continue
		}
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// UpsertAccount creates or updates the account with acct.AppID, in one
// statement, so processes starting together do not collide. Its AppSecret,
// Token and AESKey are sealed with box first (nil: stored as given).
func UpsertAccount(db *gorm.DB, box *SecretBox, acct Account) error {
	if box != nil {
		sealed, err := box.sealAccount(acct)
		if err != nil {
			return fmt.Errorf("model: upsert account %q: %w", acct.AppID, err)
		}
		acct = sealed
	}
	err := db.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "app_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"kind", "name", "app_secret", "token", "aes_key", "updated_at"}),
	}).Create(&acct).Error
	if err != nil {
		return fmt.Errorf("model: upsert account %q: %w", acct.AppID, err)
	}
	return nil
}
