package model

import (
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The roles migration serves the admin console:
//
//   - admin_users get role (admin, operator or viewer; default viewer) and
//     disabled_at. Every user that exists when it runs becomes an admin,
//     since until then every user could do everything.
//   - audit_log records who did what in the console, the admin API and the
//     user commands.
const rolesID = "2026112801f_roles"

type rolesAdminUser struct {
	Role       string `gorm:"size:16;not null;default:viewer"`
	DisabledAt *time.Time
}

func (rolesAdminUser) TableName() string { return "admin_users" }

type rolesAuditEntry struct {
	ID     int64     `gorm:"primaryKey;autoIncrement"`
	At     time.Time `gorm:"not null;index:idx_audit_log_at"`
	Actor  string    `gorm:"size:128;not null;index:idx_audit_log_actor"`
	Via    string    `gorm:"size:16;not null"`
	Role   string    `gorm:"size:16"`
	Action string    `gorm:"size:64;not null;index:idx_audit_log_action"`
	Object string    `gorm:"size:255"`
	Detail string    `gorm:"type:text"`
	IP     string    `gorm:"size:64"`
}

func (rolesAuditEntry) TableName() string { return "audit_log" }

func migrateRoles(tx *gorm.DB) error {
	m := tx.Migrator()
	for _, field := range []string{"Role", "DisabledAt"} {
		if !m.HasColumn(&rolesAdminUser{}, field) {
			if err := m.AddColumn(&rolesAdminUser{}, field); err != nil {
				return fmt.Errorf("add admin_users.%s: %w", field, err)
			}
		}
	}
	if err := tx.Exec("UPDATE admin_users SET role = 'admin'").Error; err != nil {
		return fmt.Errorf("make the existing users admins: %w", err)
	}
	if err := m.CreateTable(&rolesAuditEntry{}); err != nil {
		return fmt.Errorf("create audit_log: %w", err)
	}
	return nil
}

func rollbackRoles(tx *gorm.DB) error {
	m := tx.Migrator()
	if err := m.DropTable(&rolesAuditEntry{}); err != nil {
		return err
	}
	for _, col := range []string{"disabled_at", "role"} {
		if m.HasColumn("admin_users", col) {
			if err := tx.Exec("ALTER TABLE admin_users DROP COLUMN " + col).Error; err != nil {
				return fmt.Errorf("drop admin_users.%s: %w", col, err)
			}
		}
	}
	return nil
}
