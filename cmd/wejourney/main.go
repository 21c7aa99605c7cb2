// Command wejourney is the WeChat customer-journey engine: one binary whose
// subcommands serve (default), migrate the database, validate journeys,
// simulate WeChat callbacks and benchmark the whole path.
//
//	wejourney [serve] [--role=all|web|worker] [--config wejourney.yaml]
//	wejourney migrate
//	wejourney journeys validate FILE...
//	wejourney admin passwd [USER] [--password-stdin]
//	wejourney apikeys create --name NAME [--scope events|admin] | list | revoke ID
//	wejourney simulate subscribe|scan|click|text|unsubscribe|view|location [flags]
//	wejourney bench [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wejourney:", redact.String(err.Error()))
		os.Exit(1)
	}
}

const usage = `wejourney — WeChat customer journeys

usage:
  wejourney [serve] [--role=all|web|worker]   run the server (default: everything in one process)
  wejourney migrate                          bring the database schema up to date
  wejourney journeys validate FILE...        check journey YAML files
  wejourney simulate KIND [flags]            send a signed WeChat callback to a running server
                                             KIND: subscribe, scan, click, view, text, unsubscribe, location
  wejourney bench [flags]                    measure callbacks and follow → message latency
  wejourney admin passwd [USER] [--password-stdin]
                                             set (or create) an admin's password; ends its sessions
  wejourney apikeys create --name NAME [--scope events|admin]
                                             make an API key (printed once)
  wejourney apikeys list                     list API keys (never the keys themselves)
  wejourney apikeys revoke ID                revoke an API key: it gets 401 from now on

Every command reads wejourney.yaml (if present; --config names another) and
the WEJOURNEY_* environment variables.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCmd(ctx, args, stdout, stderr)
	case "migrate":
		return migrateCmd(args, stdout)
	case "journeys":
		return journeysCmd(args, stdout)
	case "simulate":
		return simulateCmd(ctx, args, stdout)
	case "bench":
		return benchCmd(ctx, args, stdout, stderr)
	case "admin":
		return adminCmd(ctx, args, os.Stdin, stdout, stderr)
	case "apikeys":
		return apikeysCmd(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// loadConfig reads the configuration every subcommand shares.
func loadConfig(fs *flag.FlagSet, args []string) (config.Config, error) {
	file := fs.String("config", config.DefaultFile, "configuration file (yaml)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	return config.Load(*file, nil)
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	role := fs.String("role", RoleAll, "all, web (callbacks, API, admin) or worker (journeys)")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
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
	if cfg.Sandbox() {
		fmt.Fprintln(w, "  sandbox:  no WEJOURNEY_WECHAT_APPSECRET, so messages are logged and listed in the admin page, not sent")
	}
	fmt.Fprintln(w, "  try:      go run ./cmd/wejourney simulate subscribe --scene store_001")
}

func migrateCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	dialect, dsn, err := config.ParseDatabaseURL(cfg.DatabaseURL)
	if err != nil {
		return err
	}
	db, err := model.Open(dialect, dsn)
	if err != nil {
		return err
	}
	if err := model.Migrate(db); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database %s is at schema %s\n", redact.String(cfg.DatabaseURL), model.Migrations()[len(model.Migrations())-1].ID)
	return nil
}

func journeysCmd(args []string, stdout io.Writer) error {
	if len(args) < 2 || args[0] != "validate" {
		return errors.New("usage: wejourney journeys validate FILE [FILE]")
	}
	var errs []error
	for _, f := range args[1:] {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := journey.Parse(f, src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (journey %q, %d steps, trigger %s)\n", f, c.Def.Key, len(c.Def.Steps), c.Def.Trigger.Event)
	}
	return errors.Join(errs...)
}
