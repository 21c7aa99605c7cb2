// Package codes makes the parametric QR codes of Official Accounts
// (/cgi-bin/qrcode/create) and the contact-me links of WeCom apps
// (add_contact_way), keeps them in the database (model.QRCode,
// model.ContactWay) and counts what each brought.
//
// Attribution needs no write of its own: a follow or scan stores its QR
// scene in events.scene and a WeCom add its contact-me state, and the
// member's first and last scene are kept on the member (FirstScene,
// LastScene). A code's figures are counts over those columns:
//
//   - follows and scans: events of type wechat.subscribe / wechat.scan with
//     the code's scene, from members of the code's Official Account (the
//     event's member key starts "openid:<appid>/"), through the index on
//     events (scene, type);
//   - adds: events of type wecom.contact_added with the link's state;
//   - members: the distinct members of those events;
//   - first touch and last touch: live members whose first_scene or
//     last_scene is the scene or state. Scenes are not qualified by
//     account, so give codes of different accounts different scenes.
//
// Errors: bad input (also an unknown account, or one without a secret)
// wraps ErrInvalid, a scene or state already used
// ErrConflict, an unknown id ErrNotFound, and a refusal or failure of
// WeChat's or WeCom's API ErrUpstream (with the platform's
// *channels.Error in the chain when it answered an errcode).
package codes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif"  // WeCom's QR images may come as GIF
	_ "image/jpeg" // or JPEG
	"image/png"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	qrcode "github.com/skip2/go-qrcode"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// Limits of the requests.
const (
	// MaxScene is the longest scene_str WeChat takes, in characters.
	MaxScene = 64
	// MaxExpireSeconds is the longest life of a temporary QR code (30
	// days), and its default.
	MaxExpireSeconds = 2592000
	// MaxState is the longest WeCom contact-me state, in characters.
	MaxState = wecom.MaxState
	// PNGSize is the width and height of the QR code images PNG renders.
	PNGSize    = 512
	maxLabel   = 255
	maxChannel = 64
)

var (
	// ErrInvalid is wrapped by errors about a request's fields.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict is wrapped when the scene or state is already used by a
	// code of the same account.
	ErrConflict = errors.New("already exists")
	// ErrNotFound is wrapped when no code has the id.
	ErrNotFound = errors.New("not found")
	// ErrUpstream is wrapped when WeChat's or WeCom's API refused or failed.
	ErrUpstream = errors.New("platform API error")
)

// WeChatAPI calls an Official Account API: *wechat.Sender is one.
type WeChatAPI interface {
	Call(ctx context.Context, appid, path string, query url.Values, body, out any) error
}

// WeComAPI creates contact-me links and fetches their images: *wecom.Client
// is one.
type WeComAPI interface {
	AddContactWay(ctx context.Context, app string, w wecom.ContactWay) (configID, qrCodeURL string, err error)
	Image(ctx context.Context, rawURL string) ([]byte, string, error)
}

// Config wires a Service. DB is required; WeChat and WeCom may be nil (then
// creating that kind of code fails with ErrUpstream).
type Config struct {
	DB     *gorm.DB
	WeChat WeChatAPI
	WeCom  WeComAPI
	// DefaultAppID is the Official Account of a request without one.
	DefaultAppID string
	// DefaultWeComApp ("corpid/agentid") is the WeCom app of a request
	// without one.
	DefaultWeComApp string
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Service makes and lists QR codes and contact-me links.
type Service struct {
	cfg Config
	now func() time.Time
	log *slog.Logger
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, now: cfg.Now, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// invalid returns an error wrapping ErrInvalid.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// checkText checks an optional free-text field.
func checkText(name, v string, max int) error {
	if utf8.RuneCountInString(v) > max {
		return invalid("%s has more than %d characters", name, max)
	}
	return nil
}

// checkKey checks a scene or state: required, at most max characters, no
// surrounding spaces or control characters.
func checkKey(name, v string, max int) error {
	switch n := utf8.RuneCountInString(v); {
	case n == 0:
		return invalid("%s is required", name)
	case n > max:
		return invalid("%s %q has %d characters: at most %d", name, v, n, max)
	case strings.TrimSpace(v) != v:
		return invalid("%s %q has leading or trailing spaces", name, v)
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return invalid("%s has control characters", name)
	case !utf8.ValidString(v):
		return invalid("%s is not valid UTF-8", name)
	}
	return nil
}

// upstream wraps an API error in ErrUpstream, or in ErrInvalid when the
// request named an account wejourney does not have or one without a secret
// (the sandbox): nothing was asked of the platform then.
func upstream(what string, err error) error {
	if errors.Is(err, wechat.ErrUnknownAccount) || errors.Is(err, wechat.ErrSandbox) ||
		errors.Is(err, wecom.ErrUnknownAccount) || errors.Is(err, wecom.ErrSandbox) {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUpstream, err)
}

// ---- QR codes ----

// QRRequest asks for an Official Account QR code.
type QRRequest struct {
	// AppID is the Official Account; "" means Config.DefaultAppID.
	AppID string `json:"appid"`
	// Scene is the scene_str (1 to 64 characters) that follows and scans
	// of the code carry.
	Scene string `json:"scene"`
	// Label names the code for operators ("南京西路店").
	Label string `json:"label"`
	// Channel groups codes: store, event, search, ... (free text).
	Channel string `json:"channel"`
	// Permanent asks for a permanent code (WeChat allows 100,000 per
	// account); otherwise the code is temporary.
	Permanent bool `json:"permanent"`
	// ExpireSeconds is a temporary code's life: 0 means 30 days, the most.
	ExpireSeconds int `json:"expire_seconds"`
}

// QRStats are what a QR code brought.
type QRStats struct {
	Follows    int64 `json:"follows"`     // wechat.subscribe events with the scene
	Scans      int64 `json:"scans"`       // wechat.scan events (followers scanning)
	Members    int64 `json:"members"`     // distinct members of those events
	FirstTouch int64 `json:"first_touch"` // members whose first scene is this one
	LastTouch  int64 `json:"last_touch"`  // members whose latest scene is this one
}

// QRCode is a stored QR code with its figures.
type QRCode struct {
	ID        int64      `json:"id"`
	AppID     string     `json:"appid"`
	Scene     string     `json:"scene"`
	Label     string     `json:"label"`
	Channel   string     `json:"channel"`
	Kind      string     `json:"kind"` // temporary or permanent
	Ticket    string     `json:"ticket"`
	URL       string     `json:"url"` // what the QR image encodes
	ExpiresAt *time.Time `json:"expires_at"`
	Expired   bool       `json:"expired"`
	CreatedAt time.Time  `json:"created_at"`
	Stats     QRStats    `json:"stats"`
}

func (s *Service) qrOut(c model.QRCode) QRCode {
	return QRCode{ID: c.ID, AppID: c.AppID, Scene: c.Scene, Label: c.Label, Channel: c.Channel, Kind: c.Kind,
		Ticket: c.Ticket, URL: c.URL, ExpiresAt: c.ExpiresAt, Expired: c.ExpiresAt != nil && !s.now().Before(*c.ExpiresAt),
		CreatedAt: c.CreatedAt}
}

// qrAnswer is what qrcode/create answers.
type qrAnswer struct {
	Ticket        string `json:"ticket"`
	ExpireSeconds int64  `json:"expire_seconds"`
	URL           string `json:"url"`
}

// CreateQR creates a QR code through WeChat's qrcode/create and stores it.
// A scene the account already has a code for is ErrConflict (checked
// before calling WeChat, so no quota is spent on it).
func (s *Service) CreateQR(ctx context.Context, req QRRequest) (QRCode, error) {
	if req.AppID == "" {
		req.AppID = s.cfg.DefaultAppID
	}
	if req.AppID == "" {
		return QRCode{}, invalid("appid is required")
	}
	if err := checkKey("scene", req.Scene, MaxScene); err != nil {
		return QRCode{}, err
	}
	if err := errors.Join(checkText("label", req.Label, maxLabel), checkText("channel", req.Channel, maxChannel)); err != nil {
		return QRCode{}, err
	}
	kind, action := model.QRTemporary, "QR_STR_SCENE"
	switch {
	case req.Permanent && req.ExpireSeconds != 0:
		return QRCode{}, invalid("a permanent code does not expire: drop expire_seconds")
	case req.Permanent:
		kind, action = model.QRPermanent, "QR_LIMIT_STR_SCENE"
	case req.ExpireSeconds < 0 || req.ExpireSeconds > MaxExpireSeconds:
		return QRCode{}, invalid("expire_seconds %d: a temporary code lives 1 to %d seconds (30 days)", req.ExpireSeconds, MaxExpireSeconds)
	case req.ExpireSeconds == 0:
		req.ExpireSeconds = MaxExpireSeconds
	}
	db := s.cfg.DB.WithContext(ctx)
	if err := s.qrFree(db, req.AppID, req.Scene); err != nil {
		return QRCode{}, err
	}
	if s.cfg.WeChat == nil {
		return QRCode{}, upstream("qrcode/create", errors.New("no Official Account API configured"))
	}
	body := map[string]any{"action_name": action,
		"action_info": map[string]any{"scene": map[string]any{"scene_str": req.Scene}}}
	if kind == model.QRTemporary {
		body["expire_seconds"] = req.ExpireSeconds
	}
	var ans qrAnswer
	if err := s.cfg.WeChat.Call(ctx, req.AppID, "/cgi-bin/qrcode/create", nil, body, &ans); err != nil {
		return QRCode{}, upstream("qrcode/create", err)
	}
	if ans.Ticket == "" || ans.URL == "" {
		return QRCode{}, upstream("qrcode/create", errors.New("the answer has no ticket or url"))
	}
	now := s.now().UTC()
	row := model.QRCode{AppID: req.AppID, Scene: req.Scene, Label: req.Label, Channel: req.Channel, Kind: kind,
		Ticket: ans.Ticket, URL: ans.URL, CreatedAt: now}
	if kind == model.QRTemporary {
		exp := ans.ExpireSeconds
		if exp <= 0 {
			exp = int64(req.ExpireSeconds)
		}
		at := now.Add(time.Duration(exp) * time.Second)
		row.ExpiresAt = &at
	}
	if err := db.Create(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return QRCode{}, fmt.Errorf("%w: %s already has a QR code with scene %q (created at the same moment)", ErrConflict, req.AppID, req.Scene)
		}
		s.log.Error("a QR code WeChat made was not stored", "appid", req.AppID, "scene", req.Scene, "ticket", ans.Ticket, "url", ans.URL, "err", err)
		return QRCode{}, fmt.Errorf("store QR code (WeChat made it: url %s): %w", ans.URL, err)
	}
	return s.qrOut(row), nil
}

// qrFree returns ErrConflict when appid has a code with scene.
func (s *Service) qrFree(db *gorm.DB, appid, scene string) error {
	var n int64
	if err := db.Model(&model.QRCode{}).Where("app_id = ? AND scene = ?", appid, scene).Count(&n).Error; err != nil {
		return fmt.Errorf("look up QR codes: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("%w: %s already has a QR code with scene %q", ErrConflict, appid, scene)
	}
	return nil
}

// ListQR returns the QR codes of appid ("" for every account), newest
// first, with their figures.
func (s *Service) ListQR(ctx context.Context, appid string) ([]QRCode, error) {
	db := s.cfg.DB.WithContext(ctx)
	q := db.Order("id DESC")
	if appid != "" {
		q = q.Where("app_id = ?", appid)
	}
	var rows []model.QRCode
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list QR codes: %w", err)
	}
	return s.qrWithStats(db, rows)
}

// GetQR returns the QR code id with its figures.
func (s *Service) GetQR(ctx context.Context, id int64) (QRCode, error) {
	db := s.cfg.DB.WithContext(ctx)
	row, err := s.qrRow(db, id)
	if err != nil {
		return QRCode{}, err
	}
	out, err := s.qrWithStats(db, []model.QRCode{row})
	if err != nil {
		return QRCode{}, err
	}
	return out[0], nil
}

func (s *Service) qrRow(db *gorm.DB, id int64) (model.QRCode, error) {
	var row model.QRCode
	if err := db.Take(&row, id).Error; errors.Is(err, gorm.ErrRecordNotFound) {
		return row, fmt.Errorf("%w: no QR code %d", ErrNotFound, id)
	} else if err != nil {
		return row, fmt.Errorf("load QR code: %w", err)
	}
	return row, nil
}

// QRPNG renders the QR code id as a PNG image.
func (s *Service) QRPNG(ctx context.Context, id int64) ([]byte, error) {
	row, err := s.qrRow(s.cfg.DB.WithContext(ctx), id)
	if err != nil {
		return nil, err
	}
	return PNG(row)
}

// PNG renders code's URL (what WeChat's image of it encodes) as a QR code
// image of PNGSize×PNGSize pixels.
func PNG(code model.QRCode) ([]byte, error) {
	if code.URL == "" {
		return nil, fmt.Errorf("QR code %d has no url", code.ID)
	}
	img, err := qrcode.Encode(code.URL, qrcode.Medium, PNGSize)
	if err != nil {
		return nil, fmt.Errorf("render QR code %d: %w", code.ID, err)
	}
	return img, nil
}

// qrWithStats adds the figures of rows: per account, one grouped count of
// events per (scene, type), one of distinct members per scene, and one
// each of first and last touch.
func (s *Service) qrWithStats(db *gorm.DB, rows []model.QRCode) ([]QRCode, error) {
	out := make([]QRCode, len(rows))
	byApp := map[string][]int{}
	for i, r := range rows {
		out[i] = s.qrOut(r)
		byApp[r.AppID] = append(byApp[r.AppID], i)
	}
	for appid, idx := range byApp {
		scenes := make([]string, 0, len(idx))
		for _, i := range idx {
			scenes = append(scenes, rows[i].Scene)
		}
		prefix := model.IdentityOpenID + ":" + likeEscape(appid) + "/%"
		st, err := sceneStats(db, scenes, []string{events.WeChatSubscribe, events.WeChatScan}, "member_key LIKE ? ESCAPE '!'", prefix)
		if err != nil {
			return nil, err
		}
		for _, i := range idx {
			sc := st[rows[i].Scene]
			out[i].Stats = QRStats{Follows: sc.byType[events.WeChatSubscribe], Scans: sc.byType[events.WeChatScan],
				Members: sc.members, FirstTouch: sc.first, LastTouch: sc.last}
		}
	}
	return out, nil
}

// likeEscape escapes s for a LIKE pattern with ESCAPE '!'.
func likeEscape(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// stat is what one scene brought.
type stat struct {
	byType      map[string]int64
	members     int64
	first, last int64
}

// statChunk bounds the scenes of one IN list.
const statChunk = 500

// sceneStats counts, for each scene, the events of types (with the extra
// condition where/args, if any), their distinct members, and the live
// members whose first and last scene it is.
func sceneStats(db *gorm.DB, scenes, types []string, where string, args ...any) (map[string]*stat, error) {
	out := make(map[string]*stat, len(scenes))
	for _, sc := range scenes {
		out[sc] = &stat{byType: map[string]int64{}}
	}
	for start := 0; start < len(scenes); start += statChunk {
		chunk := scenes[start:min(start+statChunk, len(scenes))]
		events := func() *gorm.DB {
			q := db.Model(&model.Event{}).Where("scene IN ? AND type IN ?", chunk, types)
			if where != "" {
				q = q.Where(where, args...)
			}
			return q
		}
		var byType []struct {
			Scene string
			Type  string
			N     int64
		}
		if err := events().Select("scene, type, COUNT(*) AS n").Group("scene, type").Scan(&byType).Error; err != nil {
			return nil, fmt.Errorf("count events per code: %w", err)
		}
		for _, r := range byType {
			if st := out[r.Scene]; st != nil {
				st.byType[r.Type] = r.N
			}
		}
		var members []struct {
			Scene string
			N     int64
		}
		if err := events().Select("scene, COUNT(DISTINCT member_id) AS n").Group("scene").Scan(&members).Error; err != nil {
			return nil, fmt.Errorf("count members per code: %w", err)
		}
		for _, r := range members {
			if st := out[r.Scene]; st != nil {
				st.members = r.N
			}
		}
		for _, col := range []string{"first_scene", "last_scene"} {
			var touch []struct {
				Scene string
				N     int64
			}
			if err := db.Model(&model.Member{}).Select(col+" AS scene, COUNT(*) AS n").
				Where(col+" IN ? AND merged_into IS NULL", chunk).Group(col).Scan(&touch).Error; err != nil {
				return nil, fmt.Errorf("count members by %s: %w", col, err)
			}
			for _, r := range touch {
				if st := out[r.Scene]; st != nil {
					if col == "first_scene" {
						st.first = r.N
					} else {
						st.last = r.N
					}
				}
			}
		}
	}
	return out, nil
}

// ---- WeCom contact-me links ----

// ContactWayRequest asks for a WeCom contact-me link.
type ContactWayRequest struct {
	// AppID is the WeCom app "corpid/agentid"; "" means
	// Config.DefaultWeComApp.
	AppID string `json:"app"`
	// State (1 to 30 characters, unique per app) comes back with every add
	// through the link.
	State string `json:"state"`
	// Users are the reps' WeCom user ids (1 to 100).
	Users   []string `json:"users"`
	Label   string   `json:"label"`
	Channel string   `json:"channel"`
	// SkipVerify adds customers without the rep's confirmation; nil means
	// true, WeCom's default.
	SkipVerify *bool `json:"skip_verify"`
}

// ContactWayStats are what a contact-me link brought.
type ContactWayStats struct {
	Adds       int64 `json:"adds"`        // wecom.contact_added events with the state
	Members    int64 `json:"members"`     // distinct members of those events
	FirstTouch int64 `json:"first_touch"` // members whose first scene is the state
	LastTouch  int64 `json:"last_touch"`  // members whose latest scene is the state
}

// ContactWay is a stored contact-me link with its figures.
type ContactWay struct {
	ID        int64           `json:"id"`
	AppID     string          `json:"app"`
	State     string          `json:"state"`
	Label     string          `json:"label"`
	Channel   string          `json:"channel"`
	ConfigID  string          `json:"config_id"`
	QRCodeURL string          `json:"qr_code"`
	Users     []string        `json:"users"`
	CreatedAt time.Time       `json:"created_at"`
	Stats     ContactWayStats `json:"stats"`
}

func cwOut(c model.ContactWay) ContactWay {
	return ContactWay{ID: c.ID, AppID: c.AppID, State: c.State, Label: c.Label, Channel: c.Channel,
		ConfigID: c.ConfigID, QRCodeURL: c.QRCodeURL, Users: c.Users, CreatedAt: c.CreatedAt}
}

// CreateContactWay creates a contact-me link through WeCom's
// add_contact_way and stores it with its config_id (WeCom cannot list
// links later: the row is the only copy). A state the app already has a
// link for is ErrConflict, checked before calling WeCom.
func (s *Service) CreateContactWay(ctx context.Context, req ContactWayRequest) (ContactWay, error) {
	if req.AppID == "" {
		req.AppID = s.cfg.DefaultWeComApp
	}
	if corp, agent, ok := strings.Cut(req.AppID, "/"); !ok || corp == "" || agent == "" {
		return ContactWay{}, invalid("app %q: want corpid/agentid", req.AppID)
	}
	if err := checkKey("state", req.State, MaxState); err != nil {
		return ContactWay{}, err
	}
	if err := errors.Join(checkText("label", req.Label, maxLabel), checkText("channel", req.Channel, maxChannel)); err != nil {
		return ContactWay{}, err
	}
	users := make([]string, 0, len(req.Users))
	seen := map[string]bool{}
	for _, u := range req.Users {
		u = strings.TrimSpace(u)
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		users = append(users, u)
	}
	switch {
	case len(users) == 0:
		return ContactWay{}, invalid("users: name at least one rep (WeCom user id)")
	case len(users) > wecom.MaxUsers:
		return ContactWay{}, invalid("users: at most %d reps, got %d", wecom.MaxUsers, len(users))
	}
	db := s.cfg.DB.WithContext(ctx)
	var n int64
	if err := db.Model(&model.ContactWay{}).Where("app_id = ? AND state = ?", req.AppID, req.State).Count(&n).Error; err != nil {
		return ContactWay{}, fmt.Errorf("look up contact ways: %w", err)
	}
	if n > 0 {
		return ContactWay{}, fmt.Errorf("%w: %s already has a contact-me link with state %q", ErrConflict, req.AppID, req.State)
	}
	if s.cfg.WeCom == nil {
		return ContactWay{}, upstream("add_contact_way", errors.New("no WeCom API configured"))
	}
	skip := true
	if req.SkipVerify != nil {
		skip = *req.SkipVerify
	}
	remark := req.Label
	if r := []rune(remark); len(r) > wecom.MaxRemark {
		remark = string(r[:wecom.MaxRemark])
	}
	configID, qr, err := s.cfg.WeCom.AddContactWay(ctx, req.AppID, wecom.ContactWay{Scene: 2, Users: users,
		State: req.State, Remark: remark, SkipVerify: skip})
	if err != nil {
		return ContactWay{}, upstream("add_contact_way", err)
	}
	row := model.ContactWay{AppID: req.AppID, State: req.State, Label: req.Label, Channel: req.Channel,
		ConfigID: configID, QRCodeURL: qr, Users: users, CreatedAt: s.now().UTC()}
	if err := db.Create(&row).Error; err != nil {
		// WeCom cannot list contact ways: say the config_id so that it is not lost.
		s.log.Error("a contact-me link WeCom made was not stored: keep its config_id", "app", req.AppID, "state", req.State,
			"config_id", configID, "qr_code", qr, "err", err)
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return ContactWay{}, fmt.Errorf("%w: %s already has a contact-me link with state %q (WeCom made config_id %s, not stored)", ErrConflict, req.AppID, req.State, configID)
		}
		return ContactWay{}, fmt.Errorf("store contact-me link (WeCom made config_id %s): %w", configID, err)
	}
	return cwOut(row), nil
}

// ListContactWays returns the contact-me links of app ("" for every app),
// newest first, with their figures.
func (s *Service) ListContactWays(ctx context.Context, app string) ([]ContactWay, error) {
	db := s.cfg.DB.WithContext(ctx)
	q := db.Order("id DESC")
	if app != "" {
		q = q.Where("app_id = ?", app)
	}
	var rows []model.ContactWay
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list contact ways: %w", err)
	}
	return s.cwWithStats(db, rows)
}

// GetContactWay returns the contact-me link id with its figures.
func (s *Service) GetContactWay(ctx context.Context, id int64) (ContactWay, error) {
	db := s.cfg.DB.WithContext(ctx)
	row, err := s.cwRow(db, id)
	if err != nil {
		return ContactWay{}, err
	}
	out, err := s.cwWithStats(db, []model.ContactWay{row})
	if err != nil {
		return ContactWay{}, err
	}
	return out[0], nil
}

func (s *Service) cwRow(db *gorm.DB, id int64) (model.ContactWay, error) {
	var row model.ContactWay
	if err := db.Take(&row, id).Error; errors.Is(err, gorm.ErrRecordNotFound) {
		return row, fmt.Errorf("%w: no contact-me link %d", ErrNotFound, id)
	} else if err != nil {
		return row, fmt.Errorf("load contact-me link: %w", err)
	}
	return row, nil
}

// cwWithStats adds the figures of rows (states are counted across apps:
// WeCom's add events do not name the app in their member key).
func (s *Service) cwWithStats(db *gorm.DB, rows []model.ContactWay) ([]ContactWay, error) {
	out := make([]ContactWay, len(rows))
	states := make([]string, 0, len(rows))
	for i, r := range rows {
		out[i] = cwOut(r)
		states = append(states, r.State)
	}
	st, err := sceneStats(db, states, []string{events.WeComContactAdded}, "")
	if err != nil {
		return nil, err
	}
	for i, r := range rows {
		sc := st[r.State]
		out[i].Stats = ContactWayStats{Adds: sc.byType[events.WeComContactAdded], Members: sc.members, FirstTouch: sc.first, LastTouch: sc.last}
	}
	return out, nil
}

// ContactWayPNG returns the QR code image of the contact-me link id as a
// PNG: the image WeCom made (its qr_code URL), fetched through the WeCom
// client's HTTP client and converted to PNG when WeCom served another
// format. It is not re-rendered locally: the qr_code URL is the image's
// address, not what the code encodes, so an image cannot be made without
// fetching WeCom's. A failed fetch is ErrUpstream.
func (s *Service) ContactWayPNG(ctx context.Context, id int64) ([]byte, error) {
	row, err := s.cwRow(s.cfg.DB.WithContext(ctx), id)
	if err != nil {
		return nil, err
	}
	if row.QRCodeURL == "" {
		return nil, fmt.Errorf("%w: contact-me link %d has no qr_code URL", ErrNotFound, id)
	}
	if s.cfg.WeCom == nil {
		return nil, upstream("qr_code image", errors.New("no WeCom API configured"))
	}
	raw, _, err := s.cfg.WeCom.Image(ctx, row.QRCodeURL)
	if err != nil {
		return nil, upstream("qr_code image", err)
	}
	if bytes.HasPrefix(raw, []byte("\x89PNG\r\n\x1a\n")) {
		return raw, nil
	}
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, upstream("qr_code image", fmt.Errorf("not an image: %w", err))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode PNG: %w", err)
	}
	return buf.Bytes(), nil
}
