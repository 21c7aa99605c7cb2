package handler

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// MiniProgramSessions exchanges a mini-program's wx.login code for the
// member's openid in the mini-program and, when WeChat knows it, their
// unionid: WeChat's code2session. A code WeChat refuses (invalid, expired
// or used) is an error wrapping ErrLoginCodeRefused; WeChat's rate limit
// one wrapping ErrLoginRateLimited; any other error means WeChat failed or
// could not be reached.
type MiniProgramSessions interface {
	Code2Session(ctx context.Context, code string) (openid, unionid string, err error)
}

// Errors a MiniProgramSessions wraps so that POST /api/v1/miniprogram/session
// answers the mini-program rather than blaming WeChat.
var (
	// ErrLoginCodeRefused: the code is invalid, expired or already used
	// (WeChat's 40029, 40163, ...): 400, call wx.login again.
	ErrLoginCodeRefused = errors.New("WeChat refused the login code")
	// ErrLoginRateLimited: WeChat's code2session rate limit (45011): 429.
	ErrLoginRateLimited = errors.New("WeChat's code2session rate limit was reached")
)

// MiniProgramTokenTTL is how long a mini-program session token is valid.
const MiniProgramTokenTTL = 2 * time.Hour

// Limits of the mini-program endpoints.
const (
	maxLoginCode   = 256  // a wx.login code is 32 characters
	maxMPToken     = 2048 // a session token is about 250
	maxMPPage      = 512  // props.page, in characters
	maxMPDurationS = 7 * 24 * 3600.0
	mpTokenContext = "wejourney miniprogram session v1\x00" // keeps these MACs apart from any other use of the key
)

// mpClaims is what a session token carries: the member, as code2session
// named them, and when the token expires.
type mpClaims struct {
	AppID   string `json:"a"`
	OpenID  string `json:"o"`
	UnionID string `json:"u,omitempty"`
	Exp     int64  `json:"e"` // Unix seconds
}

// miniProgramOn reports whether the mini-program endpoints are configured.
func (h *Handler) miniProgramOn() bool {
	return h.cfg.MiniProgram != nil && h.cfg.MiniProgramAppID != "" && len(h.cfg.MiniProgramSecret) > 0
}

// notConfigured answers a mini-program endpoint of a server without one.
func notConfigured(c *gin.Context) {
	c.JSON(http.StatusNotFound, gin.H{"error": "no mini-program is configured: set WEJOURNEY_MINIPROGRAM_APPID and WEJOURNEY_MINIPROGRAM_APPSECRET"})
}

// signMPToken returns the token of claims: base64url(JSON claims) "."
// base64url(HMAC-SHA256 of the first part under key).
func signMPToken(key []byte, cl mpClaims) string {
	b, _ := json.Marshal(cl) // strings and a number: always encodes
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(mpMAC(key, payload))
}

func mpMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(mpTokenContext))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verifyMPToken checks tok's signature (in constant time), its expiry and
// that it was issued for appid, and returns its claims.
func verifyMPToken(key []byte, tok, appid string, now time.Time) (mpClaims, error) {
	var cl mpClaims
	if len(tok) > maxMPToken {
		return cl, errors.New("invalid token")
	}
	payload, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return cl, errors.New("invalid token")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mpMAC(key, payload)) {
		return cl, errors.New("invalid token")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(raw, &cl) != nil || cl.OpenID == "" {
		return mpClaims{}, errors.New("invalid token")
	}
	if cl.AppID != appid {
		return mpClaims{}, errors.New("token of another mini-program: log in again")
	}
	if now.Unix() >= cl.Exp {
		return mpClaims{}, errors.New("token expired: log in again (wx.login)")
	}
	return cl, nil
}

// miniProgramSession serves POST /api/v1/miniprogram/session: {"code":
// "<wx.login code>"} → {"token": "…", "expires_in": 7200}. It stores
// nothing.
func (h *Handler) miniProgramSession(c *gin.Context) {
	if !h.miniProgramOn() {
		notConfigured(c)
		return
	}
	if err := checkJSONContentType(c.GetHeader("Content-Type")); err != nil {
		c.JSON(http.StatusUnsupportedMediaType, gin.H{"error": err.Error()})
		return
	}
	body, ok := readBody(c, MaxBody)
	if !ok {
		return
	}
	var in struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "body is not JSON: " + err.Error()})
		return
	}
	if in.Code == "" || len(in.Code) > maxLoginCode || hasControl(in.Code) {
		c.JSON(http.StatusBadRequest, gin.H{"error": `send {"code": "<the code wx.login gave>"}`})
		return
	}
	openid, unionid, err := h.cfg.MiniProgram.Code2Session(c.Request.Context(), in.Code)
	switch {
	case errors.Is(err, ErrLoginCodeRefused):
		c.JSON(http.StatusBadRequest, gin.H{"error": "WeChat refused the code (invalid, expired or already used): call wx.login again for a new one"})
		return
	case errors.Is(err, ErrLoginRateLimited):
		c.Header("Retry-After", "60")
		c.JSON(http.StatusTooManyRequests, gin.H{"error": "WeChat's code2session rate limit was reached: try again in a minute"})
		return
	case err != nil:
		if ok, suppressed := h.logs.allow("code2session"); ok {
			h.log.Error("code2session failed", "err", err, "suppressed", suppressed)
		}
		c.JSON(http.StatusBadGateway, gin.H{"error": "could not reach WeChat to check the code: try again"})
		return
	}
	if openid == "" || !model.Fits(openid, model.MaxOpenID) || !model.Fits(unionid, model.MaxUnionID) {
		h.log.Error("code2session answered no usable openid", "openid_len", len(openid), "unionid_len", len(unionid))
		c.JSON(http.StatusBadGateway, gin.H{"error": "WeChat's answer named no member: try again"})
		return
	}
	tok := signMPToken(h.cfg.MiniProgramSecret, mpClaims{AppID: h.cfg.MiniProgramAppID, OpenID: openid, UnionID: unionid,
		Exp: h.now().Add(MiniProgramTokenTTL).Unix()})
	c.JSON(http.StatusOK, gin.H{"token": tok, "expires_in": int(MiniProgramTokenTTL / time.Second)})
}

// mpEvent is one event as the mini-program posts it; the member comes
// from the token.
type mpEvent struct {
	ID    string         `json:"id"`
	Type  string         `json:"type"`
	Props map[string]any `json:"props"`
	At    string         `json:"at"`
}

// miniProgramEvents serves POST /api/v1/miniprogram/events: one event or
// {"events": [...]} of the member the Bearer token names.
func (h *Handler) miniProgramEvents(c *gin.Context) {
	if !h.miniProgramOn() {
		notConfigured(c)
		return
	}
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || tok == "" {
		c.Header("WWW-Authenticate", "Bearer")
		c.JSON(http.StatusUnauthorized, gin.H{"error": "missing Authorization: Bearer <token from /api/v1/miniprogram/session>"})
		return
	}
	now := h.now()
	cl, err := verifyMPToken(h.cfg.MiniProgramSecret, tok, h.cfg.MiniProgramAppID, now)
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
		c.JSON(http.StatusUnauthorized, gin.H{"error": err.Error()})
		return
	}
	raws, ok := readBatch(c)
	if !ok {
		return
	}
	h.ingestMPBatch(c, raws, cl, now)
}

// ingest stores evs and answers 202, 409 (an id reused with another
// payload; ids are the ids as posted) or 503.
func (h *Handler) ingest(c *gin.Context, evs []*model.Event, ids []string) {
	accepted, dups, err := h.cfg.Ingestor.Ingest(c.Request.Context(), evs...)
	var conflict *journey.ConflictError
	if errors.As(err, &conflict) {
		var errs []apiError
		for _, i := range conflict.Indexes {
			errs = append(errs, apiError{i, fmt.Sprintf("id %q was already used with a different payload", ids[i])})
		}
		c.JSON(http.StatusConflict, gin.H{"errors": errs})
		return
	}
	if err != nil {
		h.log.Error("storing events failed", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "could not store events; retry with the same ids"})
		return
	}
	for _, ev := range evs {
		if ev.ID != 0 {
			h.metrics.events.WithLabelValues(journey.EventLabel(ev.Type)).Inc()
		}
	}
	c.JSON(http.StatusAccepted, gin.H{"accepted": accepted, "duplicates": dups})
}

// parseMPEvent checks one posted mini-program event and returns it with
// the id as posted.
func parseMPEvent(raw json.RawMessage, cl mpClaims, now time.Time) (*model.Event, string, error) {
	var in mpEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, "", fmt.Errorf("not an event: %v", err)
	}
	switch {
	case in.Type != events.MiniProgramOpened && in.Type != events.MiniProgramClosed:
		return nil, "", fmt.Errorf("type: want %s or %s (or %s)", events.MiniProgramOpened, events.MiniProgramClosed, events.MiniProgramSubscribeAuthorized)
	case utf8.RuneCountInString(in.ID) > maxEventID:
		return nil, "", fmt.Errorf("id is at most %d characters", maxEventID)
	case hasControl(in.ID):
		return nil, "", errors.New("id must not contain control characters")
	}
	page, ok := in.Props["page"].(string)
	if !ok || page == "" || utf8.RuneCountInString(page) > maxMPPage || hasControl(page) || !utf8.ValidString(page) {
		return nil, "", fmt.Errorf("props.page: the page's path is required (a string of at most %d characters)", maxMPPage)
	}
	props := map[string]any{"page": page}
	if d, present := in.Props["duration_s"]; present && d != nil {
		f, ok := d.(float64)
		if !ok || math.IsNaN(f) || f < 0 || f > maxMPDurationS {
			return nil, "", fmt.Errorf("props.duration_s: seconds, a number from 0 to %.0f", maxMPDurationS)
		}
		props["duration_s"] = f
	}
	for k := range in.Props {
		if k != "page" && k != "duration_s" {
			return nil, "", fmt.Errorf("props.%s: unknown prop (a mini-program event has page and duration_s)", k)
		}
	}
	at := now.UTC()
	given := in.At != ""
	if given {
		var err error
		if at, err = parseAt(in.At, now); err != nil {
			return nil, "", err
		}
	}
	ev := &model.Event{Type: in.Type, Source: events.MiniProgram{}.Name(), At: at, Props: props,
		Member: model.MemberRef{MPAppID: cl.AppID, MPOpenID: cl.OpenID, UnionID: cl.UnionID}}
	canon := struct {
		Type  string         `json:"type"`
		Props map[string]any `json:"props"`
		At    string         `json:"at"`
	}{Type: in.Type, Props: props}
	if given {
		canon.At = at.Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(canon) // strings and finite numbers
	sum := sha256.Sum256(b)
	ev.PayloadHash = hex.EncodeToString(sum[:])
	if in.ID == "" {
		// One member's page shown at one instant is one event, however
		// often it is posted.
		d := sha256.Sum256([]byte(in.Type + "\x00" + at.Format(time.RFC3339Nano) + "\x00" + page))
		ev.DedupeKey = fmt.Sprintf("mp:%s/%s:at:%s", cl.AppID, cl.OpenID, hex.EncodeToString(d[:16]))
	} else {
		ev.DedupeKey = fmt.Sprintf("mp:%s/%s:id:%s", cl.AppID, cl.OpenID, in.ID)
	}
	return ev, in.ID, nil
}
