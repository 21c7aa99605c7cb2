package model

import (
	"fmt"
	"time"

	"gorm.io/gorm"
)

// v4 makes a member one person across Official Accounts, the mini-program
// and WeCom, and records where they came from:
//
//   - members get their mini-program openid (mp_app_id, mp_open_id), a
//     subscription status per Official Account (subscriptions, JSON: appid
//     -> "subscribed" or "unsubscribed"; an account not in it is unknown) and
//     merged_into, set on a member whose identities and history moved to
//     another. Existing members are backfilled: subscribed to their own
//     appid when subscribed, unsubscribed when they once followed
//     (subscribed_at set), unknown otherwise.
//   - events get scene (the QR scene or contact-me state) with an index on
//     (scene, type): follows and adds per code.
//   - qr_codes and contact_ways hold the codes wejourney created;
//     follower_syncs the progress of each account's follower import.
const v4ID = "2026112601_members"

type v4Member struct {
	MPAppID       string `gorm:"size:64"`
	MPOpenID      string `gorm:"size:128"`
	Subscriptions string `gorm:"type:text"`
	MergedInto    *int64 `gorm:"index"`
}

func (v4Member) TableName() string { return "members" }

type v4Event struct {
	Type  string `gorm:"size:64;not null;index:idx_events_scene,priority:2"`
	Scene string `gorm:"size:128;index:idx_events_scene,priority:1"`
}

func (v4Event) TableName() string { return "events" }

type v4QRCode struct {
	ID        int64  `gorm:"primaryKey;autoIncrement"`
	AppID     string `gorm:"size:64;not null;uniqueIndex:idx_qr_codes_scene,priority:1"`
	Scene     string `gorm:"size:64;not null;uniqueIndex:idx_qr_codes_scene,priority:2"`
	Label     string `gorm:"size:255"`
	Channel   string `gorm:"size:64"`
	Kind      string `gorm:"size:16;not null"`
	Ticket    string `gorm:"size:255"`
	URL       string `gorm:"size:512"`
	ExpiresAt *time.Time
	CreatedAt time.Time
}

func (v4QRCode) TableName() string { return "qr_codes" }

type v4ContactWay struct {
	ID        int64  `gorm:"primaryKey;autoIncrement"`
	AppID     string `gorm:"size:128;not null;uniqueIndex:idx_contact_ways_state,priority:1"`
	State     string `gorm:"size:30;not null;uniqueIndex:idx_contact_ways_state,priority:2"`
	Label     string `gorm:"size:255"`
	Channel   string `gorm:"size:64"`
	ConfigID  string `gorm:"size:128;not null"`
	QRCodeURL string `gorm:"size:512"`
	Users     string `gorm:"type:text"`
	CreatedAt time.Time
}

func (v4ContactWay) TableName() string { return "contact_ways" }

type v4FollowerSync struct {
	AppID      string `gorm:"primaryKey;size:64"`
	RunID      string `gorm:"size:32;not null"`
	NextOpenID string `gorm:"size:128"`
	Total      int    `gorm:"not null;default:0"`
	Imported   int    `gorm:"not null;default:0"`
	Status     string `gorm:"size:16;not null"`
	Error      string `gorm:"type:text"`
	StartedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
}

func (v4FollowerSync) TableName() string { return "follower_syncs" }

func v4Tables() []any { return []any{&v4QRCode{}, &v4ContactWay{}, &v4FollowerSync{}} }

func migrateV4(tx *gorm.DB) error {
	m := tx.Migrator()
	for _, c := range []struct {
		model any
		field string
	}{
		{&v4Member{}, "MPAppID"}, {&v4Member{}, "MPOpenID"}, {&v4Member{}, "Subscriptions"}, {&v4Member{}, "MergedInto"},
		{&v4Event{}, "Scene"},
	} {
		if !m.HasColumn(c.model, c.field) {
			if err := m.AddColumn(c.model, c.field); err != nil {
				return fmt.Errorf("add %T.%s: %w", c.model, c.field, err)
			}
		}
	}
	for _, c := range []struct {
		model any
		name  string
	}{{&v4Member{}, "idx_members_merged_into"}, {&v4Event{}, "idx_events_scene"}} {
		if !m.HasIndex(c.model, c.name) {
			if err := m.CreateIndex(c.model, c.name); err != nil {
				return fmt.Errorf("create index %s: %w", c.name, err)
			}
		}
	}
	if err := m.CreateTable(v4Tables()...); err != nil {
		return fmt.Errorf("create v4 tables: %w", err)
	}
	// Appids are letters, digits, '-' and '_': no JSON escaping needed.
	concat := "'{\"' || app_id || '\":\"%s\"}'"
	if tx.Dialector.Name() == "mysql" {
		concat = "CONCAT('{\"', app_id, '\":\"%s\"}')"
	}
	for _, b := range []struct{ status, where string }{
		{SubscriptionSubscribed, "subscribed = ?"},
		{SubscriptionUnsubscribed, "subscribed = ? AND subscribed_at IS NOT NULL"},
	} {
		want := b.status == SubscriptionSubscribed
		if err := tx.Exec("UPDATE members SET subscriptions = "+fmt.Sprintf(concat, b.status)+
			" WHERE app_id <> '' AND subscriptions IS NULL AND "+b.where, want).Error; err != nil {
			return fmt.Errorf("backfill subscriptions: %w", err)
		}
	}
	return nil
}

func rollbackV4(tx *gorm.DB) error {
	m := tx.Migrator()
	if err := m.DropTable(v4Tables()...); err != nil {
		return err
	}
	if err := dropIndex(tx, "events", "idx_events_scene"); err != nil {
		return err
	}
	if err := dropIndex(tx, "members", "idx_members_merged_into"); err != nil {
		return err
	}
	// Plain DROP COLUMN (SQLite has it since 3.35): gorm's SQLite migrator
	// rebuilds the table and loses its indexes.
	for _, c := range []struct{ table, column string }{
		{"members", "mp_app_id"}, {"members", "mp_open_id"}, {"members", "subscriptions"}, {"members", "merged_into"},
		{"events", "scene"},
	} {
		if m.HasColumn(c.table, c.column) {
			if err := tx.Exec(fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", c.table, c.column)).Error; err != nil {
				return fmt.Errorf("drop %s.%s: %w", c.table, c.column, err)
			}
		}
	}
	return nil
}
