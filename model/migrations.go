package model

import (
	"fmt"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
)

// Migrations are the schema's versions, oldest first. Never edit one that
// has shipped, and never let one read the live model structs (a field added
// later would change what it creates): each migration declares the columns
// it creates with its own frozen types or SQL. Add the next one at the end.
func Migrations() []*gormigrate.Migration {
	return []*gormigrate.Migration{
		{
			// v1 creates the spine's tables (frozen copies of the structs as shipped).
			ID:       "2026112301_spine",
			Migrate:  func(tx *gorm.DB) error { return tx.Migrator().CreateTable(v1Tables()...) },
			Rollback: func(tx *gorm.DB) error { return tx.Migrator().DropTable(v1Tables()...) },
		},
		{
			// v2 hardens the spine: a payload fingerprint on events (a reused
			// event id with another payload is a conflict), scoped and revocable
			// API keys, room for encrypted account secrets, server-side admin
			// sessions.
			ID:       "2026112401_hardening",
			Migrate:  migrateV2,
			Rollback: rollbackV2,
		},
		{
			// v3 gives each hot query an index that matches it (see migration_v3.go).
			ID:       v3ID,
			Migrate:  migrateV3,
			Rollback: rollbackV3,
		},
		{
			// v4: one member across accounts, codes and follower imports (see migration_v4.go).
			ID:       v4ID,
			Migrate:  migrateV4,
			Rollback: rollbackV4,
		},
		{
			// v5: opt-outs, delivery categories, subscription-message grants (see migration_v5.go).
			ID:       v5ID,
			Migrate:  migrateV5,
			Rollback: rollbackV5,
		},
		{
			// Journey lifecycle: who paused a journey (see migration_lifecycle.go).
			ID:       lifecycleID,
			Migrate:  migrateLifecycle,
			Rollback: rollbackLifecycle,
		},
		{
			// Journey statistics from indexes alone (see migration_stats.go).
			ID:       statsID,
			Migrate:  migrateStats,
			Rollback: rollbackStats,
		},
		{
			// segment triggers: who matched, and members by updated_at (see migration_segments.go).
			ID:       segmentsID,
			Migrate:  migrateSegments,
			Rollback: rollbackSegments,
		},
		{
			// Console roles on admin users and the audit log (see migration_roles.go).
			ID:       rolesID,
			Migrate:  migrateRoles,
			Rollback: rollbackRoles,
		},
		{
			// running statistics counts on SQLite (see migration_rollup.go).
			ID:       rollupID,
			Migrate:  migrateRollup,
			Rollback: rollbackRollup,
		},
		{
			// the console's journey drafts (see migration_drafts.go).
			ID:       draftsID,
			Migrate:  migrateDrafts,
			Rollback: rollbackDrafts,
		},
		{
			// indexes of the console's Deliveries page and Dashboard (see
			// migration_deliveries_console.go).
			ID:       deliveriesConsoleID,
			Migrate:  migrateDeliveriesConsole,
			Rollback: rollbackDeliveriesConsole,
		},
	}
}

func migrateV2(tx *gorm.DB) error {
	m := tx.Migrator()
	for _, c := range []struct {
		model any
		field string
	}{
		{&v2Event{}, "PayloadHash"},
		{&v2APIKey{}, "Scope"},
		{&v2APIKey{}, "Prefix"},
		{&v2APIKey{}, "RevokedAt"},
	} {
		if !m.HasColumn(c.model, c.field) {
			if err := m.AddColumn(c.model, c.field); err != nil {
				return fmt.Errorf("add %T.%s: %w", c.model, c.field, err)
			}
		}
	}
	// Encrypted secrets are longer than the plain ones: widen them (SQLite
	// has no varchar length, and its AlterColumn rebuilds the table, dropping
	// its indexes).
	for _, col := range []string{"AppSecret", "Token", "AESKey"} {
		if tx.Dialector.Name() == "sqlite" {
			break
		}
		if err := m.AlterColumn(&v2Account{}, col); err != nil {
			return fmt.Errorf("widen accounts.%s: %w", col, err)
		}
	}
	if err := m.CreateTable(&v2Session{}); err != nil {
		return fmt.Errorf("create sessions: %w", err)
	}
	return nil
}

func rollbackV2(tx *gorm.DB) error {
	m := tx.Migrator()
	if err := m.DropTable(&v2Session{}); err != nil {
		return err
	}
	for _, c := range []struct {
		model any
		field string
	}{{&v2Event{}, "PayloadHash"}, {&v2APIKey{}, "Scope"}, {&v2APIKey{}, "Prefix"}, {&v2APIKey{}, "RevokedAt"}} {
		if err := m.DropColumn(c.model, c.field); err != nil {
			return err
		}
	}
	return nil
}

// Frozen types of v2: only the columns it adds or changes.

type v2Event struct {
	PayloadHash string `gorm:"size:64"`
}

func (v2Event) TableName() string { return "events" }

type v2APIKey struct {
	Scope     string `gorm:"size:16;not null;default:events"`
	Prefix    string `gorm:"size:16"`
	RevokedAt *time.Time
}

func (v2APIKey) TableName() string { return "api_keys" }

type v2Account struct {
	AppSecret string `gorm:"size:512"`
	Token     string `gorm:"size:512"`
	AESKey    string `gorm:"size:255"`
}

func (v2Account) TableName() string { return "accounts" }

// v2Session is the admin sessions table (alexedwards/scs's store layout).
type v2Session struct {
	Token  string    `gorm:"primaryKey;size:64"`
	Data   []byte    `gorm:"not null"`
	Expiry time.Time `gorm:"not null;index:idx_sessions_expiry"`
}

func (v2Session) TableName() string { return "sessions" }

// Frozen types of v1: the structs exactly as the first migration shipped
// them (main 4f3ca7d). Never edit.

func v1Tables() []any {
	return []any{&v1Event{}, &v1Member{}, &v1MemberIdentity{}, &v1Journey{}, &v1JourneyVersion{},
		&v1Enrollment{}, &v1StepVisit{}, &v1Delivery{}, &v1Account{}, &v1AdminUser{}, &v1APIKey{}, &v1Setting{}}
}

type v1Event struct {
	ID         int64      `gorm:"primaryKey;autoIncrement"`
	DedupeKey  string     `gorm:"size:191;not null;uniqueIndex"`
	Type       string     `gorm:"size:64;not null;index"`
	Source     string     `gorm:"size:32;not null"`
	Member     string     `gorm:"type:text"`
	MemberKey  string     `gorm:"size:191;index:idx_event_member_key"`
	Props      string     `gorm:"type:text"`
	At         time.Time  `gorm:"not null"`
	ReceivedAt time.Time  `gorm:"not null"`
	MemberID   *int64     `gorm:"index"`
	RoutedAt   *time.Time `gorm:"index"`
	Attempts   int        `gorm:"not null;default:0"`
	Error      string     `gorm:"type:text"`
}

func (v1Event) TableName() string { return "events" }

type v1Member struct {
	ID                int64  `gorm:"primaryKey;autoIncrement"`
	AppID             string `gorm:"size:64"`
	OpenID            string `gorm:"size:128"`
	UnionID           string `gorm:"size:128"`
	ExternalUserID    string `gorm:"size:128"`
	Phone             string `gorm:"size:32"`
	Email             string `gorm:"size:191"`
	UserID            string `gorm:"size:128"`
	Nickname          string `gorm:"size:128"`
	Subscribed        bool   `gorm:"not null;default:false"`
	SubscribedAt      *time.Time
	Tags              string `gorm:"type:text"`
	Attrs             string `gorm:"type:text"`
	FirstScene        string `gorm:"size:128"`
	LastScene         string `gorm:"size:128"`
	LastInteractionAt *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

func (v1Member) TableName() string { return "members" }

type v1MemberIdentity struct {
	Kind     string `gorm:"primaryKey;size:32"`
	Value    string `gorm:"primaryKey;size:191"`
	MemberID int64  `gorm:"not null;index"`
}

func (v1MemberIdentity) TableName() string { return "member_identities" }

type v1Journey struct {
	ID               int64  `gorm:"primaryKey;autoIncrement"`
	Key              string `gorm:"size:128;not null;uniqueIndex"`
	Name             string `gorm:"size:255"`
	Status           string `gorm:"size:16;not null"`
	CurrentVersionID int64
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

func (v1Journey) TableName() string { return "journeys" }

type v1JourneyVersion struct {
	ID        int64  `gorm:"primaryKey;autoIncrement"`
	JourneyID int64  `gorm:"not null;uniqueIndex:idx_journey_version"`
	Version   int    `gorm:"not null;uniqueIndex:idx_journey_version"`
	Source    string `gorm:"type:text;not null"`
	Hash      string `gorm:"size:64;not null"`
	Origin    string `gorm:"size:255"`
	CreatedAt time.Time
}

func (v1JourneyVersion) TableName() string { return "journey_versions" }

type v1Enrollment struct {
	ID             int64     `gorm:"primaryKey;autoIncrement"`
	JourneyID      int64     `gorm:"not null;index:idx_enrollment_member"`
	VersionID      int64     `gorm:"not null"`
	MemberID       int64     `gorm:"not null;index:idx_enrollment_member"`
	Status         string    `gorm:"size:16;not null;index"`
	ActiveKey      *string   `gorm:"size:64;uniqueIndex"`
	StepID         string    `gorm:"size:64"`
	TriggerEventID int64     `gorm:"not null"`
	Event          string    `gorm:"type:text"`
	EnteredAt      time.Time `gorm:"not null"`
	EndedAt        *time.Time
	EndReason      string `gorm:"size:128"`
}

func (v1Enrollment) TableName() string { return "enrollments" }

type v1StepVisit struct {
	ID           int64     `gorm:"primaryKey;autoIncrement"`
	EnrollmentID int64     `gorm:"not null;uniqueIndex:idx_visit_seq"`
	Seq          int       `gorm:"not null;uniqueIndex:idx_visit_seq"`
	JourneyID    int64     `gorm:"not null;index:idx_visit_step"`
	VersionID    int64     `gorm:"not null"`
	StepID       string    `gorm:"size:64;not null;index:idx_visit_step"`
	MemberID     int64     `gorm:"not null;index"`
	Status       string    `gorm:"size:16;not null;index:idx_visit_due"`
	DueAt        time.Time `gorm:"not null;index:idx_visit_due"`
	Outcome      string    `gorm:"size:64"`
	LeaseUntil   *time.Time
	Attempts     int    `gorm:"not null;default:0"`
	Error        string `gorm:"type:text"`
	CreatedAt    time.Time
	FinishedAt   *time.Time
}

func (v1StepVisit) TableName() string { return "step_visits" }

type v1Delivery struct {
	ID           int64  `gorm:"primaryKey;autoIncrement"`
	StepVisitID  int64  `gorm:"not null;uniqueIndex:idx_delivery_visit"`
	Channel      string `gorm:"size:64;not null;uniqueIndex:idx_delivery_visit"`
	EnrollmentID int64  `gorm:"not null"`
	JourneyID    int64  `gorm:"not null;index"`
	MemberID     int64  `gorm:"not null;index"`
	To           string `gorm:"size:191"`
	Status       string `gorm:"size:16;not null"`
	ProviderID   string `gorm:"size:128"`
	ErrorCode    int
	Error        string `gorm:"type:text"`
	Payload      string `gorm:"type:text"`
	CreatedAt    time.Time
	SentAt       *time.Time
}

func (v1Delivery) TableName() string { return "deliveries" }

type v1Account struct {
	ID        int64  `gorm:"primaryKey;autoIncrement"`
	Kind      string `gorm:"size:16;not null"`
	AppID     string `gorm:"size:128;not null;uniqueIndex"`
	Name      string `gorm:"size:255"`
	AppSecret string `gorm:"size:255"`
	Token     string `gorm:"size:255"`
	AESKey    string `gorm:"size:64"`
	CreatedAt time.Time
	UpdatedAt time.Time
}

func (v1Account) TableName() string { return "accounts" }

type v1AdminUser struct {
	ID           int64  `gorm:"primaryKey;autoIncrement"`
	Username     string `gorm:"size:64;not null;uniqueIndex"`
	PasswordHash string `gorm:"size:255;not null"`
	CreatedAt    time.Time
}

func (v1AdminUser) TableName() string { return "admin_users" }

type v1APIKey struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	Name       string `gorm:"size:128"`
	Hash       string `gorm:"size:64;not null;uniqueIndex"`
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

func (v1APIKey) TableName() string { return "api_keys" }

type v1Setting struct {
	Key   string `gorm:"primaryKey;size:64"`
	Value string `gorm:"type:text"`
}

func (v1Setting) TableName() string { return "settings" }
