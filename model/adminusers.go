package model

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Console roles, least to most: a viewer reads; an operator also runs
// journeys (edit, test, publish, pause, resume, archive, enroll, test
// sends); an admin also manages users, API keys, accounts and settings.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// Roles are the console roles, least to most.
var Roles = []string{RoleViewer, RoleOperator, RoleAdmin}

// RoleRank orders roles: viewer 1, operator 2, admin 3; 0 for anything
// else (it may do nothing).
func RoleRank(role string) int {
	for i, r := range Roles {
		if r == role {
			return i + 1
		}
	}
	return 0
}

// Errors of the user changes.
var (
	// ErrNoUser: no admin user has that name.
	ErrNoUser = errors.New("no such user")
	// ErrUserExists: the name is taken.
	ErrUserExists = errors.New("a user with that name exists")
	// ErrLastAdmin: the change would leave no enabled admin.
	ErrLastAdmin = errors.New("the last admin cannot be removed, disabled or demoted")
	// ErrBadRole: not admin, operator or viewer.
	ErrBadRole = errors.New("a role is admin, operator or viewer")
)

// ListAdminUsers returns the admin users by name.
func ListAdminUsers(ctx context.Context, db *gorm.DB) ([]AdminUser, error) {
	var us []AdminUser
	if err := db.WithContext(ctx).Order("username").Find(&us).Error; err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

// CreateAdminUser adds a user with a bcrypt password hash and a role.
func CreateAdminUser(ctx context.Context, db *gorm.DB, username, hash, role string) (AdminUser, error) {
	if RoleRank(role) == 0 {
		return AdminUser{}, ErrBadRole
	}
	if err := CheckUsername(username); err != nil {
		return AdminUser{}, err
	}
	u := AdminUser{Username: username, PasswordHash: hash, Role: role}
	res := InsertIgnore(db.WithContext(ctx)).Create(&u)
	if res.Error != nil {
		return AdminUser{}, fmt.Errorf("create user %s: %w", username, res.Error)
	}
	if res.RowsAffected == 0 {
		return AdminUser{}, fmt.Errorf("%s: %w", username, ErrUserExists)
	}
	return u, nil
}

// CheckUsername reports why name cannot be a new user's name, or nil: 1
// to 64 characters, no spaces or control characters.
func CheckUsername(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("a user name has 1 to 64 characters")
	}
	if strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return errors.New("a user name has no spaces or control characters")
	}
	return nil
}

// SetUserRole gives a user a role; demoting the last enabled admin is
// ErrLastAdmin. It returns the user as it was before.
func SetUserRole(ctx context.Context, db *gorm.DB, username, role string) (AdminUser, error) {
	if RoleRank(role) == 0 {
		return AdminUser{}, ErrBadRole
	}
	return changeUser(ctx, db, username, role != RoleAdmin, func(tx *gorm.DB, u *AdminUser) error {
		return tx.Model(u).Update("role", role).Error
	})
}

// SetUserDisabled disables (at) or enables (a zero at) a user; disabling
// the last enabled admin is ErrLastAdmin. It returns the user as it was.
func SetUserDisabled(ctx context.Context, db *gorm.DB, username string, at time.Time) (AdminUser, error) {
	return changeUser(ctx, db, username, !at.IsZero(), func(tx *gorm.DB, u *AdminUser) error {
		var v any
		if !at.IsZero() {
			v = at.UTC()
		}
		return tx.Model(u).Update("disabled_at", v).Error
	})
}

// RemoveAdminUser deletes a user; removing the last enabled admin is
// ErrLastAdmin. It returns the user as it was.
func RemoveAdminUser(ctx context.Context, db *gorm.DB, username string) (AdminUser, error) {
	return changeUser(ctx, db, username, true, func(tx *gorm.DB, u *AdminUser) error {
		return tx.Delete(u).Error
	})
}

// SetUserPassword replaces a user's password hash (its sessions end at
// their next request).
func SetUserPassword(ctx context.Context, db *gorm.DB, username, hash string) (AdminUser, error) {
	return changeUser(ctx, db, username, false, func(tx *gorm.DB, u *AdminUser) error {
		return tx.Model(u).Update("password_hash", hash).Error
	})
}

// changeUser runs change on the user in a transaction. When unadmins is
// set the change takes the user's admin powers away, and it is refused
// with ErrLastAdmin if no other enabled admin would be left. The admins'
// rows are locked first, so two concurrent changes cannot each leave the
// other as the last admin and then both go through.
func changeUser(ctx context.Context, db *gorm.DB, username string, unadmins bool, change func(tx *gorm.DB, u *AdminUser) error) (AdminUser, error) {
	var before AdminUser
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		lock := tx
		if tx.Dialector.Name() != "sqlite" {
			lock = tx.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		var admins []AdminUser
		if err := lock.Where("role = ? AND disabled_at IS NULL", RoleAdmin).Find(&admins).Error; err != nil {
			return fmt.Errorf("load admins: %w", err)
		}
		err := lock.Where("username = ?", username).Take(&before).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("%s: %w", username, ErrNoUser)
		}
		if err != nil {
			return fmt.Errorf("load user %s: %w", username, err)
		}
		if unadmins && before.Role == RoleAdmin && before.DisabledAt == nil {
			others := 0
			for _, a := range admins {
				if a.ID != before.ID {
					others++
				}
			}
			if others == 0 {
				return ErrLastAdmin
			}
		}
		u := before
		if err := change(tx, &u); err != nil {
			return fmt.Errorf("change user %s: %w", username, err)
		}
		return nil
	})
	return before, err
}

// Audit entry sources (AuditEntry.Via).
const (
	ViaSession = "session"
	ViaAPIKey  = "api_key"
	ViaCLI     = "cli"
)

// RecordAudit appends an entry to the audit log.
func RecordAudit(ctx context.Context, db *gorm.DB, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC()
	if len(e.Object) > 255 {
		e.Object = e.Object[:255]
	}
	if err := db.WithContext(ctx).Create(&e).Error; err != nil {
		return fmt.Errorf("record audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditQuery filters the audit log: entries of Actor, of Action (an
// action, or a prefix ending in "." such as "journey."), with ids below
// Before; at most Limit (default 100, at most 1000), newest first.
type AuditQuery struct {
	Actor, Action string
	Before        int64
	Limit         int
}

// AuditLog returns the entries q selects, newest first.
func AuditLog(ctx context.Context, db *gorm.DB, q AuditQuery) ([]AuditEntry, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	tx := db.WithContext(ctx).Order("id DESC").Limit(min(q.Limit, 1000))
	if q.Actor != "" {
		tx = tx.Where("actor = ?", q.Actor)
	}
	if strings.HasSuffix(q.Action, ".") {
		tx = tx.Where("action LIKE ?", q.Action+"%") // our prefixes hold no LIKE wildcards
	} else if q.Action != "" {
		tx = tx.Where("action = ?", q.Action)
	}
	if q.Before > 0 {
		tx = tx.Where("id < ?", q.Before)
	}
	var es []AuditEntry
	if err := tx.Find(&es).Error; err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return es, nil
}
