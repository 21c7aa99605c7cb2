package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/webhook"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/followers"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// Roles a serve process can take.
const (
	RoleAll    = "all"
	RoleWeb    = "web"
	RoleWorker = "worker"
)

// Options are the process-level choices beside the configuration.
type Options struct {
	Role string // RoleAll (default), RoleWeb or RoleWorker
	// Listener, if set, is served instead of listening on cfg.HTTPAddr.
	Listener net.Listener
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// SweepInterval defaults to 2 seconds.
	SweepInterval time.Duration
	// Concurrency of the asynq worker: tasks in hand at once. Default 256:
	// a step or route task mostly waits for its batch (the engine gathers
	// the tasks in hand into batches of up to 64 visits), so the more in
	// hand, the larger the batches; the database work stays bounded by the
	// engine's batches and the connection pool.
	Concurrency int
	// AutoMigrate applies pending migrations at start (the embedded SQLite
	// default does); otherwise a behind schema is an error that says to run
	// `wejourney migrate`.
	AutoMigrate bool
}

// App is one wired wejourney process.
type App struct {
	Cfg    config.Config
	Opts   Options
	DB     *gorm.DB
	Engine *journey.Engine
	Log    *slog.Logger
	// Addr is the address the HTTP server listens on, once started.
	Addr string
	// AdminPassword is set when this start created the admin user.
	AdminPassword string

	secrets   *model.SecretBox   // account secrets at rest
	wechat    *wechat.Sender     // the Official Account API: sends and every other call
	wecom     *wecom.Client      // the WeCom API
	senders   *channels.Registry // every channel's sender (the engine's, and the admin API's test sends)
	sources   *events.Registry   // event sources, shared by the engine and the events API
	mini      *miniredis.Miniredis
	redisOpt  asynq.RedisConnOpt
	rdb       redis.UniversalClient
	queue     *asynq.Client
	workers   []*asynq.Server
	ingestor  *journey.Ingestor
	followers *followers.Syncer // follower imports started from the admin API
	http      *http.Server
	runCtx    context.Context
	registry  *prometheus.Registry
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewApp opens the database and Redis and wires every part; Start runs it.
// It calls the constructors below in order and closes what they opened when
// one fails.
func NewApp(ctx context.Context, cfg config.Config, opts Options) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	a := &App{Cfg: cfg, Opts: opts, Log: opts.Logger, sources: events.Default()}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()

	var err error
	if a.DB, a.secrets, err = openStore(ctx, cfg, opts, a.Log); err != nil {
		return nil, err
	}
	if a.mini, a.redisOpt, a.rdb, err = openRedis(ctx, cfg); err != nil {
		return nil, err
	}
	a.queue = asynq.NewClient(a.redisOpt)
	if err := a.bootstrap(ctx); err != nil {
		return nil, err
	}
	accounts := model.NewAccounts(a.DB, a.secrets)
	a.wechat = newWeChat(cfg, accounts, a.rdb, a.Log)
	a.wecom = newWeCom(cfg, accounts, a.rdb, a.Log)
	senders, err := buildSenders(senderDeps{cfg: cfg, wechat: a.wechat, wecom: a.wecom, db: a.DB, rdb: a.rdb,
		limiter: newLimiter(cfg, a.rdb), log: a.Log})
	if err != nil {
		return nil, err
	}
	a.runCtx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.Role != RoleWorker {
		a.ingestor = journey.NewIngestor(journey.IngestorConfig{DB: a.DB, Queue: a.queue, Logger: a.Log})
		a.followers = followers.New(followers.Config{DB: a.DB, Client: a.wechat, Events: a.ingestor,
			BaseContext: a.runCtx, Logger: a.Log})
	}
	a.senders = senders
	a.Engine = a.newEngine(senders)
	a.syncJourneys(ctx)
	if a.http, err = a.newHTTP(ctx, accounts); err != nil {
		return nil, err
	}
	a.workers = newWorkers(a.redisOpt, opts, a.Log)
	ok = true
	return a, nil
}

// withDefaults fills in the zero fields of o.
func (o Options) withDefaults() Options {
	if o.Role == "" {
		o.Role = RoleAll
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 2 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 256
	}
	return o
}

// openStore opens the database of cfg.DatabaseURL, migrates it (with
// opts.AutoMigrate) or checks it is migrated, and opens the box of account
// secrets. On error it closes what it opened.
func openStore(ctx context.Context, cfg config.Config, opts Options, log *slog.Logger) (*gorm.DB, *model.SecretBox, error) {
	db, closeDB, err := openDatabase(cfg, opts.AutoMigrate)
	if err != nil {
		return nil, nil, err
	}
	dialect, dsn, _ := config.ParseDatabaseURL(cfg.DatabaseURL) // parsed by openDatabase
	box, err := openSecrets(ctx, cfg, dialect, dsn, db, log)
	if err != nil {
		closeDB()
		return nil, nil, err
	}
	return db, box, nil
}

// openDatabase opens the database of cfg.DatabaseURL and migrates it
// (migrate) or checks it is migrated. closeDB closes it; on error it is
// already closed.
func openDatabase(cfg config.Config, migrate bool) (db *gorm.DB, closeDB func(), err error) {
	dialect, dsn, err := config.ParseDatabaseURL(cfg.DatabaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("WEJOURNEY_DATABASE_URL: %w", err)
	}
	if db, err = model.Open(dialect, dsn); err != nil {
		return nil, nil, err
	}
	if n, err := cfg.MaxConns(); err == nil && dialect != "sqlite" {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.SetMaxOpenConns(n)
			sqlDB.SetMaxIdleConns(n)
		}
	}
	closeDB = func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	}
	if migrate {
		err = model.Migrate(db)
	} else {
		err = model.CheckMigrated(db)
	}
	if err != nil {
		closeDB()
		return nil, nil, err
	}
	return db, closeDB, nil
}

// openRedis connects to cfg.RedisURL or, when it is empty, starts an
// in-process Redis (returned as mini), and checks that it answers. On error
// it closes what it opened.
func openRedis(ctx context.Context, cfg config.Config) (mini *miniredis.Miniredis, opt asynq.RedisConnOpt, rdb redis.UniversalClient, err error) {
	if cfg.RedisURL == "" {
		mini = miniredis.NewMiniRedis()
		if err := mini.Start(); err != nil {
			return nil, nil, nil, fmt.Errorf("start in-process redis: %w", err)
		}
		opt = asynq.RedisClientOpt{Addr: mini.Addr()}
	} else if opt, err = parseRedisURL(cfg.RedisURL); err != nil {
		return nil, nil, nil, fmt.Errorf("WEJOURNEY_REDIS_URL: %w", err)
	}
	fail := func(err error) (*miniredis.Miniredis, asynq.RedisConnOpt, redis.UniversalClient, error) {
		if rdb != nil {
			rdb.Close()
		}
		if mini != nil {
			mini.Close()
		}
		return nil, nil, nil, err
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fail(errors.New("redis: unexpected client type"))
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fail(fmt.Errorf("redis: %w", err))
	}
	return mini, opt, rdb, nil
}

// senderDeps are what the senders are built from. `journeys validate`
// builds them with no database, Redis or limiter (nil): it only asks which
// channels are served.
type senderDeps struct {
	cfg     config.Config
	wechat  *wechat.Sender
	wecom   *wecom.Client
	db      *gorm.DB
	rdb     redis.UniversalClient
	limiter channels.Limiter
	log     *slog.Logger
}

// buildSenders registers a sender for every channel this configuration
// serves: the WeChat Official Account channels, SMS (WEJOURNEY_SMS_PROVIDER,
// senders_sms.go), email over SMTP (WEJOURNEY_SMTP_URL; without it, the
// log sender), and webhook steps (signed with WEJOURNEY_WEBHOOK_SECRET). It opens nothing (the SMTP sender connects only to send;
// with a database it seeds its token key), so `journeys validate` calls it
// to learn the configured channels (with a WeChat client of no accounts:
// sends then fail).
func buildSenders(d senderDeps) (*channels.Registry, error) {
	senders := channels.NewRegistry()
	senders.Add(d.wechat)
	addWeComSenders(senders, d)
	addSubscribeSender(senders, d) // senders_wxsub.go
	logOnly := logSender{d.log}
	if err := addSMS(senders, d); err != nil {
		return nil, err
	}
	if d.cfg.SMTPURL == "" {
		senders.Register(channels.Email, logOnly, channels.Capabilities{Address: channels.ByEmail})
	}
	if err := addEmailSender(senders, d); err != nil {
		return nil, err
	}
	senders.Add(webhook.New(webhook.Config{Secret: d.cfg.WebhookSecret}))
	return senders, nil
}

// newLimiter returns the send rate limiter: in Redis, shared by every
// process on it; in this process's memory for the embedded default, whose
// in-process Redis no other process reaches (a Lua script per send costs it
// a third of its throughput).
func newLimiter(cfg config.Config, rdb redis.UniversalClient) channels.Limiter {
	if cfg.RedisURL == "" {
		return channels.NewLocalLimiter()
	}
	return channels.NewRedisLimiter(rdb)
}

// newWeChat returns the Official Account API client: the sender of WeChat
// messages, and the caller of the other Official Account APIs (Call).
func newWeChat(cfg config.Config, accounts *model.Accounts, rdb redis.UniversalClient, log *slog.Logger) *wechat.Sender {
	wxCfg := wechat.Config{Accounts: wechatAccounts{accounts}, Logger: log,
		APIBase: cfg.WeChatAPIBase, HTTPClient: wechat.NewHTTPClient(64, 10*time.Second)}
	if rdb != nil {
		wxCfg.Cache = wechat.NewRedisCache(rdb)
		// Validated with the configuration.
		event, message, _ := cfg.Allowance()
		rates, _ := cfg.Rates()
		wxCfg.Allowance = wechat.NewAllowance(rdb, wechat.AllowanceConfig{Event: event, Message: message})
		wxCfg.Holds = channels.NewHolds(rdb)
		wxCfg.Limiter = newLimiter(cfg, rdb)
		wxCfg.Rates = map[string]channels.Rate{}
		for _, api := range []string{wechat.APICustom, wechat.APITemplate, wechat.APISubscribe} {
			if r, ok := rates["wechat."+api]; ok {
				wxCfg.Rates[api] = r
			}
		}
	}
	return wechat.NewSender(wxCfg)
}

// newWeCom returns the WeCom API client: its access tokens are kept in
// Redis (shared by every process) when rdb is set.
func newWeCom(cfg config.Config, accounts *model.Accounts, rdb redis.UniversalClient, log *slog.Logger) *wecom.Client {
	env := wecom.Account{CorpID: cfg.WeComCorpID, AgentID: cfg.WeComAgentID, Secret: cfg.WeComSecret}
	wcCfg := wecom.Config{Accounts: wecomAccounts{a: accounts, envApp: defaultWeComApp(cfg), env: env}, Logger: log,
		APIBase: cfg.WeComAPIBase, HTTPClient: wechat.NewHTTPClient(16, 10*time.Second)}
	if rdb != nil {
		wcCfg.Cache = wechat.NewRedisCache(rdb)
	}
	return wecom.New(wcCfg)
}

// newCodes returns the service of QR codes and contact-me links.
func newCodes(cfg config.Config, db *gorm.DB, wx *wechat.Sender, wc *wecom.Client, log *slog.Logger) *codes.Service {
	return codes.New(codes.Config{DB: db, WeChat: wx, WeCom: wc, DefaultAppID: cfg.DefaultAppID(),
		DefaultWeComApp: defaultWeComApp(cfg), Logger: log})
}

// newEngine returns the journey engine over the app's database, queue and
// senders. In one process that takes callbacks and runs journeys
// (RoleAll), callbacks go first: the engine waits for the ingestor to calm.
func (a *App) newEngine(senders *channels.Registry) *journey.Engine {
	var gate func(context.Context)
	if a.Opts.Role == RoleAll {
		gate = func(ctx context.Context) { a.ingestor.WaitCalm(ctx, 250*time.Millisecond) }
	}
	mergeBy, _ := a.Cfg.MergeKinds() // validated
	caps, _ := a.Cfg.Caps()          // validated
	return journey.New(journey.Config{DB: a.DB, Queue: a.queue, Senders: senders, Logger: a.Log,
		Gate: gate, BaseContext: a.runCtx, Metrics: a.registry, Sources: a.sources,
		Inspector: asynq.NewInspectorFromRedisClient(a.rdb), MergeBy: mergeBy,
		Enrich: unionids{users: a.wechat, contacts: a.wecom}, Observe: a.observer(),
		FrequencyCaps: caps, QuietHours: a.Cfg.QuietHours})
}

// syncJourneys loads the journeys of WEJOURNEY_JOURNEYS_DIR. Demo journeys
// (demo: true) run in the sandbox, or where the operator chose them: never
// by surprise for a real account's followers. A journey that does not load
// is logged; the others run.
func (a *App) syncJourneys(ctx context.Context) {
	cfg := a.Cfg
	var syncOpts []journey.SyncOption
	switch {
	case cfg.DemoJourneys == "off":
		syncOpts = append(syncOpts, journey.RefuseDemo("WEJOURNEY_DEMO_JOURNEYS=off"))
	case cfg.DemoJourneys != "on" && !cfg.Sandbox():
		syncOpts = append(syncOpts, journey.RefuseDemo("the default account has real credentials; set WEJOURNEY_DEMO_JOURNEYS=on to keep it"))
	}
	if _, err := a.Engine.SyncDir(ctx, cfg.JourneysDir, syncOpts...); err != nil {
		a.Log.Error("some journeys were not loaded", "dir", cfg.JourneysDir, "err", err)
	}
}

// newHTTP returns the HTTP server of the app's role: the whole route table
// for RoleAll and RoleWeb, the probe routes alone for a worker.
func (a *App) newHTTP(ctx context.Context, accounts *model.Accounts) (*http.Server, error) {
	if a.Opts.Role == RoleWorker {
		h := handler.Probes(handler.ProbeConfig{Ready: a.ready, Registry: a.registry, Logger: a.Log})
		return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, nil
	}
	var secret model.Setting
	if err := a.DB.WithContext(ctx).Where(&model.Setting{Key: "session_secret"}).First(&secret).Error; err != nil {
		return nil, fmt.Errorf("load session secret: %w", err)
	}
	hc := handler.Config{
		DB: a.DB, Ingestor: a.ingestor, Accounts: accounts, Registry: a.registry, Logger: a.Log,
		Ready: a.ready, Sources: a.sources, Followers: a.followers,
		Admin: handler.NewAdmin(withAllowance(adminConfig(a.runCtx, a.DB, secret.Value, a.Cfg, a.Log), a.wechat)),
		Codes: newCodes(a.Cfg, a.DB, a.wechat, a.wecom, a.Log), Holds: channels.NewHolds(a.rdb), Senders: a.senders,
		SMSUplinkToken: a.Cfg.SMSUplinkToken, Journeys: a.Engine,
		Console: consoleSettings(a.Cfg, a.wechat, a.wecom), // console_settings.go
	}
	if a.Engine != nil {
		hc.TestRuns = a.Engine
	}
	// The events API's limit per key: shared by the web processes through
	// Redis (each process on its own while Redis is down), none with
	// WEJOURNEY_EVENTS_RATE=0.
	if perSecond, err := a.Cfg.EventsPerSecond(); err != nil {
		return nil, fmt.Errorf("WEJOURNEY_EVENTS_RATE: %w", err)
	} else if perSecond > 0 {
		hc.EventsLimiter = handler.NewRedisRateLimiter(a.rdb, perSecond)
	}
	if err := a.miniProgramConfig(ctx, &hc); err != nil {
		return nil, err
	}
	if err := a.emailConfig(ctx, &hc); err != nil {
		return nil, err
	}
	if err := subscribeLinkConfig(ctx, a.DB, a.Cfg.PublicURL, a.Cfg.DefaultAppID(), &hc); err != nil { // senders_wxsub.go
		return nil, err
	}
	h := handler.New(hc)
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}, nil
}

// analyzeFresh analyzes a new PostgreSQL database's hot tables once they
// hold some rows (model.AnalyzeFresh), checking every sweep interval until
// each has statistics. A failure (no privilege to ANALYZE) is logged once;
// autovacuum does it later.
func (a *App) analyzeFresh(ctx context.Context) {
	t := time.NewTicker(a.Opts.SweepInterval)
	defer t.Stop()
	for {
		pending, err := model.AnalyzeFresh(ctx, a.DB)
		if err != nil {
			if ctx.Err() == nil {
				a.Log.Warn("analyzing new tables failed; PostgreSQL's autovacuum will", "err", err)
			}
			return
		}
		if !pending {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newWorkers returns the asynq servers that run journey steps, one per
// queue, or nil for the web role. Each has its own slots: tasks in hand
// wait there for their batch, so a burst of marketing holding every slot of
// a shared server would keep a welcome code or a reply out until its batch
// is done (about a second on PostgreSQL). Welcome codes, then members' own
// actions, then marketing: a burst of marketing never delays a welcome.
// The database slots are shared, and urgent work takes them first.
func newWorkers(redisOpt asynq.RedisConnOpt, opts Options, log *slog.Logger) []*asynq.Server {
	if opts.Role == RoleWeb {
		return nil
	}
	queues := []struct {
		name        string
		concurrency int
	}{
		{journey.QueueUrgent, urgentConcurrency},
		{journey.QueueReply, opts.Concurrency},
		{journey.QueueMarketing, opts.Concurrency},
	}
	servers := make([]*asynq.Server, 0, len(queues))
	for _, q := range queues {
		servers = append(servers, asynq.NewServer(redisOpt, asynq.Config{
			Concurrency:              q.concurrency,
			Queues:                   map[string]int{q.name: 1},
			TaskCheckInterval:        20 * time.Millisecond,
			DelayedTaskCheckInterval: time.Second,
			Logger:                   asynqLogger{log},
			LogLevel:                 asynq.WarnLevel,
			ShutdownTimeout:          10 * time.Second,
			// Step and routing tasks retry after 1, 2, 4, then every 8
			// seconds: after an outage, waits end on time.
			RetryDelayFunc: journey.RetryDelay,
		}))
	}
	return servers
}

// urgentConcurrency is how many urgent tasks (welcome codes) a worker holds
// at once: WeCom adds come one by one, far below the other queues' bursts.
const urgentConcurrency = 32

// Bounds of each dependency check of /readyz: together under the 1 s a
// Kubernetes probe waits by default (the checks run side by side).
const (
	readyDBTimeout    = 800 * time.Millisecond
	readyRedisTimeout = 500 * time.Millisecond
)

// ready reports whether this process can do its role's work. Errors start
// with "database:" or "redis:" and name nothing else a caller should see
// first. The worker role needs both. The web role, and --role=all, need
// only the database: callbacks and API events are stored there and
// acknowledged while Redis is down (the sweeper routes them once it is
// back), so an unreachable Redis is logged as degraded, not unready.
func (a *App) ready(r *http.Request) error {
	rctx, rcancel := context.WithTimeout(r.Context(), readyRedisTimeout)
	defer rcancel()
	redisErr := make(chan error, 1)
	go func() { redisErr <- a.rdb.Ping(rctx).Err() }()
	sqlDB, err := a.DB.DB()
	if err != nil {
		return &handler.DependencyError{Dependency: "database", Err: err}
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyDBTimeout)
	defer cancel()
	if err := sqlDB.PingContext(ctx); err != nil {
		return &handler.DependencyError{Dependency: "database", Err: err}
	}
	if err := <-redisErr; err != nil {
		if a.Opts.Role == RoleWorker {
			return &handler.DependencyError{Dependency: "redis", Err: err}
		}
		a.Log.Warn("readiness: Redis does not answer; callbacks are still stored and acknowledged, routing and journeys wait until it is back",
			"role", a.Opts.Role, "degraded", "redis", "err", err)
	}
	return nil
}

// bootstrap seeds what a start needs: the default Official Account, the
// default WeCom app (when WEJOURNEY_WECOM_CORPID is set), the admin
// password and API key from the environment, the session secret.
func (a *App) bootstrap(ctx context.Context) error {
	db := a.DB.WithContext(ctx)
	cfg := a.Cfg
	acct := model.Account{Kind: model.AccountWeChatOA, AppID: cfg.DefaultAppID(), Name: "default",
		AppSecret: cfg.WeChatAppSecret, Token: cfg.DefaultToken(), AESKey: cfg.WeChatAESKey}
	if err := model.UpsertAccount(db, a.secrets, acct); err != nil {
		return fmt.Errorf("seed account: %w", err)
	}
	if id := defaultWeComApp(cfg); id != "" {
		wecom := model.Account{Kind: model.AccountWeCom, AppID: id, Name: "default WeCom app",
			AppSecret: cfg.WeComSecret, Token: cfg.WeComToken, AESKey: cfg.WeComAESKey}
		if err := model.UpsertAccount(db, a.secrets, wecom); err != nil {
			return fmt.Errorf("seed WeCom app: %w", err)
		}
	}
	// Every seed is an insert that does nothing when the row exists, so
	// several processes may start at once (web and worker roles). The
	// environment's credentials are authoritative when set; the first admin
	// without one is created by Start, once the server listens.
	if cfg.AdminPassword != "" {
		if err := syncEnvPassword(ctx, a.DB, cfg.AdminPassword, a.Log); err != nil {
			return err
		}
	}
	if cfg.APIKey != "" {
		if err := syncEnvAPIKey(ctx, a.DB, cfg.APIKey, a.Log); err != nil {
			return err
		}
	}
	if err := model.InsertIgnore(db).Create(&model.Setting{Key: "session_secret", Value: randomHex(32)}).Error; err != nil {
		return fmt.Errorf("seed session secret: %w", err)
	}
	return a.bootstrapMiniProgram(ctx)
}

// miniProgramTokenSecret is the settings row whose value signs
// mini-program session tokens, the same in every process.
const miniProgramTokenSecret = "miniprogram_token_secret"

// bootstrapMiniProgram seeds the key that signs mini-program session
// tokens and, with WEJOURNEY_MINIPROGRAM_APPID, the mini-program's account
// (code2session reads its AppSecret from there).
func (a *App) bootstrapMiniProgram(ctx context.Context) error {
	db := a.DB.WithContext(ctx)
	if err := model.InsertIgnore(db).Create(&model.Setting{Key: miniProgramTokenSecret, Value: randomHex(32)}).Error; err != nil {
		return fmt.Errorf("seed mini-program token secret: %w", err)
	}
	if a.Cfg.MiniProgramAppID == "" {
		return nil
	}
	acct := model.Account{Kind: model.AccountMiniProgram, AppID: a.Cfg.MiniProgramAppID, Name: "mini-program",
		AppSecret: a.Cfg.MiniProgramAppSecret}
	if err := model.UpsertAccount(db, a.secrets, acct); err != nil {
		return fmt.Errorf("seed mini-program account: %w", err)
	}
	return nil
}

// miniProgramConfig fills in the handler's mini-program fields when
// WEJOURNEY_MINIPROGRAM_APPID is set.
func (a *App) miniProgramConfig(ctx context.Context, hc *handler.Config) error {
	if a.Cfg.MiniProgramAppID == "" {
		return nil
	}
	var secret model.Setting
	if err := a.DB.WithContext(ctx).Where(&model.Setting{Key: miniProgramTokenSecret}).First(&secret).Error; err != nil {
		return fmt.Errorf("load mini-program token secret: %w", err)
	}
	hc.MiniProgram = miniProgramSessions{wx: a.wechat, appid: a.Cfg.MiniProgramAppID}
	hc.MiniProgramAppID = a.Cfg.MiniProgramAppID
	hc.MiniProgramSecret = []byte(secret.Value)
	return nil
}

// Start serves HTTP and runs the worker and sweeper in the background.
func (a *App) Start(context.Context) error {
	ctx := a.runCtx
	var ln net.Listener
	if a.http != nil {
		// Listen first: a taken port fails the start before any work runs.
		ln = a.Opts.Listener
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", a.Cfg.HTTPAddr); err != nil {
				return fmt.Errorf("listen: %w", err)
			}
		}
		a.Addr = ln.Addr().String()
		if a.Opts.Role != RoleWorker && a.Cfg.AdminPassword == "" {
			// Only now: a start that cannot listen creates no password nobody saw.
			pw, err := createFirstAdmin(ctx, a.DB)
			if err != nil {
				ln.Close()
				return err
			}
			a.AdminPassword = pw
		}
	}
	if a.mini != nil {
		// miniredis's TTLs move only when its clock does.
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					a.mini.SetTime(time.Now())
					a.mini.FastForward(time.Second)
				}
			}
		}()
	}
	if a.workers != nil {
		mux := asynq.NewServeMux()
		a.Engine.Register(mux)
		for _, w := range a.workers {
			if err := w.Start(mux); err != nil {
				return fmt.Errorf("start worker: %w", err)
			}
		}
		if a.mini != nil {
			// The in-process Redis starts empty: put every open step back.
			if n, err := a.Engine.Recover(ctx); err != nil {
				a.Log.Error("recovering open steps", "err", err)
			} else if n > 0 {
				a.Log.Info("re-enqueued open steps after start", "visits", n)
			}
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.Engine.RunSweeper(ctx, a.Opts.SweepInterval)
		}()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.analyzeFresh(ctx)
		}()
	}
	if a.http != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.Log.Error("http server", "err", err)
			}
		}()
	}
	return nil
}

// Close shuts down in order: HTTP (finishing in-flight callbacks), the
// ingestor, the worker, the background loops, the queue, Redis, the database.
func (a *App) Close() {
	a.closeOnce.Do(func() {
		if a.http != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.http.Shutdown(sctx)
			cancel()
		}
		if a.followers != nil {
			a.followers.Close() // progress is saved; the next sync resumes
		}
		if a.ingestor != nil {
			a.ingestor.Close()
		}
		var wg sync.WaitGroup
		for _, w := range a.workers {
			wg.Go(w.Shutdown) // each waits up to its ShutdownTimeout
		}
		wg.Wait()
		if a.cancel != nil {
			a.cancel()
		}
		a.wg.Wait()
		if a.queue != nil {
			a.queue.Close()
		}
		if a.rdb != nil {
			a.rdb.Close()
		}
		if a.mini != nil {
			a.mini.Close()
		}
		if a.DB != nil {
			if sqlDB, err := a.DB.DB(); err == nil {
				sqlDB.Close()
			}
		}
	})
}

// parseRedisURL reads asynq's URL forms (redis://, rediss://,
// redis-socket://, redis-sentinel://host1:26379,host2:26379?master=name)
// plus redis-cluster://[:password@]host1:6379,host2:6379 for Redis Cluster.
func parseRedisURL(raw string) (asynq.RedisConnOpt, error) {
	rest, ok := strings.CutPrefix(raw, "redis-cluster://")
	if !ok {
		return asynq.ParseRedisURI(raw)
	}
	var opt asynq.RedisClusterClientOpt
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		cred := rest[:at]
		rest = rest[at+1:]
		if user, pass, found := strings.Cut(cred, ":"); found {
			opt.Username, opt.Password = user, pass
		} else {
			opt.Password = cred
		}
	}
	rest, _, _ = strings.Cut(rest, "/")
	for _, h := range strings.Split(rest, ",") {
		if h = strings.TrimSpace(h); h != "" {
			opt.Addrs = append(opt.Addrs, h)
		}
	}
	if len(opt.Addrs) == 0 {
		return nil, errors.New("redis-cluster:// needs at least one host:port")
	}
	return opt, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// openSecrets returns the box that encrypts account secrets at rest, with
// the keys of WEJOURNEY_SECRET_KEY or, on SQLite without one, the key kept in
// secret.key beside the database file (generated on the first start). It
// checks that every stored account opens under the keys, and re-encrypts
// under the first key those stored in plaintext or under an older key.
func openSecrets(ctx context.Context, cfg config.Config, dialect, dsn string, db *gorm.DB, log *slog.Logger) (*model.SecretBox, error) {
	keys, err := cfg.SecretKeys() // validated in NewApp
	if err != nil {
		return nil, fmt.Errorf("WEJOURNEY_SECRET_KEY: %w", err)
	}
	keyFile := ""
	if len(keys) == 0 {
		if dialect != "sqlite" {
			return nil, fmt.Errorf("WEJOURNEY_SECRET_KEY is required with %s", dialect)
		}
		raw := make([]byte, 32)
		if dsn == ":memory:" {
			rand.Read(raw) // the database dies with the process; so may its key
		} else {
			keyFile = filepath.Join(filepath.Dir(dsn), "secret.key")
			key, created, err := model.LoadOrCreateKeyFile(keyFile)
			if err != nil {
				return nil, fmt.Errorf("WEJOURNEY_SECRET_KEY is not set: %w", err)
			}
			if created {
				log.Info("generated the key that encrypts account secrets; back it up with the database, or set WEJOURNEY_SECRET_KEY", "file", keyFile)
			} else {
				log.Info("account secrets are encrypted with the key in the data directory (WEJOURNEY_SECRET_KEY is not set)", "file", keyFile)
			}
			if keys, err = (config.Config{SecretKey: key}).SecretKeys(); err != nil || len(keys) == 0 {
				return nil, fmt.Errorf("%s does not hold a secret key (32 bytes of base64): delete it only if no account secrets were stored with it", keyFile)
			}
			raw = keys[0]
		}
		keys = [][]byte{raw}
	}
	box, err := model.NewSecretBox(keys)
	if err != nil {
		return nil, err
	}
	n, err := model.ReencryptAccounts(db.WithContext(ctx), box)
	if err != nil {
		if errors.Is(err, model.ErrWrongSecretKey) && keyFile != "" {
			return nil, fmt.Errorf("%w; the key was read from %s", err, keyFile)
		}
		return nil, err
	}
	if n > 0 {
		log.Info("re-encrypted account secrets with the first WEJOURNEY_SECRET_KEY; older keys can now be dropped", "accounts", n)
	}
	return box, nil
}

// wechatAccounts adapts the model's account lookup to the WeChat sender.
type wechatAccounts struct{ a *model.Accounts }

// Account returns the WeChat credentials of appid, secrets decrypted. With
// no accounts (a sender built only to name its channels) every appid is
// unknown.
func (w wechatAccounts) Account(ctx context.Context, appid string) (wechat.Account, error) {
	if w.a == nil {
		return wechat.Account{}, fmt.Errorf("%w: %s: no database", wechat.ErrUnknownAccount, appid)
	}
	acct, err := w.a.Get(ctx, appid)
	if errors.Is(err, model.ErrUnknownAccount) {
		return wechat.Account{}, fmt.Errorf("%w: %w", wechat.ErrUnknownAccount, err)
	}
	if err != nil {
		return wechat.Account{}, err
	}
	return wechat.Account{AppID: acct.AppID, AppSecret: acct.AppSecret, Token: acct.Token, AESKey: acct.AESKey}, nil
}

// wecomAccounts looks WeCom apps ("corpid/agentid", model.AccountWeCom) up
// through the cached account lookup, secrets decrypted; the environment's
// default app (WEJOURNEY_WECOM_*) is used when the database has no row for
// it.
type wecomAccounts struct {
	a      *model.Accounts // nil: only the environment's app
	envApp string          // the environment's "corpid/agentid", or ""
	env    wecom.Account   // its credentials
}

// Account returns the credentials of app.
func (w wecomAccounts) Account(ctx context.Context, app string) (wecom.Account, error) {
	var acct model.Account
	err := model.ErrUnknownAccount
	if w.a != nil {
		acct, err = w.a.Get(ctx, app)
	}
	if err == nil && acct.Kind != model.AccountWeCom {
		err = model.ErrUnknownAccount
	}
	if errors.Is(err, model.ErrUnknownAccount) {
		if app != "" && app == w.envApp {
			return w.env, nil
		}
		return wecom.Account{}, fmt.Errorf("%w: %s", wecom.ErrUnknownAccount, app)
	}
	if err != nil {
		return wecom.Account{}, fmt.Errorf("load WeCom app %s: %w", app, err)
	}
	corp, agent, _ := strings.Cut(app, "/")
	return wecom.Account{CorpID: corp, AgentID: agent, Secret: acct.AppSecret}, nil
}

// logSender records messages of channels that have no provider configured
// (email without SMTP; SMS has its own development log provider in
// channels/sms).
type logSender struct{ log *slog.Logger }

// Send logs msg and reports it as sandboxed.
func (l logSender) Send(_ context.Context, msg channels.Message) (channels.Result, error) {
	l.log.Info(msg.Channel+" (log provider): would send", "to", msg.To, "template", msg.TemplateID+msg.Template, "text", msg.Text, "data", msg.Data)
	return channels.Result{Sandbox: true}, nil
}

// asynqLogger sends asynq's logs to slog.
type asynqLogger struct{ l *slog.Logger }

// Debug, Info, Warn, Error and Fatal implement asynq.Logger; Fatal does not exit.
func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq", "fatal", true)
}
