// Package handler is wejourney's HTTP surface in gin: the WeChat and WeCom
// callbacks, the brand events API, health, metrics and the admin page. It
// translates requests into calls on an EventStore (journey.Ingestor in a
// server) and an AccountLookup (model.Accounts); it does no journey work
// itself. A callback is answered after its event is committed and before
// any journey runs. New serves the whole route table; Probes serves its probe routes
// alone, for a process that serves nothing else.
package handler

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// MaxBody is the largest request body accepted; larger ones get 413.
const MaxBody = 1 << 20

// DefaultMaxConcurrentBodies is how many callback bodies are read at once
// when Config.MaxConcurrentBodies is zero.
const DefaultMaxConcurrentBodies = 64

// bodySlotWait is how long a callback waits for a free body slot before it
// is answered 503 (WeChat retries it).
const bodySlotWait = time.Second

// EventStore stores normalized events durably: *journey.Ingestor is one.
// Ingest returns once the events are committed (or an error, and then
// nothing was acknowledged); a *journey.ConflictError names the events
// whose ids were used before with another payload.
type EventStore interface {
	Ingest(ctx context.Context, events ...*model.Event) (accepted, duplicates int, err error)
}

// AccountLookup finds the account a callback URL names: *model.Accounts is
// one. An unknown appid is an error wrapping model.ErrUnknownAccount.
type AccountLookup interface {
	Get(ctx context.Context, appid string) (model.Account, error)
}

// Config wires a handler. DB, Ingestor and Accounts are required.
type Config struct {
	DB       *gorm.DB
	Ingestor EventStore
	Accounts AccountLookup
	// Ready checks the dependencies for /readyz (nil: always ready).
	Ready func(*http.Request) error
	// Registry serves /metrics and receives the handler's metrics.
	Registry *prometheus.Registry
	// Admin serves /admin/ and its JSON API.
	Admin *Admin
	// Codes serves the QR code and contact-me routes of the admin API
	// (nil: none).
	Codes CodeService
	// Sources are the event sources: the events API refuses types in their
	// namespaces. Default events.Default().
	Sources *events.Registry
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock callback timestamps, event times and mini-program
	// session tokens are checked against; it defaults to time.Now.
	Now func() time.Time
	// EventsLimiter limits the events API per API key (nil: no limit).
	EventsLimiter RateLimiter
	// MiniProgram exchanges wx.login codes for POST
	// /api/v1/miniprogram/session, for the mini-program MiniProgramAppID.
	// MiniProgramSecret signs its session tokens: the same in every process
	// (the settings row miniprogram_token_secret). Without all three, the
	// mini-program endpoints answer 404.
	MiniProgram       MiniProgramSessions
	MiniProgramAppID  string
	MiniProgramSecret []byte
	// Holds lists the provider APIs held until their daily quota resets
	// (/api/v1/channels/holds); nil leaves those routes out.
	Holds QuotaHolds
	// Senders serves test sends of the admin API (POST
	// /api/v1/channels/{channel}/test); nil leaves the route out.
	Senders ChannelSender
	// EmailTokens verifies the tokens of the email channel's open pixel,
	// click redirect and unsubscribe links (/t/o/, /t/c/, /u/); nil: those
	// routes answer 404.
	EmailTokens EmailTokens
	// Followers runs follower imports for the admin API
	// (/api/v1/followers/sync); nil leaves those routes out.
	Followers FollowerSyncer
	// SMSUplinkToken is the ?token= of the SMS providers' reply callbacks
	// (/sms/aliyun/uplink, /sms/tencent/uplink); empty: they answer 404.
	SMSUplinkToken string
	// SubscribeLinks makes and receives Official Account 一次性订阅消息
	// links (POST /api/v1/subscribe-links, GET
	// /wechat/oa/{appid}/subscribemsg); nil: those routes answer 404.
	SubscribeLinks *SubscribeLinkConfig
	// TestRuns walks journeys for one member, sending only to a tester
	// and only when asked to (POST /api/v1/journeys/{key}/test); nil
	// leaves the route out.
	TestRuns JourneyTester
	// Journeys publishes, pauses, resumes and archives journeys for the
	// admin API (POST /api/v1/journeys/{key}/publish, pause, resume,
	// archive); nil leaves those routes out.
	Journeys JourneyLifecycle
	// Console is what the console's accounts page shows of the
	// configuration and how it checks credentials (console_accounts.go).
	Console ConsoleSettings
	// MaxConcurrentBodies caps how many callback bodies are read at once,
	// bounding the memory that request bodies can take; a callback that
	// finds no free slot within a second is answered 503. Default
	// DefaultMaxConcurrentBodies.
	MaxConcurrentBodies int
}

// Handler holds the routes' dependencies.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	// bodies holds one token per callback body being read.
	bodies   chan struct{}
	bodyWait time.Duration
	// logs rate-limits the log lines about refused requests.
	logs logLimiter
}

// New returns the router with the whole route table.
func New(cfg Config) http.Handler {
	return newHandler(cfg).routes()
}

// newHandler fills in cfg's defaults.
func newHandler(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Sources == nil {
		cfg.Sources = events.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxConcurrentBodies <= 0 {
		cfg.MaxConcurrentBodies = DefaultMaxConcurrentBodies
	}
	return &Handler{
		cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registry), now: cfg.Now,
		bodies: make(chan struct{}, cfg.MaxConcurrentBodies), bodyWait: bodySlotWait,
	}
}

// ProbeConfig wires the probe routes of a process that serves nothing else
// (a worker).
type ProbeConfig struct {
	// Ready checks the dependencies for /readyz (nil: always ready).
	Ready func(*http.Request) error
	// Registry serves /metrics.
	Registry *prometheus.Registry
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Probes returns a router with only the probe routes, /healthz, /readyz
// and /metrics, answered as New answers them.
func Probes(cfg ProbeConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	h := &Handler{cfg: Config{Ready: cfg.Ready, Registry: cfg.Registry, Logger: cfg.Logger}, log: cfg.Logger}
	r := gin.New()
	r.Use(h.recoverer)
	h.probeRoutes(r)
	return r
}

// probeRoutes adds the routes every process serves: liveness, readiness
// and metrics.
func (h *Handler) probeRoutes(r gin.IRoutes) {
	r.GET("/healthz", h.healthz)
	r.GET("/readyz", h.readyz)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(h.cfg.Registry, promhttp.HandlerOpts{})))
}

// routes returns the router. gin's mode is the process's choice (main sets
// release mode once); the router does not change it.
func (h *Handler) routes() http.Handler {
	cfg := h.cfg
	r := gin.New()
	r.SetTrustedProxies(cfg.Admin.Proxies()) // validated: nil trusts no X-Forwarded-For
	r.Use(h.recoverer)

	// The route table: every route wejourney serves.
	r.GET("/wechat/oa/:appid", h.officialAccount)
	r.POST("/wechat/oa/:appid", h.officialAccount)
	r.GET("/wechat/oa/:appid/subscribemsg", h.subscribeMsgReturn)
	r.GET("/wechat/work/:corpid/:agentid", h.weCom)
	r.POST("/wechat/work/:corpid/:agentid", h.weCom)
	r.POST("/api/v1/events", h.apiKeyAuth, h.postEvents)
	r.POST("/api/v1/miniprogram/session", h.miniProgramSession)
	r.POST("/api/v1/miniprogram/events", h.miniProgramEvents)
	r.POST("/sms/aliyun/uplink", h.aliyunUplink)
	r.POST("/sms/tencent/uplink", h.tencentUplink)
	r.GET("/t/o/:token", h.emailOpen)
	r.GET("/t/c/:token", h.emailClick)
	r.GET("/u/:token", h.unsubscribePage)
	r.POST("/u/:token", h.unsubscribe)
	h.probeRoutes(r)
	if a := cfg.Admin; a != nil {
		r.GET("/", func(c *gin.Context) { c.Redirect(http.StatusFound, "/admin/") })
		r.GET("/admin", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/admin/") })
		// The console's pages and the admin API check the caller's role
		// with authorize, against the one table of routeRoles (roles.go).
		pages := r.Group("/admin", a.headers, a.withSession, a.csrfGuard)
		pages.GET("/login", a.loginPage)
		pages.POST("/login", a.login)
		pages.POST("/logout", a.logout)
		console := pages.Group("", a.requireUser, a.authorize)
		console.GET("/", a.dashboard)
		console.GET("/deliveries", a.deliveriesPage(retrierOf(cfg.Journeys)))
		console.POST("/deliveries/:id/retry", a.retryDelivery(retrierOf(cfg.Journeys)))
		console.GET("/users", a.usersPage)
		console.POST("/users", a.addUser)
		console.POST("/users/:op", a.changeUser)
		console.GET("/audit", a.auditPage)
		h.consoleJourneyRoutes(console, a)
		h.editorRoutes(console) // journey editor: /journeys/new, /journeys/:key/edit, /journeys/:key/test
		h.memberConsoleRoutes(console)
		h.accountRoutes(console) // accounts, QR codes, API keys: console_{accounts,qrcodes,apikeys}.go
		h.qrcodeRoutes(console)
		api := r.Group("/api/v1", a.headers, a.apiAuth, a.csrfGuard, a.authorize)
		api.GET("/audit", a.listAudit)
		a.apiKeyRoutes(console, api)
		api.GET("/journeys", a.listJourneys)
		api.GET("/journeys/:key/stats", a.journeyStats)
		api.GET("/deliveries", a.listDeliveries)
		api.POST("/subscribe-links", h.createSubscribeLink)
		h.codeRoutes(api)
		h.holdRoutes(api)
		h.journeyTestRoutes(api)
		h.memberRoutes(api)
		h.enrollRoutes(api)
		h.channelRoutes(api)
		h.journeyRoutes(api)
		if cfg.Followers != nil {
			api.POST("/followers/sync", h.startFollowerSync)
			api.GET("/followers/sync", h.followerSyncStatus)
		}
	}
	return r
}

// recoverer turns a panic into a 500 and a logged stack: never "success".
func (h *Handler) recoverer(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("panic serving request", "path", c.Request.URL.Path, "panic", p)
			c.AbortWithStatus(http.StatusInternalServerError)
		}
	}()
	c.Next()
}

func (h *Handler) healthz(c *gin.Context) { c.String(http.StatusOK, "ok") }

// readyz answers whether the dependencies answer. The reason for "not
// ready" goes to the log, never to the caller: driver errors name hosts,
// users and sometimes more. At most the failing component is named.
func (h *Handler) readyz(c *gin.Context) {
	if h.cfg.Ready != nil {
		if err := h.cfg.Ready(c.Request); err != nil {
			if ok, suppressed := h.logs.allow("readyz"); ok {
				h.log.Warn("not ready", "err", err, "suppressed", suppressed)
			}
			c.JSON(http.StatusServiceUnavailable, gin.H{"ready": false, "error": notReadyReason(err)})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"ready": true})
}

// DependencyError is what a Config.Ready check returns when a dependency
// does not answer: /readyz names the dependency and logs Err, whose text
// (driver errors name hosts, users and sometimes more) never reaches the
// caller.
type DependencyError struct {
	Dependency string // "database", "redis"
	Err        error
}

func (e *DependencyError) Error() string { return e.Dependency + ": " + e.Err.Error() }

// Unwrap returns the dependency's error.
func (e *DependencyError) Unwrap() error { return e.Err }

// NotReadyDependency is the dependency err names, or "".
func NotReadyDependency(err error) string {
	var d *DependencyError
	if errors.As(err, &d) {
		return d.Dependency
	}
	return ""
}

// notReadyReason is what /readyz tells the caller about err: the failing
// dependency, if err names one, and nothing else.
func notReadyReason(err error) string {
	if d := NotReadyDependency(err); d != "" {
		return "not ready: " + d + ": see the server log"
	}
	return "not ready: see the server log"
}

type metrics struct {
	callbacks *prometheus.CounterVec
	ackTime   prometheus.Histogram
	events    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wejourney_callbacks_total", Help: "WeChat callbacks by outcome.",
		}, []string{"source", "outcome"}),
		ackTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wejourney_callback_ack_seconds", Help: "Time from callback received to durable acknowledgement.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 5},
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wejourney_events_total", Help: "Normalized events stored, by type.",
		}, []string{"type"}),
	}
	reg.MustRegister(m.callbacks, m.ackTime, m.events)
	return m
}
