package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/wejourney/wejourney/journey"
)

// lifecycleUsage is the usage of the journeys subcommands that act on the
// database.
const lifecycleUsage = "usage: wejourney journeys publish FILE | pause KEY | resume KEY | archive KEY"

// journeyLifecycleCmd runs `wejourney journeys publish FILE`, `pause KEY`,
// `resume KEY` and `archive KEY` on the database directly, as the admin
// API does (docs/journeys.md, "Lifecycle"). The running workers see the
// change within seconds: they re-read which journeys are live and paused
// every 2 s, and their sweeper runs the steps a resume released.
func journeyLifecycleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subcommandFlags(args, map[string]string{
		"publish": "journeys publish FILE [--config FILE]",
		"pause":   "journeys pause KEY [--config FILE]",
		"resume":  "journeys resume KEY [--config FILE]",
		"archive": "journeys archive KEY [--config FILE]",
	}, "journeys publish|pause|resume|archive ARG [flags]",
		"publish FILE: checks a journey file as the server would (its channels against this configuration's senders) and makes it the live version of its journey; members inside stay on the version they entered.\n"+
			"pause KEY: no new entries; the due steps of the members inside are held until resume.\n"+
			"resume KEY: members enter again; the held steps run at once.\n"+
			"archive KEY: ends the journey: no entries, every member inside leaves it (end reason archived). It cannot be resumed; publishing a changed version starts it again.", stderr)
	cfg, pos, err := parseSubcommand(fs, args, lifecycleUsage, stdout)
	if err != nil {
		return err
	}
	action := args[0]
	if len(pos) != 1 {
		what := "KEY"
		if action == "publish" {
			what = "FILE"
		}
		return fmt.Errorf("usage: wejourney journeys %s %s", action, what)
	}
	arg := pos[0]
	db, closeDB, err := openCredentialsDB(cfg)
	if err != nil {
		return err
	}
	defer closeDB()
	quiet := slog.New(slog.DiscardHandler)
	ecfg := journey.Config{DB: db, Logger: quiet}
	if action == "publish" {
		reg, err := buildSenders(senderDeps{cfg: cfg, wechat: newWeChat(cfg, nil, nil, quiet), wecom: newWeCom(cfg, nil, nil, quiet), log: quiet})
		if err != nil {
			return err
		}
		ecfg.Senders = reg
	}
	e := journey.New(ecfg)
	var st journey.Status
	switch action {
	case "publish":
		src, rerr := os.ReadFile(arg)
		if rerr != nil {
			return rerr
		}
		st, err = e.PublishSource(ctx, "", arg, src, journey.OriginCLIPrefix+arg)
	case "pause":
		st, err = e.Pause(ctx, arg)
	case "resume":
		st, err = e.Resume(ctx, arg)
	case "archive":
		st, err = e.Archive(ctx, arg)
	}
	switch {
	case errors.Is(err, journey.ErrUnknownJourney):
		return fmt.Errorf("no journey with key %q", arg)
	case errors.Is(err, journey.ErrTransition):
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, journey.ErrTransition.Error()+": "); ok {
			msg = rest
		}
		return errors.New(msg)
	case err != nil:
		return err
	}
	_, err = fmt.Fprintln(stdout, describeStatus(action, st))
	return err
}

// describeStatus is the line a lifecycle command prints.
func describeStatus(action string, st journey.Status) string {
	inside := fmt.Sprintf("%d members inside", st.Active)
	switch {
	case action == "publish" && st.Published != nil && *st.Published:
		return fmt.Sprintf("journey %q: version %d published, %s (%s)", st.Key, st.Version, st.Status, inside)
	case action == "publish":
		return fmt.Sprintf("journey %q: unchanged: version %d has this source, %s (%s)", st.Key, st.Version, st.Status, inside)
	case action == "archive":
		return fmt.Sprintf("journey %q: archived (version %d; %d members left it)", st.Key, st.Version, st.Ended)
	case st.Status == "paused":
		return fmt.Sprintf("journey %q: paused (version %d, %s; their due steps are held until resume)", st.Key, st.Version, inside)
	}
	return fmt.Sprintf("journey %q: %s (version %d, %s)", st.Key, st.Status, st.Version, inside)
}
