package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/model"
)

const channelsUsage = "usage: wejourney channels [--config FILE] | channels test CHANNEL --to ADDRESS [--text T] [--subject S] " +
	"[--template T] [--template-id ID] [--url U] [--param k=v]... [--data k=v]... [--extra k=v]... [--appid A]"

// keyValues is a repeatable k=v flag (a flag.Value).
type keyValues map[string]string

// String lists the pairs.
func (kv keyValues) String() string {
	parts := make([]string, 0, len(kv))
	for k, v := range kv {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// Set adds one k=v.
func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", s)
	}
	kv[k] = v
	return nil
}

// channelsCmd runs `wejourney channels` (the channels this configuration
// serves and their providers) and `wejourney channels test CHANNEL`.
func channelsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subcommandFlags(args, map[string]string{
		"test": "channels test CHANNEL --to ADDRESS [--text T] [--subject S] [--template T] [--template-id ID] [--url U] " +
			"[--param k=v]... [--data k=v]... [--extra k=v]... [--appid A] [--config FILE]",
	}, "channels [test CHANNEL --to ADDRESS ...] [--config FILE]",
		"channels: lists the channels this configuration serves and who delivers each.\n"+
			"test CHANNEL: sends one message on CHANNEL outside any journey (category transactional) and prints the provider's\n"+
			"answer; it exits 1 when the provider refuses. --to is the address on the channel: an openid (wechat.*), a phone\n"+
			"(sms), an email (email), an external_userid (wecom.welcome, wecom.mark_tag, wecom.group_message) or a rep's\n"+
			"userid (wecom.text).", stderr)
	to := fs.String("to", "", "the address on the channel (test)")
	text := fs.String("text", "", "the message text (test)")
	subject := fs.String("subject", "", "the email subject (test)")
	template := fs.String("template", "", "the SMS template code (test)")
	templateID := fs.String("template-id", "", "the WeChat template id (test)")
	url := fs.String("url", "", "the template message or news link (test)")
	appid := fs.String("appid", "", "the Official Account, mini-program or WeCom app (corpid/agentid); default: the configured one (test)")
	params, data, extra := keyValues{}, keyValues{}, keyValues{}
	fs.Var(params, "param", "an SMS template param `k=v` (repeatable) (test)")
	fs.Var(data, "data", "a template data field `k=v` (repeatable) (test)")
	fs.Var(extra, "extra", "a channel extra `k=v` (repeatable), e.g. welcome_code=..., user_id=rep1, add_tags=et1 (test)")

	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && isHelp(args[0]) {
			return printHelp(fs, stdout)
		}
		cfg, pos, err := parseInterspersed(fs, args, stdout)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return errors.New(channelsUsage)
		}
		return listChannels(cfg, stdout)
	}
	if args[0] != "test" {
		return errors.New(channelsUsage)
	}
	cfg, pos, err := parseSubcommand(fs, args, channelsUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New(channelsUsage)
	}
	channel := pos[0]
	if !channels.Known(channel) {
		return fmt.Errorf("unknown channel %q (see wejourney channels)", channel)
	}
	req := channels.TestRequest{To: *to, AppID: *appid, Text: *text, Subject: *subject, Template: *template,
		TemplateID: *templateID, URL: *url, Data: data, Params: params, Extra: extra}
	msg, err := req.Message(channel)
	if err != nil {
		return fmt.Errorf("--to is required: %w", err)
	}
	return withSenders(ctx, cfg, stderr, func(senders *channels.Registry) error {
		res, err := senders.Send(ctx, msg)
		switch {
		case errors.Is(err, channels.ErrNoSender):
			return fmt.Errorf("channel %s has no sender (%s)", channel, channels.Setup(channel))
		case err != nil:
			f := channels.Describe(err)
			fmt.Fprintf(stdout, "%s: not sent: %s (class %s, code %d)\n", channel, f.Error, f.Class, f.Code)
			return fmt.Errorf("%s refused the test message (%s)", channel, f.Class)
		case res.Sandbox:
			fmt.Fprintf(stdout, "%s: ok, sandbox (logged, nothing sent)\n", channel)
		default:
			fmt.Fprintf(stdout, "%s: ok, sent; provider id %q\n", channel, res.ProviderID)
		}
		return nil
	})
}

// listChannels prints the channels this configuration serves and their
// providers.
func listChannels(cfg config.Config, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	quiet := slog.New(slog.DiscardHandler)
	reg, err := buildSenders(senderDeps{cfg: cfg, wechat: newWeChat(cfg, nil, nil, quiet), wecom: newWeCom(cfg, nil, nil, quiet), log: quiet})
	if err != nil {
		return err
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "CHANNEL\tPROVIDER")
	for _, ch := range reg.Channels() {
		fmt.Fprintf(tw, "%s\t%s\n", ch, channelProvider(cfg, ch))
	}
	return tw.Flush()
}

// logProvider names the development provider that sends nothing.
const logProvider = "log (development: nothing is sent)"

// channelProvider says who delivers channel in this configuration.
func channelProvider(cfg config.Config, ch string) string {
	switch {
	case strings.HasPrefix(ch, "wechat."):
		return "wechat (Official Account API)"
	case strings.HasPrefix(ch, "wecom."):
		if app := defaultWeComApp(cfg); app != "" {
			return "wecom (WeCom API; default app " + app + ")"
		}
		return "wecom (WeCom API; no default app: name one with extra.wecom_app)"
	case ch == channels.SMS:
		if cfg.SMSProvider == "log" {
			return logProvider
		}
		return cfg.SMSProvider
	case ch == channels.Email:
		if cfg.SMTPURL == "" {
			return logProvider
		}
		return "smtp"
	}
	return "-"
}

// withSenders builds the senders as the server does — the database's
// accounts (secrets decrypted), Redis and its limiter when
// WEJOURNEY_REDIS_URL is set (sharing the server's access tokens) — runs f
// and closes them.
func withSenders(ctx context.Context, cfg config.Config, stderr io.Writer, f func(*channels.Registry) error) error {
	log := slog.New(redact.NewHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	gdb, box, err := openStore(ctx, cfg, Options{AutoMigrate: strings.HasPrefix(cfg.DatabaseURL, "sqlite:")}, log)
	if err != nil {
		return err
	}
	defer func() {
		if s, err := gdb.DB(); err == nil {
			s.Close()
		}
	}()
	d := senderDeps{cfg: cfg, db: gdb, log: log}
	var rdb redis.UniversalClient
	if cfg.RedisURL != "" {
		if _, _, rdb, err = openRedis(ctx, cfg); err != nil {
			return err
		}
		defer rdb.Close()
		d.rdb, d.limiter = rdb, channels.NewRedisLimiter(rdb)
	}
	accounts := model.NewAccounts(gdb, box)
	d.wechat, d.wecom = newWeChat(cfg, accounts, rdb, log), newWeCom(cfg, accounts, rdb, log)
	senders, err := buildSenders(d)
	if err != nil {
		return err
	}
	return f(senders)
}
