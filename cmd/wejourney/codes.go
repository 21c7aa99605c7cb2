package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/model"
)

// defaultWeComApp is the WeCom app of the environment ("corpid/agentid"),
// or "" when none is configured.
func defaultWeComApp(cfg config.Config) string {
	if cfg.WeComCorpID == "" || cfg.WeComAgentID == "" {
		return ""
	}
	return cfg.WeComCorpID + "/" + cfg.WeComAgentID
}

// openCodes opens what the qrcodes and contact-ways commands need: the
// database (as serve opens it), the account secrets, Redis when
// WEJOURNEY_REDIS_URL is set (so the access tokens are the server's), and
// the WeChat and WeCom clients. done closes them.
func openCodes(ctx context.Context, cfg config.Config, stderr io.Writer) (svc *codes.Service, done func(), err error) {
	log := slog.New(redact.NewHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("configuration:\n%w", err)
	}
	gdb, box, err := openStore(ctx, cfg, Options{AutoMigrate: strings.HasPrefix(cfg.DatabaseURL, "sqlite:")}, log)
	if err != nil {
		return nil, nil, err
	}
	var rdb redis.UniversalClient
	if cfg.RedisURL != "" {
		if _, _, rdb, err = openRedis(ctx, cfg); err != nil {
			if s, e := gdb.DB(); e == nil {
				s.Close()
			}
			return nil, nil, err
		}
	}
	accounts := model.NewAccounts(gdb, box)
	svc = newCodes(cfg, gdb, newWeChat(cfg, accounts, rdb, log), newWeCom(cfg, accounts, rdb, log), log)
	done = func() {
		if rdb != nil {
			rdb.Close()
		}
		if s, err := gdb.DB(); err == nil {
			s.Close()
		}
	}
	return svc, done, nil
}

// withCodes runs f with the service openCodes opens, and closes it after.
func withCodes(ctx context.Context, cfg config.Config, stderr io.Writer, f func(*codes.Service) error) error {
	svc, done, err := openCodes(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer done()
	return f(svc)
}

// stringList is a repeatable string flag (a flag.Value).
type stringList []string

// String joins the values with commas.
func (l *stringList) String() string { return strings.Join(*l, ",") }

// Set adds v.
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// qrcodesCmd runs `wejourney qrcodes create|list|png`.
func qrcodesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: wejourney qrcodes create --scene S --label L [--channel C] [--permanent | --expire 720h] [--appid A] [--png FILE] | list [--appid A] | png ID FILE"
	fs := subcommandFlags(args, map[string]string{
		"create": "qrcodes create --scene S --label L [--channel C] [--permanent | --expire 720h] [--appid A] [--png FILE] [--config FILE]",
		"list":   "qrcodes list [--appid A] [--config FILE]",
		"png":    "qrcodes png ID FILE [--config FILE]",
	}, "qrcodes create|list|png [flags]",
		"create: makes an Official Account QR code (WeChat's qrcode/create) whose follows and scans carry --scene.\n"+
			"list: lists the QR codes with their follows, scans, members, first and last touch.\n"+
			"png ID FILE: writes the QR code's image.", stderr)
	scene := fs.String("scene", "", "the scene (1 to 64 characters) follows and scans carry (create)")
	label := fs.String("label", "", "a name for operators, e.g. 南京西路店 (create)")
	channel := fs.String("channel", "", "a group: store, event, search, ... (create)")
	permanent := fs.Bool("permanent", false, "a permanent code (WeChat allows 100,000 per account) (create)")
	expire := fs.Duration("expire", 0, "a temporary code's life, at most 720h (default 720h) (create)")
	appid := fs.String("appid", "", "the Official Account (default: WEJOURNEY_WECHAT_APPID)")
	pngFile := fs.String("png", "", "also write the QR code image to this `file` (create)")
	cfg, pos, err := parseSubcommand(fs, args, usage, stdout)
	if err != nil {
		return err
	}
	switch args[0] {
	case "create":
		if len(pos) > 0 {
			return errors.New(usage)
		}
		if *permanent && *expire != 0 {
			return errors.New("--permanent and --expire exclude each other")
		}
		if *expire%time.Second != 0 {
			return fmt.Errorf("--expire %s: whole seconds only", *expire)
		}
		return withCodes(ctx, cfg, stderr, func(svc *codes.Service) error {
			code, err := svc.CreateQR(ctx, codes.QRRequest{AppID: *appid, Scene: *scene, Label: *label, Channel: *channel,
				Permanent: *permanent, ExpireSeconds: int(*expire / time.Second)})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "QR code %d: %s scene %q (%s", code.ID, code.AppID, code.Scene, code.Kind)
			if code.ExpiresAt != nil {
				fmt.Fprintf(stdout, ", expires %s", when(code.ExpiresAt))
			}
			fmt.Fprintf(stdout, ")\n  url:    %s\n  ticket: %s\n", code.URL, code.Ticket)
			if *pngFile != "" {
				return writeQRPNG(ctx, svc, code.ID, *pngFile, stdout)
			}
			return nil
		})
	case "list":
		if len(pos) > 0 {
			return errors.New(usage)
		}
		return withCodes(ctx, cfg, stderr, func(svc *codes.Service) error {
			list, err := svc.ListQR(ctx, *appid)
			if err != nil {
				return err
			}
			w := newTable(stdout)
			fmt.Fprintln(w, "ID\tAPPID\tSCENE\tLABEL\tCHANNEL\tKIND\tEXPIRES\tFOLLOWS\tSCANS\tMEMBERS\tFIRST TOUCH\tLAST TOUCH")
			for _, c := range list {
				exp := when(c.ExpiresAt)
				if c.Expired {
					exp += " (expired)"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", c.ID, c.AppID, c.Scene, orDash(c.Label), orDash(c.Channel),
					c.Kind, exp, c.Stats.Follows, c.Stats.Scans, c.Stats.Members, c.Stats.FirstTouch, c.Stats.LastTouch)
			}
			return w.Flush()
		})
	case "png":
		if len(pos) != 2 {
			return errors.New("usage: wejourney qrcodes png ID FILE")
		}
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil {
			return fmt.Errorf("png: %q is not a QR code id (see wejourney qrcodes list)", pos[0])
		}
		return withCodes(ctx, cfg, stderr, func(svc *codes.Service) error {
			return writeQRPNG(ctx, svc, id, pos[1], stdout)
		})
	}
	return fmt.Errorf("unknown qrcodes command %q; %s", args[0], usage)
}

func writeQRPNG(ctx context.Context, svc *codes.Service, id int64, file string, stdout io.Writer) error {
	img, err := svc.QRPNG(ctx, id)
	if err != nil {
		return err
	}
	return writeImage(file, img, stdout)
}

func writeImage(file string, img []byte, stdout io.Writer) error {
	if err := os.WriteFile(file, img, 0o644); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes)\n", file, len(img))
	return nil
}

// contactWaysCmd runs `wejourney contact-ways create|list`.
func contactWaysCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "usage: wejourney contact-ways create --state S --user U [--user U2] --label L [--channel C] [--app corpid/agentid] [--png FILE] | list [--app corpid/agentid]"
	fs := subcommandFlags(args, map[string]string{
		"create": "contact-ways create --state S --user U [--user U2] --label L [--channel C] [--app corpid/agentid] [--verify] [--png FILE] [--config FILE]",
		"list":   "contact-ways list [--app corpid/agentid] [--config FILE]",
	}, "contact-ways create|list [flags]",
		"create: makes a WeCom contact-me link (add_contact_way) whose adds carry --state; its config_id is stored\n"+
			"(WeCom cannot list links later).\n"+
			"list: lists the links with their adds, members, first and last touch.", stderr)
	state := fs.String("state", "", "the state (1 to 30 characters) adds carry (create)")
	var users stringList
	fs.Var(&users, "user", "a rep's WeCom user id; repeat for several (create)")
	label := fs.String("label", "", "a name for operators (create)")
	channel := fs.String("channel", "", "a group: store, event, search, ... (create)")
	verify := fs.Bool("verify", false, "the rep confirms each add (default: added at once, WeCom's default) (create)")
	app := fs.String("app", "", "the WeCom app corpid/agentid (default: WEJOURNEY_WECOM_CORPID/WEJOURNEY_WECOM_AGENTID)")
	pngFile := fs.String("png", "", "also write the QR code image to this `file` (create)")
	cfg, pos, err := parseSubcommand(fs, args, usage, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "create":
		return withCodes(ctx, cfg, stderr, func(svc *codes.Service) error {
			skip := !*verify
			way, err := svc.CreateContactWay(ctx, codes.ContactWayRequest{AppID: *app, State: *state, Users: users,
				Label: *label, Channel: *channel, SkipVerify: &skip})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "contact-me link %d: %s state %q, reps %s\n  config_id: %s\n  qr_code:   %s\n",
				way.ID, way.AppID, way.State, strings.Join(way.Users, ","), way.ConfigID, way.QRCodeURL)
			if *pngFile != "" {
				img, err := svc.ContactWayPNG(ctx, way.ID)
				if err != nil {
					return err
				}
				return writeImage(*pngFile, img, stdout)
			}
			return nil
		})
	case "list":
		return withCodes(ctx, cfg, stderr, func(svc *codes.Service) error {
			list, err := svc.ListContactWays(ctx, *app)
			if err != nil {
				return err
			}
			w := newTable(stdout)
			fmt.Fprintln(w, "ID\tAPP\tSTATE\tLABEL\tCHANNEL\tREPS\tCONFIG ID\tADDS\tMEMBERS\tFIRST TOUCH\tLAST TOUCH")
			for _, c := range list {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", c.ID, c.AppID, c.State, orDash(c.Label), orDash(c.Channel),
					strings.Join(c.Users, ","), c.ConfigID, c.Stats.Adds, c.Stats.Members, c.Stats.FirstTouch, c.Stats.LastTouch)
			}
			return w.Flush()
		})
	}
	return fmt.Errorf("unknown contact-ways command %q; %s", args[0], usage)
}
