package handler

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gin-gonic/gin"
	"github.com/gorilla/csrf"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
	"github.com/wejourney/wejourney/web"
)

// Cookie and form names of the admin sign-in.
const (
	sessionCookie = "wj_session"
	csrfCookie    = "wj_csrf"
	csrfField     = "csrf_token"
	sessionUser   = "user"
	sessionPWHash = "pw"
)

// Sign-in limits. A client IP gets IPAttempts sign-in attempts per
// IPWindow (refilled evenly); a username gets UserFailures wrong passwords
// per UserWindow. Over either, sign-in answers 429 until the window refills.
const (
	IPAttempts   = 20
	IPWindow     = time.Minute
	UserFailures = 5
	UserWindow   = 15 * time.Minute
	// limiterEntries bounds each limiter table (least recently used out).
	limiterEntries = 20000
	// bcryptWait is how long a sign-in waits for a bcrypt slot before 503.
	bcryptWait = 2 * time.Second
)

// MinPasswordLength is the shortest admin password `admin passwd` accepts;
// bcrypt reads at most MaxPasswordLength bytes.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 72
)

// AdminConfig configures the admin page.
type AdminConfig struct {
	// DB is required.
	DB *gorm.DB
	// Secret derives the CSRF key; required.
	Secret []byte
	// Sandbox shows the "messages are only recorded" note.
	Sandbox bool
	// SessionTTL is a session's absolute lifetime; default 12 hours.
	SessionTTL time.Duration
	// SessionIdle ends a session unused that long; default 2 hours.
	SessionIdle time.Duration
	// CookieSecure is "auto" (default: Secure when the request came over
	// TLS, from a trusted proxy with X-Forwarded-Proto: https, or PublicURL
	// is https), "always" or "never".
	CookieSecure string
	// PublicURL is the public base URL; https makes cookies Secure in auto.
	PublicURL string
	// TrustedProxies are IPs or CIDRs whose X-Forwarded-For and
	// X-Forwarded-Proto are believed; empty: none.
	TrustedProxies []string
	// BcryptSlots bounds concurrent password checks; default NumCPU/2, at least 1.
	BcryptSlots int
	// Context, when set, runs the cleanup of expired sessions until done.
	Context context.Context
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock the journey statistics' default date range is
	// counted from; default time.Now.
	Now func() time.Time
	// JourneyOptions are the parse options of extra step kinds
	// (journey.WithStepKinds), with which the statistics read a journey's
	// current version.
	JourneyOptions []journey.ParseOption
	// CSAllowance reads members' customer-service allowance for the member
	// page (the WeChat sender's *wechat.Allowance); nil: not shown.
	CSAllowance CSAllowance
}

// Admin serves the admin page and the JSON API behind it.
type Admin struct {
	cfg     AdminConfig
	log     *slog.Logger
	tmpl    *template.Template
	catalog *web.Catalog
	store   *SessionStore
	sm      *scs.SessionManager
	limits  *signinLimits
	slots   chan struct{}
	dummy   []byte // a bcrypt hash compared for unknown users
	proxies []netip.Prefix
	// https: PublicURL is https.
	https bool
	// csrf protectors writing a Secure or a plain CSRF cookie.
	csrfSecure, csrfPlain http.Handler
	// compares counts bcrypt comparisons (tests).
	compares atomic.Int64
	// slotWait is how long a sign-in waits for a bcrypt slot.
	slotWait time.Duration
}

// NewAdmin returns the admin page.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 2 * time.Hour
	}
	if cfg.BcryptSlots <= 0 {
		cfg.BcryptSlots = max(1, runtime.NumCPU()/2)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	catalog, err := web.NewCatalog()
	if err != nil {
		panic(fmt.Sprintf("the embedded message files: %v", err)) // a build defect: web's tests catch it
	}
	a := &Admin{cfg: cfg, log: cfg.Logger, tmpl: web.Templates(consoleFuncs), catalog: catalog, limits: newSigninLimits(),
		slots: make(chan struct{}, cfg.BcryptSlots), slotWait: bcryptWait}
	for _, p := range cfg.TrustedProxies {
		if pfx, err := netip.ParsePrefix(p); err == nil {
			a.proxies = append(a.proxies, pfx.Masked())
		} else if ip, err := netip.ParseAddr(p); err == nil {
			a.proxies = append(a.proxies, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
		} else {
			a.log.Error("ignoring a trusted proxy that is not an IP or CIDR", "proxy", p)
		}
	}
	if u, err := url.Parse(cfg.PublicURL); err == nil && u.Scheme == "https" {
		a.https = true
	}
	a.store = NewSessionStore(cfg.DB, a.log)
	if cfg.Context != nil {
		a.store.StartCleanup(cfg.Context, 10*time.Minute)
	}
	a.sm = scs.New()
	a.sm.Store = a.store
	a.sm.Lifetime = cfg.SessionTTL
	a.sm.IdleTimeout = cfg.SessionIdle
	a.sm.HashTokenInStore = true // a copy of the table holds no usable token
	a.sm.Cookie.Name = sessionCookie

	// Unknown users cost one comparison against this, like known ones.
	random := make([]byte, 16)
	rand.Read(random)
	a.dummy, _ = bcrypt.GenerateFromPassword(random, bcrypt.DefaultCost)

	m := hmac.New(sha256.New, cfg.Secret)
	m.Write([]byte("wejourney csrf key v1"))
	key := m.Sum(nil)
	opts := func(secure bool) []csrf.Option {
		return []csrf.Option{csrf.Secure(secure), csrf.HttpOnly(true), csrf.Path("/"), csrf.SameSite(csrf.SameSiteLaxMode),
			csrf.CookieName(csrfCookie), csrf.FieldName(csrfField), csrf.MaxAge(int(cfg.SessionTTL.Seconds())),
			csrf.ErrorHandler(http.HandlerFunc(a.csrfFailed))}
	}
	passed := http.HandlerFunc(a.csrfPassed)
	a.csrfSecure = csrf.Protect(key, opts(true)...)(passed)
	a.csrfPlain = csrf.Protect(key, opts(false)...)(passed)
	return a
}

// Close stops the background cleanup of expired sessions.
func (a *Admin) Close() { a.store.Close() }

// Proxies returns the trusted proxies for gin's SetTrustedProxies (nil:
// trust none); a nil Admin trusts none.
func (a *Admin) Proxies() []string {
	if a == nil {
		return nil
	}
	out := make([]string, 0, len(a.proxies))
	for _, p := range a.proxies {
		out = append(out, p.String())
	}
	return out
}

// HashPassword returns the bcrypt hash an admin password is stored as.
func HashPassword(pw string) (string, error) {
	if len(pw) > MaxPasswordLength {
		return "", fmt.Errorf("a password has at most %d bytes", MaxPasswordLength)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckNewPassword reports why pw cannot be a new admin password, or nil.
func CheckNewPassword(pw string) error {
	if n := len([]rune(pw)); n < MinPasswordLength {
		return fmt.Errorf("a password needs at least %d characters (got %d)", MinPasswordLength, n)
	}
	if len(pw) > MaxPasswordLength {
		return fmt.Errorf("a password has at most %d bytes", MaxPasswordLength)
	}
	return nil
}

// passwordFingerprint binds a session to the password hash it signed in
// with: a new password (any new hash) ends every older session.
func passwordFingerprint(hash string) string {
	sum := sha256.Sum256([]byte("wejourney session\x00" + hash))
	return hex.EncodeToString(sum[:])
}

// fromTrustedProxy reports whether the peer is a configured proxy.
func (a *Admin) fromTrustedProxy(c *gin.Context) bool {
	ip, err := netip.ParseAddr(c.RemoteIP())
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range a.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// overHTTPS reports whether the browser reached us over HTTPS: TLS here,
// X-Forwarded-Proto: https from a trusted proxy, or an https PublicURL.
func (a *Admin) overHTTPS(c *gin.Context) bool {
	if c.Request.TLS != nil || a.https {
		return true
	}
	if a.fromTrustedProxy(c) {
		proto, _, _ := strings.Cut(c.GetHeader("X-Forwarded-Proto"), ",")
		return strings.EqualFold(strings.TrimSpace(proto), "https")
	}
	return false
}

// secureCookies reports whether this response's cookies get Secure.
func (a *Admin) secureCookies(c *gin.Context) bool {
	switch a.cfg.CookieSecure {
	case "always":
		return true
	case "never":
		return false
	}
	return a.overHTTPS(c)
}

// headers protects admin pages from framing and caching.
func (a *Admin) headers(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.Next()
}

// ginContextKey carries the gin context through gorilla/csrf.
type ginContextKey struct{}

// csrfGuard checks the CSRF token of unsafe requests and puts a token in
// the request for forms. Requests authenticated by an API key skip it.
func (a *Admin) csrfGuard(c *gin.Context) {
	r := c.Request.WithContext(context.WithValue(c.Request.Context(), ginContextKey{}, c))
	if c.GetBool(apiKeyAuthenticated) {
		r = csrf.UnsafeSkipCheck(r)
	}
	if !a.overHTTPS(c) && a.cfg.CookieSecure != "always" {
		// Without this gorilla/csrf insists on an https Referer.
		r = csrf.PlaintextHTTPRequest(r)
	}
	p := a.csrfPlain
	if a.secureCookies(c) {
		p = a.csrfSecure
	}
	p.ServeHTTP(c.Writer, r)
}

func (a *Admin) csrfPassed(_ http.ResponseWriter, r *http.Request) {
	c := r.Context().Value(ginContextKey{}).(*gin.Context)
	c.Request = r
	c.Next()
}

func (a *Admin) csrfFailed(_ http.ResponseWriter, r *http.Request) {
	c := r.Context().Value(ginContextKey{}).(*gin.Context)
	c.Request = r
	a.log.Warn("admin request refused: CSRF check failed", "path", c.Request.URL.Path, "ip", c.ClientIP(),
		"reason", csrf.FailureReason(r))
	if strings.HasPrefix(c.Request.URL.Path, "/api/") {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "CSRF check failed: send the form's csrf_token or an X-CSRF-Token header"})
		return
	}
	a.renderError(c, http.StatusForbidden, "csrf_failed")
	c.Abort()
}

// loadSession puts the request's session (or a new, empty one) in its context.
func (a *Admin) loadSession(c *gin.Context) {
	token, _ := c.Cookie(sessionCookie)
	ctx, err := a.sm.Load(c.Request.Context(), token)
	if err != nil {
		a.log.Warn("loading admin session", "err", err)
		ctx, _ = a.sm.Load(c.Request.Context(), "")
	}
	c.Request = c.Request.WithContext(ctx)
}

// withSession is loadSession as middleware.
func (a *Admin) withSession(c *gin.Context) {
	a.loadSession(c)
	c.Next()
}

// saveSession stores a changed session and sets (or clears) its cookie;
// call it before writing the response.
func (a *Admin) saveSession(c *gin.Context) error {
	ctx := c.Request.Context()
	ck := &http.Cookie{Name: sessionCookie, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: a.secureCookies(c)}
	switch a.sm.Status(ctx) {
	case scs.Modified:
		token, expiry, err := a.sm.Commit(ctx)
		if err != nil {
			return err
		}
		ck.Value, ck.Expires, ck.MaxAge = token, expiry, int(math.Ceil(time.Until(expiry).Seconds()))
	case scs.Destroyed:
		ck.Expires, ck.MaxAge = time.Unix(1, 0), -1
	default:
		return nil
	}
	http.SetCookie(c.Writer, ck)
	return nil
}

// signedIn returns the session's user (its role read now, so a change
// counts at the next request), or a zero user when the session is
// missing, expired, older than the user's current password, or the user
// is disabled or gone. A valid session's idle deadline moves on.
func (a *Admin) signedIn(c *gin.Context) (model.AdminUser, error) {
	ctx := c.Request.Context()
	name := a.sm.GetString(ctx, sessionUser)
	if name == "" {
		return model.AdminUser{}, nil
	}
	var u model.AdminUser
	err := a.cfg.DB.WithContext(ctx).Where(&model.AdminUser{Username: name}).Take(&u).Error
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return model.AdminUser{}, fmt.Errorf("load admin user: %w", err)
	}
	if err != nil || u.DisabledAt != nil || !hmac.Equal([]byte(passwordFingerprint(u.PasswordHash)), []byte(a.sm.GetString(ctx, sessionPWHash))) {
		a.log.Info("admin session ended: the user's password changed, or the user is disabled or gone", "user", name, "ip", c.ClientIP())
		if err := a.sm.Destroy(ctx); err != nil {
			return model.AdminUser{}, fmt.Errorf("end admin session: %w", err)
		}
		return model.AdminUser{}, a.saveSession(c)
	}
	if err := a.saveSession(c); err != nil {
		return model.AdminUser{}, fmt.Errorf("save admin session: %w", err)
	}
	return u, nil
}

// apiAuth admits the admin JSON API with an API key of scope admin
// (Authorization: Bearer) or a signed-in session.
func (a *Admin) apiAuth(c *gin.Context) {
	if c.GetHeader("Authorization") != "" {
		if requireAPIKey(c, a.cfg.DB, a.log, model.ScopeAdmin) {
			c.Next()
		}
		return
	}
	a.loadSession(c)
	user, err := a.signedIn(c)
	if err != nil {
		a.log.Error("checking admin session", "err", err)
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": "database error"})
		return
	}
	if user.Username == "" {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "sign in at /admin/login, or send Authorization: Bearer <api key with scope admin>"})
		return
	}
	c.Set(ctxUser, user)
	c.Next()
}

// langCookie keeps the language a person chose with ?lang=.
const langCookie = "wj_lang"

// lang is the request's language (web.Catalog.Lang): a ?lang= switch,
// which is remembered in a cookie, else the cookie's, else the browser's
// Accept-Language, else zh-CN.
func (a *Admin) lang(c *gin.Context) string {
	q := c.Query("lang")
	if a.catalog.Supported(q) {
		c.SetCookie(langCookie, q, 365*24*3600, "/", "", false, false)
	}
	ck, _ := c.Cookie(langCookie)
	return a.catalog.Lang(q, ck, c.GetHeader("Accept-Language"))
}

// render writes a page: data gets the language, its texts (T), the CSRF
// field and the signed-in user (User, for the console's shell).
func (a *Admin) render(c *gin.Context, status int, name string, data map[string]any) {
	l := a.lang(c)
	data["Lang"], data["T"] = l, a.catalog.Texts(l)
	data["CSRF"] = csrf.TemplateField(c.Request)
	if u := currentUser(c); u.Username != "" {
		data["User"] = &u
	}
	c.Header("Vary", "Cookie, Accept-Language")
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := a.tmpl.ExecuteTemplate(c.Writer, name, data); err != nil {
		c.Error(err)
	}
}

// renderError answers with the error page showing message key msg.
func (a *Admin) renderError(c *gin.Context, status int, msg string) {
	a.render(c, status, "error.html", map[string]any{"Message": a.catalog.T(a.lang(c), msg, nil)})
}

func (a *Admin) loginPage(c *gin.Context) {
	if user, err := a.signedIn(c); err == nil && user.Username != "" {
		c.Redirect(http.StatusFound, "/admin/")
		return
	}
	a.render(c, http.StatusOK, "login.html", map[string]any{})
}

// errBusy: no bcrypt slot within bcryptWait.
var errBusy = errors.New("sign-in busy")

// comparePassword runs one bcrypt comparison in a bounded pool, so sign-in
// floods cannot take the CPU callbacks need.
func (a *Admin) comparePassword(ctx context.Context, hash []byte, pw string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.slotWait)
	defer cancel()
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		return false, errBusy
	}
	defer func() { <-a.slots }()
	a.compares.Add(1)
	return bcrypt.CompareHashAndPassword(hash, []byte(pw)) == nil, nil
}

// login serves POST /admin/login.
func (a *Admin) login(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 16<<10)
	name, pw := c.PostForm("username"), c.PostForm("password")
	ip := c.ClientIP()
	logName := name
	if len(logName) > 64 {
		logName = logName[:64] + "…"
	}
	log := a.log.With("user", logName, "ip", ip)
	now := time.Now()
	ipTurn := a.limits.ip(ip).ReserveN(now, 1)
	if wait := ipTurn.DelayFrom(now); !ipTurn.OK() || wait > 0 {
		ipTurn.CancelAt(now)
		log.Warn("admin sign-in refused", "outcome", "too many attempts from this IP")
		a.tooMany(c, wait)
		return
	}
	userTurn := a.limits.user(name).ReserveN(now, 1)
	if wait := userTurn.DelayFrom(now); !userTurn.OK() || wait > 0 {
		userTurn.CancelAt(now)
		log.Warn("admin sign-in refused", "outcome", "too many wrong passwords for this user")
		a.tooMany(c, wait)
		return
	}
	ctx := c.Request.Context()
	var u model.AdminUser
	err := a.cfg.DB.WithContext(ctx).Where(&model.AdminUser{Username: name}).Take(&u).Error
	known := err == nil && u.DisabledAt == nil // a disabled user signs in as an unknown one
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		userTurn.CancelAt(now)
		log.Error("admin sign-in failed", "outcome", "database error", "err", err)
		a.renderLogin(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	hash := a.dummy
	if known {
		hash = []byte(u.PasswordHash)
	}
	ok, err := a.comparePassword(ctx, hash, pw)
	if err != nil {
		userTurn.CancelAt(now)
		log.Warn("admin sign-in refused", "outcome", "busy: no password check slot")
		c.Header("Retry-After", "2")
		a.renderLogin(c, http.StatusServiceUnavailable, "busy")
		return
	}
	if !ok || !known {
		outcome := "wrong password"
		switch {
		case u.DisabledAt != nil:
			outcome = "user disabled"
		case !known:
			outcome = "unknown user"
		}
		log.Warn("admin sign-in refused", "outcome", outcome)
		if u.Username != "" { // a known user: the log tells its owner someone tried
			c.Set(ctxUser, model.AdminUser{Username: u.Username, Role: u.Role})
			a.audit(c, AuditSignInFailed, u.Username, gin.H{"reason": outcome})
		}
		a.renderLogin(c, http.StatusUnauthorized, "bad_login")
		return
	}
	userTurn.CancelAt(now) // only failures count against the user
	if err := a.sm.RenewToken(ctx); err != nil {
		log.Error("admin sign-in failed", "outcome", "session error", "err", err)
		a.renderLogin(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	a.sm.Put(ctx, sessionUser, u.Username)
	a.sm.Put(ctx, sessionPWHash, passwordFingerprint(u.PasswordHash))
	if err := a.saveSession(c); err != nil {
		log.Error("admin sign-in failed", "outcome", "session error", "err", err)
		a.renderLogin(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	log.Info("admin signed in", "outcome", "ok")
	c.Set(ctxUser, u)
	a.audit(c, AuditSignIn, u.Username, nil)
	c.Redirect(http.StatusSeeOther, "/admin/")
}

func (a *Admin) renderLogin(c *gin.Context, status int, msg string) {
	a.render(c, status, "login.html", map[string]any{"Error": a.catalog.T(a.lang(c), msg, nil)})
}

// tooMany answers 429 with the minutes until the next attempt.
func (a *Admin) tooMany(c *gin.Context, wait time.Duration) {
	minutes := max(1, int(math.Ceil(wait.Minutes())))
	if wait <= 0 || wait == rate.InfDuration {
		minutes = int(UserWindow.Minutes())
	}
	c.Header("Retry-After", strconv.Itoa(minutes*60))
	a.render(c, http.StatusTooManyRequests, "login.html",
		map[string]any{"Error": a.catalog.T(a.lang(c), "too_many", map[string]any{"Minutes": minutes})})
}

// logout serves POST /admin/logout: the session row is deleted, so the
// cookie no longer works anywhere.
func (a *Admin) logout(c *gin.Context) {
	ctx := c.Request.Context()
	user := a.sm.GetString(ctx, sessionUser)
	if err := a.sm.Destroy(ctx); err != nil {
		a.log.Error("admin sign-out failed", "user", user, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	if err := a.saveSession(c); err != nil {
		a.log.Error("admin sign-out failed", "user", user, "err", err)
	}
	if user != "" {
		a.log.Info("admin signed out", "user", user, "ip", c.ClientIP())
		c.Set(ctxUser, model.AdminUser{Username: user})
		a.audit(c, AuditSignOut, user, nil)
	}
	c.Redirect(http.StatusSeeOther, "/admin/login")
}

// signinLimits are token buckets per client IP and per username, in
// bounded LRU tables: a forgotten bucket is a full one, so evicting the
// least recently used entry only forgives its oldest failures.
type signinLimits struct {
	ips, users *lru.Cache[string, *rate.Limiter]
}

func newSigninLimits() *signinLimits {
	ips, _ := lru.New[string, *rate.Limiter](limiterEntries)
	users, _ := lru.New[string, *rate.Limiter](limiterEntries)
	return &signinLimits{ips: ips, users: users}
}

func (l *signinLimits) ip(ip string) *rate.Limiter {
	return bucket(l.ips, ip, rate.Every(IPWindow/IPAttempts), IPAttempts)
}

func (l *signinLimits) user(name string) *rate.Limiter {
	if len(name) > 128 {
		name = name[:128]
	}
	return bucket(l.users, name, rate.Every(UserWindow/UserFailures), UserFailures)
}

func bucket(t *lru.Cache[string, *rate.Limiter], key string, every rate.Limit, burst int) *rate.Limiter {
	if l, ok := t.Get(key); ok {
		return l
	}
	l := rate.NewLimiter(every, burst)
	if prev, ok, _ := t.PeekOrAdd(key, l); ok {
		return prev
	}
	return l
}

// chinaTime is how operators read times: UTC+8.
var chinaTime = model.ChinaTime

// JourneyRow is one journey with its enrollment counts.
type JourneyRow struct {
	ID        int64  `json:"id"`
	Key       string `json:"key"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Version   int    `json:"version"`
	Entered   int64  `json:"entered"`
	Active    int64  `json:"active"`
	Completed int64  `json:"completed"`
	// Goal counts the enrollments that reached the journey's goal; Exited
	// those an exit rule ended (an unfollow, an opt-out): never goals.
	Goal    int64 `json:"goal"`
	Exited  int64 `json:"exited"`
	Dropped int64 `json:"dropped"`
}

// DeliveryRow is one delivery as the admin page lists it.
type DeliveryRow struct {
	ID        int64     `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Journey   string    `json:"journey"`
	To        string    `json:"to"`
	Channel   string    `json:"channel"`
	Status    string    `json:"status"`
	Content   string    `json:"content"`
	Error     string    `json:"error,omitempty"`
}

func (a *Admin) journeys(c *gin.Context) ([]JourneyRow, error) {
	db := a.cfg.DB.WithContext(c.Request.Context())
	var js []model.Journey
	if err := db.Order("id").Find(&js).Error; err != nil {
		return nil, err
	}
	versionIDs := make([]int64, 0, len(js))
	for _, j := range js {
		versionIDs = append(versionIDs, j.CurrentVersionID)
	}
	var versions []model.JourneyVersion
	if err := db.Select("id", "version").Where("id IN ?", versionIDs).Find(&versions).Error; err != nil {
		return nil, err
	}
	versionOf := make(map[int64]int, len(versions))
	for _, v := range versions {
		versionOf[v.ID] = v.Version
	}
	var counts []struct {
		JourneyID int64
		Status    string
		N         int64
	}
	if err := db.Model(&model.Enrollment{}).Select("journey_id, status, count(*) AS n").
		Group("journey_id, status").Scan(&counts).Error; err != nil {
		return nil, err
	}
	rows := make([]JourneyRow, 0, len(js))
	index := make(map[int64]int, len(js))
	for _, j := range js {
		index[j.ID] = len(rows)
		rows = append(rows, JourneyRow{ID: j.ID, Key: j.Key, Name: j.Name, Status: j.Status, Version: versionOf[j.CurrentVersionID]})
	}
	for _, ct := range counts {
		i, ok := index[ct.JourneyID]
		if !ok {
			continue
		}
		r := &rows[i]
		r.Entered += ct.N
		switch ct.Status {
		case model.EnrollmentActive:
			r.Active = ct.N
		case model.EnrollmentCompleted:
			r.Completed = ct.N
		case model.EnrollmentGoal:
			r.Goal = ct.N
		case model.EnrollmentExited:
			r.Exited = ct.N
		case model.EnrollmentFailed:
			r.Dropped = ct.N
		}
	}
	return rows, nil
}

func (a *Admin) deliveries(c *gin.Context, limit int) ([]DeliveryRow, error) {
	db := a.cfg.DB.WithContext(c.Request.Context())
	var ds []model.Delivery
	if err := db.Order("id DESC").Limit(limit).Find(&ds).Error; err != nil {
		return nil, err
	}
	// The journeys' keys, in one query.
	ids := map[int64]bool{}
	for _, d := range ds {
		ids[d.JourneyID] = true
	}
	var js []model.Journey
	if len(ids) > 0 {
		if err := db.Select("id", "key").Where("id IN ?", keys(ids)).Find(&js).Error; err != nil {
			return nil, err
		}
	}
	keyOf := make(map[int64]string, len(js))
	for _, j := range js {
		keyOf[j.ID] = j.Key
	}
	rows := make([]DeliveryRow, 0, len(ds))
	for _, d := range ds {
		var p struct {
			Text       string
			TemplateID string
			Data       map[string]string
		}
		json.Unmarshal([]byte(d.Payload), &p)
		content := p.Text
		if content == "" && p.TemplateID != "" {
			content = "template " + p.TemplateID
		}
		rows = append(rows, DeliveryRow{ID: d.ID, CreatedAt: d.CreatedAt.In(chinaTime), Journey: keyOf[d.JourneyID], To: d.To,
			Channel: d.Channel, Status: d.Status, Content: content, Error: redact.String(d.Error)})
	}
	return rows, nil
}

func (a *Admin) listJourneys(c *gin.Context) {
	js, err := a.journeys(c)
	if err != nil {
		c.JSON(http.StatusInternalServerError, gin.H{"error": "database error"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"journeys": js})
}

// journeyStats answers GET /api/v1/journeys/{key}/stats?from=&to=: the
// journey's counts for the members who entered it between from and to
// (dates, China time, to inclusive; default the last 30 days).
func (a *Admin) journeyStats(c *gin.Context) {
	from, to, err := journey.StatsRange(c.Query("from"), c.Query("to"), a.cfg.Now())
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	key := c.Param("key")
	st, err := journey.JourneyStats(c.Request.Context(), a.cfg.DB, key, from, to, a.cfg.JourneyOptions...)
	switch {
	case errors.Is(err, journey.ErrNoJourney):
		c.JSON(http.StatusNotFound, gin.H{"error": fmt.Sprintf("no journey %q", key)})
	case err != nil:
		a.log.Error("journey statistics", "journey", key, "err", err)
		c.JSON(http.StatusInternalServerError, gin.H{"error": "database error"})
	default:
		c.JSON(http.StatusOK, st)
	}
}

func (a *Admin) listDeliveries(c *gin.Context) {
	limit, _ := strconv.Atoi(c.DefaultQuery("limit", "100"))
	ds, err := a.deliveries(c, min(max(limit, 1), 1000))
	if err != nil {
		c.JSON(http.StatusInternalServerError, gin.H{"error": "database error"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"deliveries": ds})
}

// PasswordMatches reports whether pw is the password of bcrypt hash.
func PasswordMatches(hash, pw string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}
