// Command wejourney is the WeChat customer-journey engine: one binary whose
// subcommands serve (default), migrate the database, validate journeys,
// simulate WeChat callbacks, benchmark the whole path and manage the admin
// password and API keys.
//
//	wejourney [serve] [--role=all|web|worker] [--config wejourney.yaml]
//	wejourney migrate
//	wejourney journeys validate FILE|DIR...
//	wejourney journeys publish FILE | pause KEY | resume KEY | archive KEY
//	wejourney admin passwd [USER] [--password-stdin]
//	wejourney users add USER [--role viewer|operator|admin] [--password-stdin] | list | role USER ROLE | remove USER
//	wejourney apikeys create --name NAME [--scope events|admin] | list | revoke ID
//	wejourney qrcodes create --scene S --label L [flags] | list | png ID FILE
//	wejourney contact-ways create --state S --user U --label L [flags] | list
//	wejourney followers sync [--appid APPID] [--restart]
//	wejourney simulate subscribe|scan|click|text|unsubscribe|view|location|template_sent [flags]
//	wejourney bench [flags]
//	wejourney help [COMMAND] | version
//
// Every command takes -h or --help: it prints the command's usage and flags
// and exits 0.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

func main() {
	// Process-wide settings of libraries, once: gin's mode, and silenceper's
	// logrus (set to debug at import, it would log every callback body).
	gin.SetMode(gin.ReleaseMode)
	wechat.SilenceSDK()
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wejourney:", redact.String(err.Error()))
		os.Exit(1)
	}
}

const usage = `wejourney — WeChat customer journeys

usage:
  wejourney [serve] [--role=all|web|worker]   run the server (default: everything in one process)
  wejourney migrate                          bring the database schema up to date
  wejourney journeys validate FILE|DIR...    check journey YAML files (a directory: its *.yaml and *.yml)
  wejourney journeys publish FILE            make a journey file the live version of its journey
  wejourney journeys pause|resume|archive KEY
                                             pause a journey (holds its members' due steps), resume it, or end it
  wejourney simulate KIND [flags]            send a signed WeChat callback to a running server
                                             KIND: subscribe, scan, click, view, text, unsubscribe, location, template_sent
  wejourney bench [flags]                    measure callbacks and follow → message latency
  wejourney admin passwd [USER] [--password-stdin]
                                             set (or create) an admin's password; ends its sessions
  wejourney users add USER [--role viewer|operator|admin] [--password-stdin]
                                             add a console user (default role viewer) with an initial password
  wejourney users list                       list console users, their roles and status
  wejourney users role USER ROLE             change a user's role (the last admin cannot be demoted)
  wejourney users remove USER                remove a user and end their sessions (never the last admin)
  wejourney apikeys create --name NAME [--scope events|admin]
                                             make an API key (printed once)
  wejourney apikeys list                     list API keys (never the keys themselves)
  wejourney apikeys revoke ID                revoke an API key: it gets 401 from now on
  wejourney qrcodes create --scene S --label L [--channel C] [--permanent | --expire 720h] [--appid A] [--png FILE]
                                             make an Official Account QR code whose follows and scans carry the scene
  wejourney qrcodes list [--appid A]         list QR codes with their follows, scans, members, first and last touch
  wejourney qrcodes png ID FILE              write a QR code's image (PNG)
  wejourney contact-ways create --state S --user U [--user U2] --label L [--channel C] [--app corpid/agentid] [--png FILE]
                                             make a WeCom contact-me link whose adds carry the state
  wejourney contact-ways list                list contact-me links with their adds, members, first and last touch
  wejourney followers sync [--appid APPID] [--restart]
                                             import the Official Account's existing followers (resumes a stopped sync)
  wejourney channels                         list the channels this configuration serves and who delivers each
  wejourney channels test CHANNEL --to ADDRESS [--text T] [--template T] [--param k=v]... [--extra k=v]... [--appid A]
                                             send one test message outside any journey; exit 1 when refused
  wejourney help [COMMAND]                   this text, or a command's usage and flags
  wejourney version                          the version of this binary (also --version)

Every command reads wejourney.yaml (if present; --config names another) and
the WEJOURNEY_* environment variables. ` + "`wejourney COMMAND --help`" + ` lists a
command's flags.
`

// run runs the command args name, writing to stdout and stderr. A command
// asked for its help (-h, --help) prints it to stdout and returns nil.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			if args[0] == "help" && len(args) > 1 {
				// `wejourney help CMD` is `wejourney CMD --help`.
				return dispatch(ctx, append(slices.Clone(args[1:]), "--help"), stdout, stderr)
			}
			_, err := fmt.Fprint(stdout, usage)
			return err
		case "version", "-version", "--version":
			return printVersion(stdout)
		}
		if !strings.HasPrefix(args[0], "-") {
			cmd, args = args[0], args[1:]
		}
	}
	switch cmd {
	case "serve":
		return serveCmd(ctx, args, stdout, stderr)
	case "migrate":
		return migrate(args, stdout, stderr)
	case "journeys":
		if len(args) > 0 && args[0] == "test" {
			return journeysTestCmd(ctx, args[1:], stdout, stderr)
		}
		return journeysCmd(ctx, args, stdout, stderr)
	case "simulate":
		return simulateCmd(ctx, args, stdout, stderr)
	case "bench":
		return benchCmd(ctx, args, stdout, stderr)
	case "admin":
		return adminCmd(ctx, args, os.Stdin, stdout, stderr)
	case "apikeys":
		return apikeysCmd(ctx, args, stdout, stderr)
	case "users":
		return usersCmd(ctx, args, os.Stdin, stdout, stderr)
	case "qrcodes":
		return qrcodesCmd(ctx, args, stdout, stderr)
	case "contact-ways":
		return contactWaysCmd(ctx, args, stdout, stderr)
	case "followers":
		return followersCmd(ctx, args, stdout, stderr)
	case "channels":
		return channelsCmd(ctx, args, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q (see wejourney help)", cmd)
}

// printVersion prints the module version this binary was built from and,
// when the build recorded them, its commit, commit time and whether the
// work tree was modified; "(devel)" for a build outside a module version.
func printVersion(w io.Writer) error {
	version, goVersion, vcs := "(devel)", "", []string(nil)
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		goVersion = info.GoVersion
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision":
				vcs = append(vcs, "commit "+s.Value)
			case s.Key == "vcs.time":
				vcs = append(vcs, s.Value)
			case s.Key == "vcs.modified" && s.Value == "true":
				vcs = append(vcs, "modified")
			}
		}
	}
	line := "wejourney " + version
	if len(vcs) > 0 {
		line += " (" + strings.Join(vcs, ", ") + ")"
	}
	if goVersion != "" {
		line += " " + goVersion
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// newFlags returns the flags of the command `wejourney synopsis`, with
// --config, which every command reads. about says what the command does.
// Parse errors and their usage go to stderr; see parseFlags for -h.
func newFlags(synopsis, about string, stderr io.Writer) *flag.FlagSet {
	name, _, _ := strings.Cut(synopsis, " -")
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", config.DefaultFile, "configuration `file` (yaml); the WEJOURNEY_* environment variables override it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: wejourney %s\n\n%s\n\nflags:\n", synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// printHelp prints fs's usage to w.
func printHelp(fs *flag.FlagSet, w io.Writer) error {
	out := fs.Output()
	fs.SetOutput(w)
	fs.Usage()
	fs.SetOutput(out)
	return flag.ErrHelp
}

// parseFlags parses args into fs. Asked for help (-h, --help), it prints
// the usage to stdout and returns flag.ErrHelp, which run turns into a
// success; a parse error prints it with the usage to fs's output (stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	stderr := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	if errors.Is(err, flag.ErrHelp) {
		buf.WriteTo(stdout)
		return flag.ErrHelp
	}
	buf.WriteTo(stderr)
	return err
}

// loadConfig parses args into fs (see parseFlags) and reads the
// configuration every subcommand shares: the --config file and the
// environment.
func loadConfig(fs *flag.FlagSet, args []string, stdout io.Writer) (config.Config, error) {
	file := fs.Lookup("config")
	if file == nil {
		fs.String("config", config.DefaultFile, "configuration `file` (yaml)")
		file = fs.Lookup("config")
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return config.Config{}, err
	}
	return config.Load(file.Value.String(), nil)
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("[serve] [--role=all|web|worker] [--config FILE]",
		"Runs the server: WeChat callbacks, the events API and the admin page (web), journeys (worker), or both (all).", stderr)
	role := fs.String("role", RoleAll, "all, web (callbacks, API, admin) or worker (journeys)")
	cfg, err := loadConfig(fs, args, stdout)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q (see wejourney help)", fs.Arg(0))
	}
	if *role != RoleAll && *role != RoleWeb && *role != RoleWorker {
		return fmt.Errorf("--role: want all, web or worker, got %q", *role)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	// Every line passes through redact: no token, secret or password is logged.
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The embedded default migrates itself; production runs `wejourney migrate`.
	embedded := strings.HasPrefix(cfg.DatabaseURL, "sqlite:")
	app, err := NewApp(ctx, cfg, Options{Role: *role, Logger: logger, AutoMigrate: embedded})
	if err != nil {
		return err
	}
	defer app.Close()
	if err := app.Start(ctx); err != nil {
		return err
	}
	printBanner(stdout, app)
	<-ctx.Done()
	logger.Info("shutting down: HTTP, then worker, then database")
	app.Close()
	return nil
}

func printBanner(w io.Writer, app *App) {
	cfg := app.Cfg
	redisDesc := redact.String(cfg.RedisURL)
	if redisDesc == "" {
		redisDesc = "in-process Redis"
	}
	fmt.Fprintf(w, "wejourney %s is running (database %s, %s)\n", app.Opts.Role, redact.String(cfg.DatabaseURL), redisDesc)
	if app.Addr == "" {
		return
	}
	base := "http://" + app.Addr
	if app.Opts.Role != RoleWorker {
		pw := "as shown at the first start (change it with `wejourney admin passwd`)"
		if app.AdminPassword != "" {
			pw = app.AdminPassword + "   (generated: shown once, note it; change it with `wejourney admin passwd`)"
		} else if cfg.AdminPassword != "" {
			pw = "from WEJOURNEY_ADMIN_PASSWORD"
		}
		fmt.Fprintf(w, "  admin:    %s/admin/   user admin, password %s\n", base, pw)
	}
	fmt.Fprintf(w, "  callback: %s/wechat/oa/%s   token %q", base, cfg.DefaultAppID(), cfg.DefaultToken())
	if cfg.WeChatAESKey != "" {
		fmt.Fprint(w, ", safe mode (AES)")
	}
	fmt.Fprintln(w)
	if id := defaultWeComApp(cfg); id != "" {
		fmt.Fprintf(w, "  wecom:    %s/wechat/work/%s   (企业微信: the app's 接收消息 URL, and 客户联系 → API)\n", base, id)
	}
	printSMSBanner(w, cfg, base)
	if cfg.Sandbox() {
		fmt.Fprintln(w, "  sandbox:  no WEJOURNEY_WECHAT_APPSECRET, so messages are logged and listed in the admin page, not sent")
	}
	fmt.Fprintln(w, "  try:      go run ./cmd/wejourney simulate subscribe --scene store_001")
}

// migrateCmd runs `wejourney migrate`, its parse errors to standard error.
func migrateCmd(args []string, stdout io.Writer) error {
	return migrate(args, stdout, os.Stderr)
}

func migrate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate [--config FILE]",
		"Brings the database of WEJOURNEY_DATABASE_URL up to the schema this binary needs.", stderr)
	cfg, err := loadConfig(fs, args, stdout)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate takes no arguments, got %q", fs.Arg(0))
	}
	_, closeDB, err := openDatabase(cfg, true)
	if err != nil {
		return err
	}
	closeDB()
	fmt.Fprintf(stdout, "database %s is at schema %s\n", redact.String(cfg.DatabaseURL), model.Migrations()[len(model.Migrations())-1].ID)
	return nil
}

const validateSynopsis = "journeys validate [--config FILE] FILE|DIR..."

// journeysCmd runs `wejourney journeys validate FILE|DIR...`: it parses
// every journey as the server would load it, with the channels this
// configuration has senders for, and prints one line per valid journey.
// A directory stands for its *.yaml and *.yml files, as the server reads
// WEJOURNEY_JOURNEYS_DIR. publish, pause, resume and archive act on the
// database (journeyLifecycleCmd).
func journeysCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "publish", "pause", "resume", "archive":
			return journeyLifecycleCmd(ctx, args, stdout, stderr)
		}
	}
	fs := newFlags(validateSynopsis,
		"Checks journey files: their YAML, steps, expressions and channels (against the senders this configuration has).\nA directory stands for its *.yaml and *.yml files, as the server reads WEJOURNEY_JOURNEYS_DIR.\n"+
			"See also: journeys publish FILE, pause KEY, resume KEY, archive KEY (each with --help).", stderr)
	if len(args) == 0 || args[0] != "validate" {
		if len(args) > 0 && isHelp(args[0]) {
			return printHelp(fs, stdout)
		}
		return errors.New("usage: wejourney " + validateSynopsis + "\n   or: " + strings.TrimPrefix(lifecycleUsage, "usage: "))
	}
	cfg, paths, err := parseInterspersed(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return errors.New("usage: wejourney " + validateSynopsis)
	}
	files, err := journeyFiles(paths)
	if err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	reg, err := buildSenders(senderDeps{cfg: cfg, wechat: newWeChat(cfg, nil, nil, quiet), wecom: newWeCom(cfg, nil, nil, quiet), log: quiet})
	if err != nil {
		return err
	}
	var errs []error
	keys := map[string]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := parseJourney(reg, f, src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := keys[c.Def.Key]; dup {
			errs = append(errs, fmt.Errorf("%s: key %q is also used by %s", f, c.Def.Key, prev))
			continue
		}
		keys[c.Def.Key] = f
		fmt.Fprintf(stdout, "%s: ok (journey %q, %d steps, trigger %s)\n", f, c.Def.Key, len(c.Def.Steps), c.TriggerSummary())
	}
	return errors.Join(errs...)
}

// journeyFiles expands paths: a file stands for itself, a directory for its
// *.yaml and *.yml files in sorted order (as journey.LoadDir reads one).
func journeyFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		var in []string
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, err := filepath.Glob(filepath.Join(p, pat))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			in = append(in, m...)
		}
		if len(in) == 0 {
			return nil, fmt.Errorf("%s: no *.yaml or *.yml files", p)
		}
		sort.Strings(in)
		files = append(files, in...)
	}
	return files, nil
}

// parseJourney parses one journey file as `journeys validate` checks it: a
// channel without a sender in reg is an error.
func parseJourney(reg *channels.Registry, name string, src []byte) (*journey.Compiled, error) {
	return journey.Parse(name, src, journey.WithChannels(reg))
}
