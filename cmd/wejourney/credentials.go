package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/model"
)

// EnvAPIKeyName names the API key that WEJOURNEY_API_KEY sets.
const EnvAPIKeyName = handler.EnvAPIKeyName

// FirstAdmin is the user a first start creates.
const FirstAdmin = "admin"

// adminConfig is the admin page's configuration for a serve process.
func adminConfig(ctx context.Context, db *gorm.DB, secret string, cfg config.Config, log *slog.Logger) handler.AdminConfig {
	proxies, _ := cfg.Proxies() // checked by cfg.Validate
	return handler.AdminConfig{DB: db, Secret: []byte(secret), Sandbox: cfg.Sandbox(), CookieSecure: cfg.CookieSecure,
		PublicURL: cfg.PublicURL, TrustedProxies: proxies, Context: ctx, Logger: log}
}

// setPassword gives user the password pw, creating the user if missing
// (with role admin; an existing user keeps its role). Sessions signed in
// with the old password end at their next request.
func setPassword(ctx context.Context, db *gorm.DB, user, pw string) (created bool, err error) {
	hash, err := handler.HashPassword(pw)
	if err != nil {
		return false, err
	}
	res := model.InsertIgnore(db.WithContext(ctx)).Create(&model.AdminUser{Username: user, PasswordHash: hash, Role: model.RoleAdmin})
	if res.Error != nil {
		return false, fmt.Errorf("create admin %s: %w", user, res.Error)
	}
	if res.RowsAffected == 1 {
		return true, nil
	}
	err = db.WithContext(ctx).Model(&model.AdminUser{}).Where("username = ?", user).Update("password_hash", hash).Error
	if err != nil {
		return false, fmt.Errorf("set password of %s: %w", user, err)
	}
	return false, nil
}

// syncEnvPassword makes WEJOURNEY_ADMIN_PASSWORD the password of user
// admin: created if missing, replaced (ending its sessions) if different.
func syncEnvPassword(ctx context.Context, db *gorm.DB, pw string, log *slog.Logger) error {
	if len(pw) < handler.MinPasswordLength {
		log.Warn("WEJOURNEY_ADMIN_PASSWORD is short: use at least 8 characters", "length", len(pw))
	}
	var u model.AdminUser
	err := db.WithContext(ctx).Where(&model.AdminUser{Username: FirstAdmin}).Take(&u).Error
	if err == nil && handler.PasswordMatches(u.PasswordHash, pw) {
		return nil
	}
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("load admin: %w", err)
	}
	created, err := setPassword(ctx, db, FirstAdmin, pw)
	if err != nil {
		return fmt.Errorf("WEJOURNEY_ADMIN_PASSWORD: %w", err)
	}
	if !created {
		log.Info("admin password set from WEJOURNEY_ADMIN_PASSWORD; admin's earlier sessions have ended")
	}
	return nil
}

// createFirstAdmin creates user admin with a random password when there is
// no admin user at all, and returns the password when this call created it.
// Processes starting together race safely: one insert wins.
func createFirstAdmin(ctx context.Context, db *gorm.DB) (string, error) {
	var n int64
	if err := db.WithContext(ctx).Model(&model.AdminUser{}).Count(&n).Error; err != nil {
		return "", fmt.Errorf("count admin users: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	pw := randomHex(8)
	hash, err := handler.HashPassword(pw)
	if err != nil {
		return "", err
	}
	res := model.InsertIgnore(db.WithContext(ctx)).Create(&model.AdminUser{Username: FirstAdmin, PasswordHash: hash, Role: model.RoleAdmin})
	if res.Error != nil {
		return "", fmt.Errorf("create admin: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return "", nil
	}
	return pw, nil
}

// syncEnvAPIKey makes WEJOURNEY_API_KEY the key named WEJOURNEY_API_KEY
// (scope events) and revokes an earlier one with another value. A value
// revoked with `apikeys revoke` stays revoked.
func syncEnvAPIKey(ctx context.Context, db *gorm.DB, key string, log *slog.Logger) error {
	db = db.WithContext(ctx)
	now := time.Now().UTC()
	hash := handler.HashAPIKey(key)
	k := model.APIKey{Name: EnvAPIKeyName, Hash: hash, Scope: model.ScopeEvents, Prefix: handler.KeyPrefix(key), CreatedAt: now}
	if err := model.InsertIgnore(db).Create(&k).Error; err != nil {
		return fmt.Errorf("seed api key: %w", err)
	}
	if err := db.Where(&model.APIKey{Hash: hash}).Take(&k).Error; err != nil {
		return fmt.Errorf("load api key: %w", err)
	}
	if k.RevokedAt != nil {
		log.Warn("WEJOURNEY_API_KEY was revoked and stays revoked: set a new value", "key_id", k.ID)
	}
	res := db.Model(&model.APIKey{}).Where("name = ? AND hash <> ? AND revoked_at IS NULL", EnvAPIKeyName, hash).Update("revoked_at", now)
	if res.Error != nil {
		return fmt.Errorf("revoke the previous WEJOURNEY_API_KEY: %w", res.Error)
	}
	if res.RowsAffected > 0 {
		log.Info("WEJOURNEY_API_KEY changed: the previous value is revoked")
	}
	return nil
}

// openCredentialsDB opens the database the way serve does: the embedded
// SQLite default migrates itself, any other must be migrated already.
func openCredentialsDB(cfg config.Config) (*gorm.DB, func(), error) {
	return openDatabase(cfg, strings.HasPrefix(cfg.DatabaseURL, "sqlite:"))
}

// withCredentialsDB runs f on the credentials database (openCredentialsDB)
// and closes it.
func withCredentialsDB(ctx context.Context, cfg config.Config, f func(db *gorm.DB) error) error {
	db, closeDB, err := openCredentialsDB(cfg)
	if err != nil {
		return err
	}
	defer closeDB()
	return f(db.WithContext(ctx))
}

// parseInterspersed parses fs's flags wherever they are among args (flag
// stops at the first non-flag) and returns the configuration and the
// positional arguments. Help goes to stdout, as loadConfig sends it.
func parseInterspersed(fs *flag.FlagSet, args []string, stdout io.Writer) (config.Config, []string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if hasValue {
			continue
		}
		// A flag not defined yet (--config, added by loadConfig) takes a value.
		f := fs.Lookup(name)
		isBool := false
		if f != nil {
			b, ok := f.Value.(interface{ IsBoolFlag() bool })
			isBool = ok && b.IsBoolFlag()
		}
		if !isBool && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	cfg, err := loadConfig(fs, flags, stdout)
	return cfg, pos, err
}

// adminCmd runs `wejourney admin passwd [USER] [--password-stdin]`.
func adminCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	const synopsis = "admin passwd [USER] [--password-stdin] [--config FILE]"
	fs := newFlags(synopsis, "Sets the password of USER (default admin), creating the user if missing; the user's sessions end.", stderr)
	fromStdin := fs.Bool("password-stdin", false, "read the new password from the first line of standard input")
	if len(args) == 0 || args[0] != "passwd" {
		if len(args) > 0 && isHelp(args[0]) {
			return printHelp(fs, stdout)
		}
		return errors.New("usage: wejourney " + synopsis)
	}
	cfg, pos, err := parseInterspersed(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	user := FirstAdmin
	switch len(pos) {
	case 0:
	case 1:
		user = pos[0]
	default:
		return errors.New("usage: wejourney " + synopsis)
	}
	if user == "" || len(user) > 64 {
		return errors.New("a user name has 1 to 64 characters")
	}
	pw, err := readNewPassword(stdin, stderr, user, *fromStdin)
	if err != nil {
		return err
	}
	if err := handler.CheckNewPassword(pw); err != nil {
		return err
	}
	db, closeDB, err := openCredentialsDB(cfg)
	if err != nil {
		return err
	}
	defer closeDB()
	created, err := setPassword(ctx, db, user, pw)
	if err != nil {
		return err
	}
	if created {
		cliAudit(ctx, db, stderr, "user.add", user, map[string]any{"role": model.RoleAdmin})
	} else {
		cliAudit(ctx, db, stderr, "user.password", user, nil)
	}
	if created {
		fmt.Fprintf(stdout, "created admin user %s\n", user)
	} else {
		fmt.Fprintf(stdout, "changed the password of %s; its sessions have ended\n", user)
	}
	if user == FirstAdmin && cfg.AdminPassword != "" {
		fmt.Fprintln(stderr, "warning: WEJOURNEY_ADMIN_PASSWORD is set: the next start sets admin's password back to it (unset it to keep this one)")
	}
	return nil
}

// readNewPassword reads the new password: the first line of stdin with
// --password-stdin, else twice from the terminal without echo.
func readNewPassword(stdin io.Reader, stderr io.Writer, user string, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	notTTY := errors.New("standard input is not a terminal: pass --password-stdin")
	tty, ok := stdin.(*os.File)
	if !ok {
		return "", notTTY
	}
	if fi, err := tty.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return "", notTTY
	}
	fmt.Fprintf(stderr, "New password for %s: ", user)
	pw, err := readHidden(tty)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Again: ")
	again, err := readHidden(tty)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("the passwords differ")
	}
	return pw, nil
}

// readHidden reads a line from the terminal tty with echo off (via stty,
// restored afterwards and on Ctrl-C); without stty it refuses.
func readHidden(tty *os.File) (string, error) {
	stty := func(arg string) error {
		c := exec.Command("stty", arg)
		c.Stdin = tty
		return c.Run()
	}
	if stty("-echo") != nil {
		return "", errors.New("cannot turn off echo on standard input (not a terminal?): pass --password-stdin")
	}
	done := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		select {
		case <-sig:
			stty("echo")
			os.Exit(130)
		case <-done:
		}
	}()
	defer func() {
		signal.Stop(sig)
		close(done)
		stty("echo")
	}()
	line, err := bufio.NewReader(tty).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// apikeysCmd runs `wejourney apikeys create|list|revoke`.
func apikeysCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: wejourney apikeys create --name NAME [--scope events|admin] | list | revoke ID"
	fs := subcommandFlags(args, map[string]string{
		"create": "apikeys create --name NAME [--scope events|admin] [--config FILE]",
		"list":   "apikeys list [--config FILE]",
		"revoke": "apikeys revoke ID [--config FILE]",
	}, "apikeys create|list|revoke [flags]",
		"create --name NAME [--scope events|admin]: makes an API key and prints it once.\n"+
			"list: lists the API keys (never the keys themselves).\n"+
			"revoke ID: revokes a key; requests with it get 401 from now on.", stderr)
	name := fs.String("name", "", "what the key is for (create)")
	scope := fs.String("scope", model.ScopeEvents, "events (POST /api/v1/events) or admin (the admin JSON API) (create)")
	cfg, pos, err := parseSubcommand(fs, args, usage, stdout)
	if err != nil {
		return err
	}
	run := func(f func(db *gorm.DB) error) error { return withCredentialsDB(ctx, cfg, f) }
	switch args[0] {
	case "create":
		if *name == "" || len(*name) > 128 || len(pos) > 0 {
			return errors.New("usage: wejourney apikeys create --name NAME [--scope events|admin]")
		}
		if *name == EnvAPIKeyName {
			return fmt.Errorf("the name %s is kept for the key from the environment", EnvAPIKeyName)
		}
		if *scope != model.ScopeEvents && *scope != model.ScopeAdmin {
			return fmt.Errorf("--scope: want events or admin, got %q", *scope)
		}
		return run(func(db *gorm.DB) error {
			key, k, err := handler.CreateAPIKey(ctx, db, *name, *scope, time.Now())
			if err != nil {
				return err
			}
			cliAudit(ctx, db, stderr, handler.AuditAPIKeyCreate, k.Name, map[string]any{"api_key_id": k.ID, "scope": k.Scope, "prefix": k.Prefix})
			fmt.Fprintln(stdout, key)
			fmt.Fprintf(stderr, "api key %d %q, scope %s: shown once, store it now (only its hash is kept)\n", k.ID, k.Name, k.Scope)
			return nil
		})
	case "list":
		if len(pos) > 0 {
			return errors.New("usage: wejourney apikeys list")
		}
		return run(func(db *gorm.DB) error {
			keys, err := handler.ListAPIKeys(ctx, db)
			if err != nil {
				return err
			}
			w := newTable(stdout)
			fmt.Fprintln(w, "ID\tNAME\tSCOPE\tPREFIX\tCREATED\tLAST USED\tREVOKED")
			for _, k := range keys {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Scope, orDash(k.Prefix),
					when(&k.CreatedAt), when(k.LastUsedAt), when(k.RevokedAt))
			}
			return w.Flush()
		})
	case "revoke":
		if len(pos) != 1 {
			return errors.New("usage: wejourney apikeys revoke ID")
		}
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil {
			return fmt.Errorf("revoke: %q is not a key id (see wejourney apikeys list)", pos[0])
		}
		return run(func(db *gorm.DB) error {
			k, err := handler.RevokeAPIKey(ctx, db, id, time.Now())
			if errors.Is(err, handler.ErrNoAPIKey) {
				return fmt.Errorf("no api key with id %d", id)
			} else if err != nil {
				return err
			}
			if k.RevokedAt != nil {
				fmt.Fprintf(stdout, "api key %d %q was already revoked at %s\n", k.ID, k.Name, when(k.RevokedAt))
				return nil
			}
			cliAudit(ctx, db, stderr, handler.AuditAPIKeyRevoke, k.Name, map[string]any{"api_key_id": k.ID, "scope": k.Scope})
			fmt.Fprintf(stdout, "revoked api key %d %q: requests with it now get 401\n", k.ID, k.Name)
			if k.Name == EnvAPIKeyName && cfg.APIKey != "" && handler.HashAPIKey(cfg.APIKey) == k.Hash {
				fmt.Fprintln(stderr, "note: WEJOURNEY_API_KEY still holds this key; it stays revoked: set a new value")
			}
			return nil
		})
	}
	return fmt.Errorf("unknown apikeys command %q; %s", args[0], usage)
}

// subcommandFlags returns the flags of a command with sub-commands
// (`wejourney apikeys create|list|revoke`, ...): its usage names the
// synopsis of the sub-command args[0] in synopses, or fallback when args
// names none of them. about says what the sub-commands do.
func subcommandFlags(args []string, synopses map[string]string, fallback, about string, stderr io.Writer) *flag.FlagSet {
	synopsis := synopses[first(args)]
	if synopsis == "" {
		synopsis = fallback
	}
	return newFlags(synopsis, about, stderr)
}

// parseSubcommand parses args, a sub-command and its arguments, with fs
// (see parseInterspersed) and returns the configuration and the
// sub-command's positional arguments. Without a sub-command it returns
// usage as the error; asked for help, it prints fs's usage to stdout and
// returns flag.ErrHelp.
func parseSubcommand(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) (config.Config, []string, error) {
	if len(args) == 0 {
		return config.Config{}, nil, errors.New(usage)
	}
	if isHelp(args[0]) {
		return config.Config{}, nil, printHelp(fs, stdout)
	}
	return parseInterspersed(fs, args[1:], stdout)
}

// newTable returns a writer that aligns the tab-separated columns of a
// command's listing (flush it after the last row).
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// first is args[0], or "" when there is none.
func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
