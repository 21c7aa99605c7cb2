package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/model"
)

// SessionStore is an scs.Store (and scs.CtxStore) over the sessions table:
// one row per admin sign-in, so deleting the row ends the session for every
// process sharing the database.
type SessionStore struct {
	db   *gorm.DB
	log  *slog.Logger
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// NewSessionStore returns a store over db's sessions table. Call
// StartCleanup to delete expired rows in the background, and Close to stop it.
func NewSessionStore(db *gorm.DB, log *slog.Logger) *SessionStore {
	if log == nil {
		log = slog.Default()
	}
	return &SessionStore{db: db, log: log, stop: make(chan struct{})}
}

// FindCtx returns the data of an unexpired session; found is false for an
// unknown or expired token.
func (s *SessionStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	var row model.Session
	err := s.db.WithContext(ctx).Where("token = ? AND expiry > ?", token, time.Now().UTC()).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("find session: %w", err)
	}
	return row.Data, true, nil
}

// CommitCtx stores (or replaces) a session's data and expiry.
func (s *SessionStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	row := model.Session{Token: token, Data: b, Expiry: expiry.UTC()}
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "token"}},
		DoUpdates: clause.AssignmentColumns([]string{"data", "expiry"}),
	}).Create(&row).Error
	if err != nil {
		return fmt.Errorf("commit session: %w", err)
	}
	return nil
}

// DeleteCtx deletes a session; an unknown token is not an error.
func (s *SessionStore) DeleteCtx(ctx context.Context, token string) error {
	if err := s.db.WithContext(ctx).Where("token = ?", token).Delete(&model.Session{}).Error; err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// Find implements scs.Store.
func (s *SessionStore) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit implements scs.Store.
func (s *SessionStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete implements scs.Store.
func (s *SessionStore) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// DeleteExpired removes the rows of sessions that have expired and returns
// how many it removed.
func (s *SessionStore) DeleteExpired(ctx context.Context) (int64, error) {
	res := s.db.WithContext(ctx).Where("expiry <= ?", time.Now().UTC()).Delete(&model.Session{})
	if res.Error != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// StartCleanup deletes expired sessions every interval until ctx is done or
// Close is called.
func (s *SessionStore) StartCleanup(ctx context.Context, interval time.Duration) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-t.C:
				if _, err := s.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("cleaning up expired admin sessions", "err", err)
				}
			}
		}
	}()
}

// Close stops the background cleanup and waits for it.
func (s *SessionStore) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}
