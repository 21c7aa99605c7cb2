package model

import (
	"fmt"
	"time"

	"gorm.io/gorm"
)

// v5 gives channels what they need to send for real:
//
//   - members get opt_outs (JSON: channel -> when the member opted out of
//     its marketing messages, e.g. {"sms": "…", "email": "…"}).
//   - deliveries get category ("marketing" or "transactional").
//   - subscribe_grants records each subscription-message authorisation
//     (一次性订阅 of an Official Account, a mini-program's
//     wx.requestSubscribeMessage): one send per authorisation, claimed by the
//     delivery that spends it.
const v5ID = "2026112701_channels"

type v5Member struct {
	OptOuts string `gorm:"type:text"`
}

func (v5Member) TableName() string { return "members" }

type v5Delivery struct {
	Category string `gorm:"size:16"`
}

func (v5Delivery) TableName() string { return "deliveries" }

type v5SubscribeGrant struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	MemberID   int64  `gorm:"not null;index:idx_subscribe_grants_member,priority:1"`
	AppID      string `gorm:"size:64;not null;index:idx_subscribe_grants_member,priority:2"`
	TemplateID string `gorm:"size:128;not null;index:idx_subscribe_grants_member,priority:3"`
	Scene      string `gorm:"size:64"`
	Source     string `gorm:"size:32"`
	EventID    *int64 `gorm:"uniqueIndex"`
	DeliveryID *int64 `gorm:"uniqueIndex"`
	GrantedAt  time.Time
	UsedAt     *time.Time
}

func (v5SubscribeGrant) TableName() string { return "subscribe_grants" }

func migrateV5(tx *gorm.DB) error {
	m := tx.Migrator()
	for _, c := range []struct {
		model any
		field string
	}{{&v5Member{}, "OptOuts"}, {&v5Delivery{}, "Category"}} {
		if !m.HasColumn(c.model, c.field) {
			if err := m.AddColumn(c.model, c.field); err != nil {
				return fmt.Errorf("add %T.%s: %w", c.model, c.field, err)
			}
		}
	}
	if err := m.CreateTable(&v5SubscribeGrant{}); err != nil {
		return fmt.Errorf("create subscribe_grants: %w", err)
	}
	return nil
}

func rollbackV5(tx *gorm.DB) error {
	m := tx.Migrator()
	if err := m.DropTable(&v5SubscribeGrant{}); err != nil {
		return err
	}
	for _, c := range []struct{ table, column string }{{"members", "opt_outs"}, {"deliveries", "category"}} {
		if m.HasColumn(c.table, c.column) {
			if err := tx.Exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", c.table, c.column)).Error; err != nil {
				return fmt.Errorf("drop %s.%s: %w", c.table, c.column, err)
			}
		}
	}
	return nil
}
