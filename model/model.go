// Package model holds wejourney's database rows, the versioned migrations that
// create them, and Open, which connects gorm to SQLite, PostgreSQL or MySQL.
//
// The database is the source of truth: every acknowledged callback, every
// enrollment with its next step and due time, every delivery and its status is
// a row here. Queues only carry row ids. Functions take a *gorm.DB; there is no
// package-level handle.
package model

import (
	"slices"
	"strings"
	"time"
)

// Event statuses are implied by RoutedAt: nil means not yet routed.

// MemberRef names a member the way an input did: by any of these identities.
type MemberRef struct {
	AppID          string `json:"appid,omitempty"`
	OpenID         string `json:"openid,omitempty"`
	UnionID        string `json:"unionid,omitempty"`
	ExternalUserID string `json:"external_userid,omitempty"`
	Phone          string `json:"phone,omitempty"`
	Email          string `json:"email,omitempty"`
	UserID         string `json:"user_id,omitempty"`
	// MPAppID and MPOpenID are the member's openid in a mini-program (a
	// different openid from the Official Account's).
	MPAppID  string `json:"mp_appid,omitempty"`
	MPOpenID string `json:"mp_openid,omitempty"`
}

// Ref returns the reference naming m by all its identities.
func (m *Member) Ref() MemberRef {
	return MemberRef{AppID: m.AppID, OpenID: m.OpenID, UnionID: m.UnionID, ExternalUserID: m.ExternalUserID,
		Phone: m.Phone, Email: m.Email, UserID: m.UserID, MPAppID: m.MPAppID, MPOpenID: m.MPOpenID}
}

// Key is the reference's first identity ("openid:wx…/o…", "mp_openid:wx…/o…", "unionid:…",
// "external_userid:…", "user_id:…", "phone:…", "email:…"), or "" when it
// names nobody. Events of one member share it, so they route in order.
func (r MemberRef) Key() string {
	switch {
	case r.OpenID != "":
		return IdentityOpenID + ":" + r.AppID + "/" + r.OpenID
	case r.MPOpenID != "":
		return IdentityMPOpenID + ":" + r.MPAppID + "/" + r.MPOpenID
	case r.UnionID != "":
		return IdentityUnionID + ":" + r.UnionID
	case r.ExternalUserID != "":
		return IdentityExternalUserID + ":" + r.ExternalUserID
	case r.UserID != "":
		return IdentityUserID + ":" + r.UserID
	case r.Phone != "":
		return IdentityPhone + ":" + r.Phone
	case r.Email != "":
		return IdentityEmail + ":" + strings.ToLower(r.Email)
	}
	return ""
}

// Event is one normalized input: a WeChat or WeCom callback, a brand event
// from the events API, or an engine event. DedupeKey is unique, so a retried
// callback inserts nothing.
type Event struct {
	ID         int64          `gorm:"primaryKey;autoIncrement;index:idx_events_member_unrouted,priority:3"`
	DedupeKey  string         `gorm:"size:191;not null;uniqueIndex"`
	Type       string         `gorm:"size:64;not null;index:idx_events_scene,priority:2;index:idx_events_follows,priority:1,where:type = 'wechat.subscribe' OR type = 'wechat.unsubscribe'"`
	Source     string         `gorm:"size:32;not null"`
	Member     MemberRef      `gorm:"serializer:json;type:text"`
	MemberKey  string         `gorm:"size:191;index:idx_events_member_unrouted,priority:1"` // Member.Key()
	Props      map[string]any `gorm:"serializer:json;type:text"`
	At         time.Time      `gorm:"not null;index:idx_events_follows,priority:2"`
	ReceivedAt time.Time      `gorm:"not null;index:idx_events_unrouted,priority:2"`
	MemberID   *int64         `gorm:"index;index:idx_events_follows,priority:4"`
	// RoutedAt is nil until routed; the indexes on it hold only unrouted
	// events where the database has partial indexes (not MySQL).
	RoutedAt *time.Time `gorm:"index:idx_events_member_unrouted,priority:2,where:routed_at IS NULL;index:idx_events_unrouted,priority:1,where:routed_at IS NULL AND received_at IS NOT NULL"`
	// Attempts counts routing attempts, so a poisonous event is parked, not retried forever.
	Attempts int    `gorm:"not null;default:0"`
	Error    string `gorm:"type:text"`
	// PayloadHash fingerprints what the sender posted (events API), so a
	// reused id with another payload is told apart from a retry.
	PayloadHash string `gorm:"size:64"`
	// Scene is the QR scene (wechat.subscribe, wechat.scan) or contact-me
	// state (wecom.contact_added) the event carries, "" otherwise: follows
	// and adds are counted per code by it.
	Scene string `gorm:"size:128;index:idx_events_scene,priority:1;index:idx_events_follows,priority:3"`
}

// Member is one person, however many identities they arrived with.
type Member struct {
	ID             int64  `gorm:"primaryKey;autoIncrement"`
	AppID          string `gorm:"size:64"`
	OpenID         string `gorm:"size:128"`
	UnionID        string `gorm:"size:128"`
	ExternalUserID string `gorm:"size:128"`
	Phone          string `gorm:"size:32"`
	Email          string `gorm:"size:191"`
	UserID         string `gorm:"size:128"`
	Nickname       string `gorm:"size:128"`
	// Subscribed is true while the member follows the Official Account
	// AppID (Subscription(AppID) == SubscriptionSubscribed).
	Subscribed        bool `gorm:"not null;default:false"`
	SubscribedAt      *time.Time
	Tags              []string       `gorm:"serializer:json;type:text"`
	Attrs             map[string]any `gorm:"serializer:json;type:text"`
	FirstScene        string         `gorm:"size:128"`
	LastScene         string         `gorm:"size:128"`
	LastInteractionAt *time.Time
	CreatedAt         time.Time
	// UpdatedAt is when the member last changed; segment triggers read
	// only the members changed since their last run.
	UpdatedAt time.Time `gorm:"index:idx_members_updated_at"`
	// MPAppID and MPOpenID are the member's mini-program openid.
	MPAppID  string `gorm:"size:64"`
	MPOpenID string `gorm:"size:128"`
	// Subscriptions holds the member's status per Official Account appid:
	// SubscriptionSubscribed or SubscriptionUnsubscribed; an account not in
	// it is SubscriptionUnknown (the member is known only from a brand event
	// or an import).
	Subscriptions map[string]string `gorm:"serializer:json;type:text"`
	// MergedInto is the member this one was merged into (its identities,
	// history and enrollments moved there); nil for a live member.
	MergedInto *int64 `gorm:"index"`
	// OptOuts holds when the member opted out of marketing messages on a
	// channel ("sms", "email"). Transactional sends ignore it.
	OptOuts map[string]time.Time `gorm:"serializer:json;type:text"`
}

// TesterTag is the reserved member tag that marks a tester: an internal
// user a journey's test run (POST /api/v1/journeys/{key}/test with "send":
// true, `wejourney journeys test --send`) may really send to. It is set
// and cleared through POST and DELETE /api/v1/members/{id}/tester.
const TesterTag = "tester"

// IsTester reports whether the member carries TesterTag.
func (m *Member) IsTester() bool { return slices.Contains(m.Tags, TesterTag) }

// OptedOut reports whether the member opted out of marketing messages on
// channel ("sms", "email").
func (m *Member) OptedOut(channel string) bool {
	_, ok := m.OptOuts[channel]
	return ok
}

// OptOut records that the member opted out of marketing messages on
// channel at at; it reports whether that is news.
func (m *Member) OptOut(channel string, at time.Time) bool {
	if m.OptedOut(channel) {
		return false
	}
	if m.OptOuts == nil {
		m.OptOuts = map[string]time.Time{}
	}
	m.OptOuts[channel] = at.UTC()
	return true
}

// Subscription statuses of a member with one Official Account.
const (
	SubscriptionSubscribed   = "subscribed"
	SubscriptionUnsubscribed = "unsubscribed"
	SubscriptionUnknown      = "unknown"
)

// Subscription is the member's status with the Official Account appid
// ("" means the member's own AppID).
func (m *Member) Subscription(appid string) string {
	if appid == "" {
		appid = m.AppID
	}
	if s, ok := m.Subscriptions[appid]; ok && appid != "" {
		return s
	}
	return SubscriptionUnknown
}

// SetSubscription records the member's status with the Official Account
// appid ("" means the member's own AppID); SubscriptionUnknown forgets it. Subscribed follows the member's own
// AppID.
func (m *Member) SetSubscription(appid, status string) {
	if appid == "" {
		appid = m.AppID
	}
	if appid == "" {
		return
	}
	if status == SubscriptionUnknown {
		delete(m.Subscriptions, appid)
	} else {
		if m.Subscriptions == nil {
			m.Subscriptions = map[string]string{}
		}
		m.Subscriptions[appid] = status
	}
	if appid == m.AppID {
		m.Subscribed = status == SubscriptionSubscribed
	}
}

// Identity kinds of MemberIdentity.
const (
	IdentityOpenID         = "openid"    // value: appid + "/" + openid
	IdentityMPOpenID       = "mp_openid" // value: mini-program appid + "/" + openid
	IdentityUnionID        = "unionid"
	IdentityExternalUserID = "external_userid"
	IdentityPhone          = "phone"
	IdentityEmail          = "email"
	IdentityUserID         = "user_id"
)

// MemberIdentity maps one identity to its member; (Kind, Value) is unique.
type MemberIdentity struct {
	Kind     string `gorm:"primaryKey;size:32"`
	Value    string `gorm:"primaryKey;size:191"`
	MemberID int64  `gorm:"not null;index"`
}

// Journey statuses. An active journey takes new members and runs its
// steps; a paused one takes none and holds its members' due steps until it
// is resumed; an archived one has ended: no entries, its enrollments ended,
// and only publishing a new version starts it again.
const (
	JourneyActive   = "active"
	JourneyPaused   = "paused"
	JourneyArchived = "archived"
)

// Journey is the stable identity of a journey; its definition lives in versions.
type Journey struct {
	ID               int64  `gorm:"primaryKey;autoIncrement"`
	Key              string `gorm:"size:128;not null;uniqueIndex"`
	Name             string `gorm:"size:255"`
	Status           string `gorm:"size:16;not null"`
	CurrentVersionID int64
	CreatedAt        time.Time
	UpdatedAt        time.Time
	// PausedReason says who paused a paused journey, which decides what
	// resumes it: "operator" (the API or CLI: only resume does), "removed"
	// (its file left the journeys directory: putting it back does), "demo"
	// (demo journeys refused: allowing them does). Empty otherwise.
	PausedReason string `gorm:"size:32"`
}

// JourneyVersion is one published definition. Members stay on the version
// they entered.
type JourneyVersion struct {
	ID        int64  `gorm:"primaryKey;autoIncrement"`
	JourneyID int64  `gorm:"not null;uniqueIndex:idx_journey_version"`
	Version   int    `gorm:"not null;uniqueIndex:idx_journey_version"`
	Source    string `gorm:"type:text;not null"` // the YAML as written
	Hash      string `gorm:"size:64;not null"`   // sha256 of Source, to skip re-publishing unchanged files
	Origin    string `gorm:"size:255"`           // file path or "admin"
	CreatedAt time.Time
}

// Enrollment statuses.
const (
	EnrollmentActive    = "active"
	EnrollmentCompleted = "completed"
	EnrollmentExited    = "exited"
	EnrollmentFailed    = "failed"
	// EnrollmentGoal: the member reached the journey's goal (a conversion),
	// counted apart from exits.
	EnrollmentGoal = "goal"
)

// Enrollment is one member's pass through one journey version.
type Enrollment struct {
	ID        int64 `gorm:"primaryKey;autoIncrement"`
	JourneyID int64 `gorm:"not null;index:idx_enrollments_entry,priority:1;index:idx_enrollments_stats,priority:1"`
	VersionID int64 `gorm:"not null"`
	MemberID  int64 `gorm:"not null;index:idx_enrollments_entry,priority:2;index:idx_enrollments_member_active,priority:1"`
	// Status is indexed only with MemberID, and where the database has
	// partial indexes (not MySQL) only while active: queries that use it
	// spell the status out as a literal (status = 'active'), so a prepared
	// statement's generic plan can use the partial index.
	Status string `gorm:"size:16;not null;index:idx_enrollments_member_active,priority:2,where:status = 'active';index:idx_enrollments_stats,priority:2"`
	// ActiveKey is "journeyID:memberID" while active and NULL after, so a
	// member is in a journey at most once at a time, whatever races.
	ActiveKey      *string        `gorm:"size:64;uniqueIndex"`
	StepID         string         `gorm:"size:64"`
	TriggerEventID int64          `gorm:"not null"`
	Event          map[string]any `gorm:"serializer:json;type:text"` // the trigger event, for templates
	EnteredAt      time.Time      `gorm:"not null;index:idx_enrollments_entry,priority:3"`
	EndedAt        *time.Time
	EndReason      string `gorm:"size:128"`
	// EnteredDay is the China date of EnteredAt as the number yyyymmdd
	// (EntryDay): the journey statistics select enrollments, and their
	// visits and deliveries, by entry date from narrow indexes.
	EnteredDay int `gorm:"index:idx_enrollments_stats,priority:3"`
}

// ChinaTime is Beijing time (UTC+8, no daylight saving): the zone of
// entry days, schedules, quiet hours and WeChat's and WeCom's daily quotas.
var ChinaTime = time.FixedZone("CST", 8*3600)

// EntryDay is the China date of t as the number yyyymmdd (2026-11-30 is
// 20261130): Enrollment.EnteredDay and the copies on its visits and
// deliveries.
func EntryDay(t time.Time) int {
	l := t.In(ChinaTime)
	return l.Year()*10000 + int(l.Month())*100 + l.Day()
}

// Step visit statuses.
const (
	VisitScheduled = "scheduled" // due at DueAt
	VisitRunning   = "running"   // claimed until LeaseUntil
	VisitWaiting   = "waiting"   // wait_for: until an event or DueAt (timeout)
	VisitDone      = "done"
	VisitFailed    = "failed"
	VisitCancelled = "cancelled"
)

// StepVisit is one visit of one step by one enrollment: the schedule and the
// analytics record at once. (EnrollmentID, Seq) is unique, so a step
// transition happens once.
type StepVisit struct {
	ID           int64     `gorm:"primaryKey;autoIncrement"`
	EnrollmentID int64     `gorm:"not null;uniqueIndex:idx_visit_seq"`
	Seq          int       `gorm:"not null;uniqueIndex:idx_visit_seq"`
	JourneyID    int64     `gorm:"not null;index:idx_visit_step;index:idx_visit_stats,priority:1"`
	VersionID    int64     `gorm:"not null"`
	StepID       string    `gorm:"size:64;not null;index:idx_visit_step;index:idx_visit_stats,priority:2"`
	MemberID     int64     `gorm:"not null;index"`
	Status       string    `gorm:"size:16;not null;index:idx_visit_due;index:idx_visit_stats,priority:3"`
	DueAt        time.Time `gorm:"not null;index:idx_visit_due"`
	Outcome      string    `gorm:"size:64;index:idx_visit_stats,priority:4"`
	LeaseUntil   *time.Time
	Attempts     int    `gorm:"not null;default:0"`
	Error        string `gorm:"type:text"`
	CreatedAt    time.Time
	FinishedAt   *time.Time
	// EnteredDay is the enrollment's EnteredDay, copied so that the
	// journey statistics count visits by entry date from one index
	// (idx_visit_stats) without joining enrollments.
	EnteredDay int `gorm:"index:idx_visit_stats,priority:5"`
}

// Delivery statuses.
const (
	DeliverySending = "sending" // handed to the provider; outcome not yet known
	DeliverySent    = "sent"
	DeliverySandbox = "sandbox" // logged only: no real credentials
	DeliveryFailed  = "failed"
	DeliveryUnknown = "unknown" // the process died mid-send; never re-sent
	// DeliveryHeld waits for a spent quota (45009 until the daily reset):
	// the step is retried then.
	DeliveryHeld = "held"
)

// Delivery is one message on one channel for one step visit;
// (StepVisitID, Channel) is unique: at most one message per step visit and channel.
type Delivery struct {
	ID           int64  `gorm:"primaryKey;autoIncrement;index:idx_deliveries_status,priority:2;index:idx_deliveries_channel,priority:2"`
	StepVisitID  int64  `gorm:"not null;uniqueIndex:idx_delivery_visit"`
	Channel      string `gorm:"size:64;not null;uniqueIndex:idx_delivery_visit;index:idx_delivery_stats,priority:2;index:idx_deliveries_channel,priority:1;index:idx_deliveries_created,priority:2"`
	EnrollmentID int64  `gorm:"not null"`
	JourneyID    int64  `gorm:"not null;index;index:idx_delivery_stats,priority:1"`
	MemberID     int64  `gorm:"not null;index"`
	To           string `gorm:"size:191"`
	Status       string `gorm:"size:16;not null;index:idx_delivery_stats,priority:3;index:idx_deliveries_status,priority:1;index:idx_deliveries_created,priority:3"`
	ProviderID   string `gorm:"size:128"`
	ErrorCode    int
	Error        string `gorm:"type:text"`
	Payload      string `gorm:"type:text"`
	// CreatedAt is indexed for the dashboard's day and week counts.
	CreatedAt time.Time `gorm:"index:idx_deliveries_created,priority:1"`
	SentAt    *time.Time
	// Category is CategoryMarketing or CategoryTransactional.
	Category string `gorm:"size:16"`
	// EnteredDay is the enrollment's EnteredDay, copied so that the
	// journey statistics count deliveries by entry date from one index
	// (idx_delivery_stats).
	EnteredDay int `gorm:"index:idx_delivery_stats,priority:4"`
}

// Delivery categories: an opted-out member gets no marketing message on that
// channel; transactional ones (codes, receipts) still go.
const (
	CategoryMarketing     = "marketing"
	CategoryTransactional = "transactional"
)

// SubscribeGrant is one subscription-message authorisation: the member
// allowed the account (an Official Account's 一次性订阅, a mini-program's
// wx.requestSubscribeMessage) one message of TemplateID. A delivery claims
// it (DeliveryID) and spends it.
type SubscribeGrant struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	MemberID   int64  `gorm:"not null;index:idx_subscribe_grants_member,priority:1"`
	AppID      string `gorm:"size:64;not null;index:idx_subscribe_grants_member,priority:2"`
	TemplateID string `gorm:"size:128;not null;index:idx_subscribe_grants_member,priority:3"`
	Scene      string `gorm:"size:64"`
	// Source is where the authorisation came from: "oa_once", "oa_popup"
	// or "miniprogram".
	Source string `gorm:"size:32"`
	// EventID is the event that recorded it (one grant per event).
	EventID    *int64 `gorm:"uniqueIndex"`
	DeliveryID *int64 `gorm:"uniqueIndex"`
	GrantedAt  time.Time
	UsedAt     *time.Time
}

// Account kinds.
const (
	AccountWeChatOA = "wechat_oa"
	AccountWeCom    = "wecom"
	// AccountMiniProgram is a mini-program: only its AppSecret is used
	// (code2session); it receives no callbacks.
	AccountMiniProgram = "miniprogram"
)

// Account is a connected Official Account or WeCom app. AppID is the
// Official Account's appid, or "corpid/agentid" for WeCom.
type Account struct {
	ID    int64  `gorm:"primaryKey;autoIncrement"`
	Kind  string `gorm:"size:16;not null"`
	AppID string `gorm:"size:128;not null;uniqueIndex"`
	Name  string `gorm:"size:255"`
	// AppSecret, Token and AESKey are stored encrypted (see SecretBox).
	AppSecret string `gorm:"size:512"`
	Token     string `gorm:"size:512"`
	AESKey    string `gorm:"size:255"`
	CreatedAt time.Time
	UpdatedAt time.Time
}

// AdminUser can log into the admin console. Role is RoleAdmin,
// RoleOperator or RoleViewer (see handler/roles.go for what each may do);
// a user with DisabledAt set cannot sign in and its sessions end.
type AdminUser struct {
	ID           int64  `gorm:"primaryKey;autoIncrement"`
	Username     string `gorm:"size:64;not null;uniqueIndex"`
	PasswordHash string `gorm:"size:255;not null"`
	CreatedAt    time.Time
	Role         string `gorm:"size:16;not null;default:viewer"`
	DisabledAt   *time.Time
}

// AuditEntry is one line of the audit log: who (Actor, a user name or an
// API key's name; Via says which: "session", "api_key" or "cli"), with
// which role, did Action ("journey.publish", "user.add", ...) to Object,
// from IP, at At. Detail is a JSON object with the action's particulars.
type AuditEntry struct {
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

// TableName is audit_log.
func (AuditEntry) TableName() string { return "audit_log" }

// API key scopes.
const (
	ScopeEvents = "events" // POST /api/v1/events
	ScopeAdmin  = "admin"  // the admin JSON API
)

// APIKey authorizes the events API (scope "events") or the admin JSON API
// (scope "admin"). Only the key's SHA-256 is stored; Prefix is its first
// characters, shown in listings so operators can tell keys apart.
type APIKey struct {
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	Name       string `gorm:"size:128"`
	Hash       string `gorm:"size:64;not null;uniqueIndex"`
	CreatedAt  time.Time
	LastUsedAt *time.Time
	Scope      string `gorm:"size:16;not null;default:events"`
	Prefix     string `gorm:"size:16"`
	RevokedAt  *time.Time
}

// Session is one admin sign-in, stored server side (the layout of
// alexedwards/scs stores): deleting the row ends the session.
type Session struct {
	Token  string    `gorm:"primaryKey;size:64"`
	Data   []byte    `gorm:"not null"`
	Expiry time.Time `gorm:"not null;index:idx_sessions_expiry"`
}

// QRCode kinds: temporary (expires) or permanent.
const (
	QRTemporary = "temporary"
	QRPermanent = "permanent"
)

// QRCode is an Official Account parametric QR code wejourney created: a
// follow or scan carrying its scene is attributed to it.
type QRCode struct {
	ID    int64  `gorm:"primaryKey;autoIncrement"`
	AppID string `gorm:"size:64;not null;uniqueIndex:idx_qr_codes_scene,priority:1"`
	Scene string `gorm:"size:64;not null;uniqueIndex:idx_qr_codes_scene,priority:2"` // scene_str
	// Label names the code for operators ("南京西路店"); Channel groups codes
	// (store, event, search, ...).
	Label     string `gorm:"size:255"`
	Channel   string `gorm:"size:64"`
	Kind      string `gorm:"size:16;not null"` // QRTemporary or QRPermanent
	Ticket    string `gorm:"size:255"`
	URL       string `gorm:"size:512"` // what the QR image encodes
	ExpiresAt *time.Time
	CreatedAt time.Time
}

// ContactWay is a WeCom contact-me link (add_contact_way) wejourney
// created: an add carrying its state is attributed to it. ConfigID is kept
// because WeCom cannot list contact ways later.
type ContactWay struct {
	ID        int64    `gorm:"primaryKey;autoIncrement"`
	AppID     string   `gorm:"size:128;not null;uniqueIndex:idx_contact_ways_state,priority:1"` // corpid/agentid
	State     string   `gorm:"size:30;not null;uniqueIndex:idx_contact_ways_state,priority:2"`
	Label     string   `gorm:"size:255"`
	Channel   string   `gorm:"size:64"`
	ConfigID  string   `gorm:"size:128;not null"`
	QRCodeURL string   `gorm:"size:512"`
	Users     []string `gorm:"serializer:json;type:text"` // the reps' user ids
	CreatedAt time.Time
}

// FollowerSync is the progress of one Official Account's follower import,
// so that an interrupted import resumes where it stopped.
type FollowerSync struct {
	AppID      string `gorm:"primaryKey;size:64"`
	RunID      string `gorm:"size:32;not null"` // the run the next page belongs to
	NextOpenID string `gorm:"size:128"`         // user/get's next_openid to resume from
	Total      int    `gorm:"not null;default:0"`
	Imported   int    `gorm:"not null;default:0"`
	Status     string `gorm:"size:16;not null"` // running, done, failed
	Error      string `gorm:"type:text"`
	StartedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
}

// SegmentMember records that a member matched the segment of a
// segment-triggered journey at its last evaluation: the member entered
// then, and enters again only after leaving the segment and coming back.
type SegmentMember struct {
	JourneyID int64 `gorm:"primaryKey;autoIncrement:false"`
	MemberID  int64 `gorm:"primaryKey;autoIncrement:false"`
	MatchedAt time.Time
}

// Setting is a small key/value row (the session-signing secret, ...).
type Setting struct {
	Key   string `gorm:"primaryKey;size:64"`
	Value string `gorm:"type:text"`
}
