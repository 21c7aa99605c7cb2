package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/schollz/progressbar/v3"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/followers"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

const followersSynopsis = "followers sync [--appid APPID] [--restart] [--rate N] [--config FILE]"

// followersCmd runs `wejourney followers sync`: it imports the Official
// Account's existing followers as wechat.follower_imported events, with a
// progress bar on stderr and a summary on stdout.
//
// It only stores the events. The workers of a running server route them
// into members: at once when WEJOURNEY_REDIS_URL names the server's Redis
// (the route tasks go there), within a sweep otherwise; with the embedded
// defaults and no server running, at the server's next start.
func followersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(followersSynopsis,
		"Imports the followers an Official Account had before wejourney was connected (user/get, user/info/batchget):\n"+
			"one wechat.follower_imported event per follower; a running server's worker turns them into subscribed members\n"+
			"with their unionid and tags. An interrupted sync (Ctrl-C, a crash, WeChat's daily quota) resumes where it\n"+
			"stopped when run again; --restart starts over.", stderr)
	appid := fs.String("appid", "", "the Official Account's `appid` (default: the default account, WEJOURNEY_WECHAT_APPID)")
	restart := fs.Bool("restart", false, "start a new run instead of resuming a stopped one")
	rate := fs.Float64("rate", followers.DefaultRate, "most WeChat API `calls` per second")
	if len(args) == 0 || args[0] != "sync" {
		if len(args) > 0 && isHelp(args[0]) {
			return printHelp(fs, stdout)
		}
		return errors.New("usage: wejourney " + followersSynopsis)
	}
	cfg, pos, err := parseInterspersed(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errors.New("usage: wejourney " + followersSynopsis)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if *appid == "" {
		*appid = cfg.DefaultAppID()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Warnings only: the progress bar owns the terminal.
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	syncer, routed, closeAll, err := openFollowerSync(ctx, cfg, *rate, logger)
	if err != nil {
		return err
	}
	defer closeAll()

	var bar *progressbar.ProgressBar
	progress := func(done, total int) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(stderr),
				progressbar.OptionSetDescription("importing followers of "+*appid),
				progressbar.OptionShowCount(), progressbar.OptionSetItsString("followers"), progressbar.OptionShowIts(),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetPredictTime(true))
		}
		if total != bar.GetMax() {
			bar.ChangeMax(total)
		}
		bar.Set(done)
	}
	res, err := syncer.Sync(ctx, *appid, followers.Options{Restart: *restart, Progress: progress})
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(stderr)
	}
	from := "a new run"
	if res.Resumed {
		from = fmt.Sprintf("resumed run %s from follower %d", res.Sync.RunID, res.ResumedFrom)
	}
	if err != nil {
		fmt.Fprintf(stderr, "stopped after %d of %d followers of %s (%s): run `wejourney followers sync` again to resume\n",
			res.Sync.Imported, res.Sync.Total, *appid, from)
		return err
	}
	fmt.Fprintf(stdout, "imported %d of %d followers of %s (%s): %d events stored, %d stored before, %d skipped (unfollowed meanwhile)\n",
		res.Sync.Imported, res.Sync.Total, *appid, from, res.Stored, res.Duplicates, res.Skipped)
	fmt.Fprintln(stdout, routed)
	return nil
}

// openFollowerSync opens what a follower sync needs outside a server: the
// database (the embedded SQLite default migrates itself, as serve does),
// the account secrets, the Official Account client (sharing the server's
// access token through Redis when WEJOURNEY_REDIS_URL is set) and an
// ingestor. With WEJOURNEY_REDIS_URL the ingestor hands route tasks to the
// server's queue; without, routing is left to the server's sweeper. routed
// says which, for the summary.
func openFollowerSync(ctx context.Context, cfg config.Config, rate float64, log *slog.Logger) (s *followers.Syncer, routed string, closeAll func(), err error) {
	embedded := strings.HasPrefix(cfg.DatabaseURL, "sqlite:")
	db, box, err := openStore(ctx, cfg, Options{AutoMigrate: embedded}, log)
	if err != nil {
		return nil, "", nil, err
	}
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
	if cfg.WeChatAppSecret != "" {
		// The environment's credentials are authoritative, as at a start.
		acct := model.Account{Kind: model.AccountWeChatOA, AppID: cfg.DefaultAppID(), Name: "default",
			AppSecret: cfg.WeChatAppSecret, Token: cfg.DefaultToken(), AESKey: cfg.WeChatAESKey}
		if err := model.UpsertAccount(db.WithContext(ctx), box, acct); err != nil {
			closeAll()
			return nil, "", nil, fmt.Errorf("seed account: %w", err)
		}
	}
	ingCfg := journey.IngestorConfig{DB: db, Logger: log}
	routed = "The events are stored: a running wejourney server's sweeper routes them into members within seconds " +
		"(with the embedded defaults and no server running, at its next start)."
	var rdb redis.UniversalClient
	if cfg.RedisURL != "" {
		_, opt, r, err := openRedis(ctx, cfg)
		if err != nil {
			closeAll()
			return nil, "", nil, err
		}
		rdb = r
		closers = append(closers, func() { rdb.Close() })
		q := asynq.NewClient(opt)
		closers = append(closers, func() { q.Close() })
		ingCfg.Queue = q
		routed = "The events are stored and queued: the workers of the running wejourney server route them into members now."
	}
	wx := newWeChat(cfg, model.NewAccounts(db, box), rdb, log)
	ing := journey.NewIngestor(ingCfg)
	closers = append(closers, ing.Close)
	s = followers.New(followers.Config{DB: db, Client: wx, Events: ing, Rate: rate, BaseContext: ctx, Logger: log})
	closers = append(closers, s.Close)
	return s, routed, closeAll, nil
}
