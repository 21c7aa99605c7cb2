package model

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ErrUnknownAccount is returned for an appid no account has.
var ErrUnknownAccount = errors.New("model: unknown account")

// Accounts looks accounts up by appid with a short-lived in-memory cache, so
// the callback path does not query the database for every request.
type Accounts struct {
	db  *gorm.DB
	ttl time.Duration

	mu    sync.Mutex
	cache map[string]cachedAccount
}

type cachedAccount struct {
	acct    Account
	err     error
	expires time.Time
}

// NewAccounts returns a lookup over db whose answers live for ttl (10 s when zero).
func NewAccounts(db *gorm.DB, ttl time.Duration) *Accounts {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return &Accounts{db: db, ttl: ttl, cache: map[string]cachedAccount{}}
}

// Get returns the account with this appid, or an error wrapping ErrUnknownAccount.
func (a *Accounts) Get(ctx context.Context, appid string) (Account, error) {
	now := time.Now()
	a.mu.Lock()
	c, ok := a.cache[appid]
	a.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.acct, c.err
	}
	var acct Account
	err := a.db.WithContext(ctx).Where(&Account{AppID: appid}).First(&acct).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		err = fmt.Errorf("%w %q", ErrUnknownAccount, appid)
	} else if err != nil {
		return Account{}, fmt.Errorf("model: load account: %w", err) // not cached
	}
	a.mu.Lock()
	a.cache[appid] = cachedAccount{acct, err, now.Add(a.ttl)}
	a.mu.Unlock()
	return acct, err
}

// UpsertAccount creates or updates the account with acct.AppID, in one
// statement, so processes starting together do not collide.
func UpsertAccount(db *gorm.DB, acct Account) error {
	err := db.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "app_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"kind", "name", "app_secret", "token", "aes_key", "updated_at"}),
	}).Create(&acct).Error
	if err != nil {
		return fmt.Errorf("model: upsert account %q: %w", acct.AppID, err)
	}
	return nil
}
