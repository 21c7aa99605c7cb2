package handler

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// MaxEventsPerRequest bounds one POST /api/v1/events.
const MaxEventsPerRequest = 1000

// apiEvent is one event as the brand posts it.
type apiEvent struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Member model.MemberRef `json:"member"`
	Props  map[string]any  `json:"props"`
	At     string          `json:"at"`
}

type apiError struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

// HashAPIKey is how API keys are stored: hex SHA-256.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Limits of the events API: every field that could not be stored whole is
// refused with a 400 naming it.
const (
	maxEventID      = 128
	maxAheadOfNow   = 24 * time.Hour
	maxPropsJSON    = model.MaxTextBytes // props as stored (JSON in a text column)
	eventsMediaType = "application/json"
)

// earliestAt is the earliest `at` the events API accepts.
func earliestAt() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }

// postEvents serves POST /api/v1/events: one event or {"events": [...]}.
func (h *Handler) postEvents(c *gin.Context) {
	raws, ok := readBatch(c)
	if !ok {
		return
	}
	keyID := c.GetInt64("api_key_id")
	if !h.allowEvents(c, keyID, len(raws)) {
		return
	}
	now := h.now()
	h.ingestBatch(c, raws, func(raw json.RawMessage) (*model.Event, string, error) {
		return parseAPIEvent(raw, keyID, now, h.cfg.Sources)
	})
}

// ingestBatch parses each posted event with parse, which returns it with
// its id as posted, and stores them (ingest). When any cannot be parsed it
// answers 400 with every error, by index, and stores none.
func (h *Handler) ingestBatch(c *gin.Context, raws []json.RawMessage, parse func(json.RawMessage) (*model.Event, string, error)) {
	var (
		evs  []*model.Event
		ids  []string // as posted, for conflict messages
		errs []apiError
	)
	for i, raw := range raws {
		ev, id, err := parse(raw)
		if err != nil {
			errs = append(errs, apiError{i, err.Error()})
			continue
		}
		evs = append(evs, ev)
		ids = append(ids, id)
	}
	if len(errs) > 0 {
		c.JSON(http.StatusBadRequest, gin.H{"errors": errs})
		return
	}
	h.ingest(c, evs, ids)
}

// allowEvents spends n events of the API key's rate limit. Over the limit
// it answers 429 with Retry-After and returns false. When the limit cannot
// be checked (Redis down) the limiter's fallback answer holds: events are
// not refused because Redis is.
func (h *Handler) allowEvents(c *gin.Context, keyID int64, n int) bool {
	l := h.cfg.EventsLimiter
	if l == nil {
		return true
	}
	ok, wait, err := l.Allow(c.Request.Context(), "api_key:"+strconv.FormatInt(keyID, 10), n)
	if err != nil {
		if logOK, suppressed := h.logs.allow("events_rate"); logOK {
			h.log.Warn("events rate limit: the shared limit could not be checked; limiting in this process", "err", err, "suppressed", suppressed)
		}
	}
	if ok {
		return true
	}
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	c.Header("Retry-After", strconv.Itoa(secs))
	c.JSON(http.StatusTooManyRequests, gin.H{"error": fmt.Sprintf("this API key is over its events rate limit (WEJOURNEY_EVENTS_RATE): retry in %d s", secs)})
	return false
}

// readBody reads the request body, at most limit bytes. It answers 413 or
// 400 itself and returns false when it cannot.
func readBody(c *gin.Context, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			c.JSON(http.StatusRequestEntityTooLarge, gin.H{"error": "body too large"})
			return nil, false
		}
		c.JSON(http.StatusBadRequest, gin.H{"error": "unreadable body"})
		return nil, false
	}
	return body, true
}

// readBatch reads a JSON body (at most 8 MiB) of one event or {"events":
// [...]} with 1 to MaxEventsPerRequest events, and returns the events
// undecoded. It answers 415, 413 or 400 itself and returns false when the
// body is not that.
func readBatch(c *gin.Context) ([]json.RawMessage, bool) {
	if err := checkJSONContentType(c.GetHeader("Content-Type")); err != nil {
		c.JSON(http.StatusUnsupportedMediaType, gin.H{"error": err.Error()})
		return nil, false
	}
	body, ok := readBody(c, 8*MaxBody)
	if !ok {
		return nil, false
	}
	var batch struct {
		Events []json.RawMessage `json:"events"`
	}
	var raws []json.RawMessage
	trimmed := bytes.TrimSpace(body)
	if err := json.Unmarshal(trimmed, &batch); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"errors": []apiError{{0, "body is not JSON: " + err.Error()}}})
		return nil, false
	}
	if batch.Events != nil {
		raws = batch.Events
	} else {
		raws = []json.RawMessage{trimmed}
	}
	if len(raws) == 0 || len(raws) > MaxEventsPerRequest {
		c.JSON(http.StatusBadRequest, gin.H{"errors": []apiError{{0, fmt.Sprintf("send 1 to %d events", MaxEventsPerRequest)}}})
		return nil, false
	}
	return raws, true
}

// checkJSONContentType accepts application/json, with a UTF-8 charset if any.
func checkJSONContentType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != eventsMediaType {
		return fmt.Errorf("send Content-Type: %s (got %q)", eventsMediaType, ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return fmt.Errorf("send JSON in UTF-8 (got charset %q)", cs)
	}
	return nil
}

// memberNeeds is the refusal of an event that names nobody.
const memberNeeds = "member needs one of openid (+appid), mp_openid (+mp_appid), unionid, external_userid, phone, email, user_id"

// parseAPIEvent checks one posted event and returns it with the id as
// posted ("" when none). Every refusal names the field.
func parseAPIEvent(raw json.RawMessage, keyID int64, now time.Time, sources *events.Registry) (*model.Event, string, error) {
	var in apiEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, "", fmt.Errorf("not an event: %v", err)
	}
	switch {
	case in.Type == "" || len(in.Type) > model.MaxEventType:
		return nil, "", fmt.Errorf("type is required (at most %d characters)", model.MaxEventType)
	case !validType(in.Type):
		return nil, "", errors.New("type: use letters, digits and . _ - : (starting with a letter)")
	case sources.Reserved(in.Type):
		return nil, "", fmt.Errorf("type %q is reserved for wejourney's own sources (%s)", in.Type, strings.Join(sources.Namespaces(), ", "))
	case in.Member.OpenID != "" && in.Member.AppID == "":
		return nil, "", errors.New("member.openid needs member.appid")
	case in.Member.MPOpenID != "" && in.Member.MPAppID == "":
		return nil, "", errors.New("member.mp_openid needs member.mp_appid")
	case in.Member.AppID != "" && in.Member.OpenID == "":
		return nil, "", errors.New("member.appid needs member.openid (an appid alone names nobody)")
	case in.Member.MPAppID != "" && in.Member.MPOpenID == "":
		return nil, "", errors.New("member.mp_appid needs member.mp_openid (an appid alone names nobody)")
	case in.Member.Key() == "":
		return nil, "", errors.New(memberNeeds)
	case utf8.RuneCountInString(in.ID) > maxEventID:
		return nil, "", fmt.Errorf("id is at most %d characters", maxEventID)
	case hasControl(in.ID):
		return nil, "", errors.New("id must not contain control characters")
	}
	if err := checkMember(in.Member); err != nil {
		return nil, "", err
	}
	ev := &model.Event{Type: in.Type, Source: events.API{}.Name(), Member: in.Member, Props: in.Props}
	if ev.Props == nil {
		ev.Props = map[string]any{}
	}
	if b, err := json.Marshal(ev.Props); err != nil || len(b) > maxPropsJSON {
		return nil, "", fmt.Errorf("props: at most %d bytes as JSON", maxPropsJSON)
	}
	if in.At != "" {
		at, err := parseAt(in.At, now)
		if err != nil {
			return nil, "", err
		}
		ev.At = at
	}
	ev.PayloadHash = payloadHash(in, ev.At)
	id := in.ID
	if id == "" {
		id = "gen-" + rand.Text()
	}
	ev.DedupeKey = fmt.Sprintf("api:%d:%s", keyID, id)
	return ev, in.ID, nil
}

// parseAt reads an event's `at`: RFC 3339, from 2000-01-01 to 24 hours
// after now. It returns it in UTC.
func parseAt(s string, now time.Time) (time.Time, error) {
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("at: want RFC 3339 (2026-11-23T10:00:00+08:00): %v", err)
	}
	if at.Before(earliestAt()) || at.After(now.Add(maxAheadOfNow)) {
		return time.Time{}, fmt.Errorf("at: %s is out of range: not before 2000-01-01 and not more than 24 hours ahead", s)
	}
	return at.UTC(), nil
}

// checkMember refuses identities too long for their member column, or with
// control characters.
func checkMember(m model.MemberRef) error {
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"member.appid", m.AppID, model.MaxAppID},
		{"member.openid", m.OpenID, model.MaxOpenID},
		{"member.unionid", m.UnionID, model.MaxUnionID},
		{"member.external_userid", m.ExternalUserID, model.MaxExternalUser},
		{"member.user_id", m.UserID, model.MaxUserID},
		{"member.phone", m.Phone, model.MaxPhone},
		{"member.email", m.Email, model.MaxEmail},
		{"member.mp_appid", m.MPAppID, model.MaxAppID},
		{"member.mp_openid", m.MPOpenID, model.MaxOpenID},
	} {
		if utf8.RuneCountInString(f.v) > f.max {
			return fmt.Errorf("%s is at most %d characters", f.name, f.max)
		}
		if hasControl(f.v) || !utf8.ValidString(f.v) {
			return fmt.Errorf("%s must not contain control characters", f.name)
		}
	}
	if m.Phone != "" && !plausiblePhone(m.Phone) {
		return fmt.Errorf("member.phone %.40q is not a phone number: digits, optionally a leading + and spaces or dashes, at least %d digits", m.Phone, minPhoneDigits)
	}
	if m.Email != "" && !plausibleEmail(m.Email) {
		return fmt.Errorf("member.email %.40q is not an email address (name@domain)", m.Email)
	}
	return nil
}

// minPhoneDigits is the fewest digits a phone number has (short service
// numbers included).
const minPhoneDigits = 5

// plausiblePhone: an optional leading +, then digits, spaces, dashes and
// parentheses, with at least minPhoneDigits digits.
func plausiblePhone(s string) bool {
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '+' && i == 0, r == ' ', r == '-', r == '(', r == ')':
		default:
			return false
		}
	}
	return digits >= minPhoneDigits
}

// plausibleEmail: something, @, a domain, no spaces.
func plausibleEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsFunc(s, unicode.IsSpace)
}

// validType: ASCII letters, digits and . _ - :, starting with a letter.
func validType(t string) bool {
	for i, r := range t {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == ':'):
		default:
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

// payloadHash fingerprints an event as posted: its type, member, props and
// `at` (the instant given, or none; never the time it was received), as
// JSON with sorted keys, hashed with SHA-256. A retry hashes the same; the
// same id with another payload does not.
func payloadHash(in apiEvent, at time.Time) string {
	canon := struct {
		Type   string          `json:"type"`
		Member model.MemberRef `json:"member"`
		Props  map[string]any  `json:"props"`
		At     string          `json:"at"`
	}{Type: in.Type, Member: in.Member, Props: in.Props}
	if canon.Props == nil {
		canon.Props = map[string]any{}
	}
	if !at.IsZero() {
		canon.At = at.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(canon) // checked encodable above
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
