package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

const journeyTestSynopsis = "journeys test [--config FILE] --member M [--event E.json] [--later L.json] [--send] FILE"

// journeysTestCmd walks a journey file for one member with waits
// compressed and prints the path and each rendered message, sending
// nothing (journey.Engine.TestRun) — or, with --send and a tester, sending
// each through the channel senders as `channels test` does.
func journeysTestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(journeyTestSynopsis,
		"Runs a journey for one member with waits compressed and prints the path taken and each message as it would go out; nothing is sent or recorded.\n"+
			"M is a member id or an openid in the configured database (an openid it does not know stands for a new follower).\n"+
			"E.json is the event that enters the member ({\"type\": \"wechat.subscribe\", \"props\": {\"scene\": \"store_001\"}}; default: an empty event of the trigger's type).\n"+
			"L.json is a list of events that happen while the member waits, in order: each wait_for takes the first it matches.\n"+
			"--send delivers each message to the member for real, through the configured senders as `channels test` does, and prints each\n"+
			"provider's answer; only to a tester (a member with the tag \"tester\", set with POST /api/v1/members/{id}/tester), and it exits 1\n"+
			"when a message is not sent. Nothing is recorded: the member is not entered and journey stats do not count the sends.", stderr)
	member := fs.String("member", "", "the member: an id or an openid (required)")
	eventFile := fs.String("event", "", "`file` of the event that enters the member (JSON)")
	laterFile := fs.String("later", "", "`file` of the events that happen while the member waits (a JSON list)")
	send := fs.Bool("send", false, "deliver the messages to the member, who must be a tester")
	cfg, paths, err := parseInterspersed(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(paths) != 1 || *member == "" {
		return errors.New("usage: wejourney " + journeyTestSynopsis)
	}
	src, err := os.ReadFile(paths[0])
	if err != nil {
		return err
	}
	var opts journey.TestRunOptions
	if *eventFile != "" {
		var ev testEvent
		if err := readJSON(*eventFile, &ev); err != nil {
			return err
		}
		opts.Event = ev.model()
	}
	if *laterFile != "" {
		var later []testEvent
		if err := readJSON(*laterFile, &later); err != nil {
			return err
		}
		for _, ev := range later {
			opts.Later = append(opts.Later, ev.model())
		}
	}
	opts.Send = *send
	run := func(reg *channels.Registry) error {
		c, err := parseJourney(reg, paths[0], src)
		if err != nil {
			return err
		}
		db, closeDB, err := openDatabase(cfg, strings.HasPrefix(cfg.DatabaseURL, "sqlite:"))
		if err != nil {
			return err
		}
		defer closeDB()
		m, err := testMember(db, *member, cfg.DefaultAppID())
		if err != nil {
			return err
		}
		e := journey.New(journey.Config{DB: db, Senders: reg, Logger: slog.New(slog.DiscardHandler)})
		run, err := e.TestRun(ctx, c, 0, m, opts)
		if errors.Is(err, journey.ErrNotTester) {
			return fmt.Errorf("%w; mark them as a tester with POST /api/v1/members/ID/tester (the admin API), or test without --send", err)
		}
		if err != nil {
			return err
		}
		printTestRun(stdout, run, m)
		if n := unsent(run); n > 0 {
			return fmt.Errorf("%d of the test run's messages were not sent", n)
		}
		return nil
	}
	if *send {
		// The senders as the server builds them, as `channels test` does.
		return withSenders(ctx, cfg, stderr, run)
	}
	quiet := slog.New(slog.DiscardHandler)
	reg, err := buildSenders(senderDeps{cfg: cfg, wechat: newWeChat(cfg, nil, nil, quiet), wecom: newWeCom(cfg, nil, nil, quiet), log: quiet})
	if err != nil {
		return err
	}
	return run(reg)
}

// unsent counts the messages of a run that sends which no channel took.
func unsent(run *journey.TestRun) int {
	n := 0
	for _, s := range run.Steps {
		if k := len(s.Sends); k > 0 && !s.Sends[k-1].Sent {
			n++
		}
	}
	return n
}

// testEvent is an event as the test command reads it.
type testEvent struct {
	Type  string         `json:"type"`
	Props map[string]any `json:"props"`
}

func (e testEvent) model() *model.Event {
	props := e.Props
	if props == nil {
		props = map[string]any{}
	}
	return &model.Event{Type: e.Type, Props: props}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// testMember finds the member by id or openid; an openid the database
// does not know stands for a new follower of the default account.
func testMember(db *gorm.DB, who, appid string) (*model.Member, error) {
	var m model.Member
	if id, err := strconv.ParseInt(who, 10, 64); err == nil {
		if err := db.First(&m, id).Error; err != nil {
			return nil, fmt.Errorf("member %d: %w", id, err)
		}
		return &m, nil
	}
	err := db.Where("open_id = ?", who).First(&m).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return &model.Member{OpenID: who, AppID: appid}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", who, err)
	}
	return &m, nil
}

// printTestRun writes the path, a line a step, with each message.
func printTestRun(w io.Writer, run *journey.TestRun, m *model.Member) {
	who := m.OpenID
	if m.ID != 0 {
		who = fmt.Sprintf("%d (%s)", m.ID, m.OpenID)
	}
	if run.Send {
		fmt.Fprintf(w, "journey %s, member %s: test run, sending to the tester (nothing recorded)\n", run.Journey, who)
	} else {
		fmt.Fprintf(w, "journey %s, member %s: test run, nothing sent\n", run.Journey, who)
	}
	if !run.Entered {
		fmt.Fprintln(w, "  note: the trigger refuses this event or member (its where, or its segment): a real one would not enter the member")
	}
	for _, s := range run.Steps {
		line := fmt.Sprintf("  %-14s %-9s %s", s.Step, s.Kind, s.Outcome)
		if s.Note != "" {
			line += "   (" + s.Note + ")"
		}
		fmt.Fprintln(w, line)
		if msg := s.Message; msg != nil {
			b, _ := json.Marshal(msg)
			fmt.Fprintf(w, "    → %s\n", b)
		}
		for _, d := range s.Sends {
			switch {
			case d.Sandbox:
				fmt.Fprintf(w, "    %s: ok, sandbox (logged, nothing sent)\n", d.Channel)
			case d.Sent && d.ProviderID != "":
				fmt.Fprintf(w, "    %s: ok, sent; provider id %q\n", d.Channel, d.ProviderID)
			case d.Sent:
				fmt.Fprintf(w, "    %s: ok, sent\n", d.Channel)
			default:
				fmt.Fprintf(w, "    %s: not sent: %s (class %s, code %d)\n", d.Channel, d.Error, d.Class, d.Code)
			}
		}
	}
	fmt.Fprintf(w, "  end: %s\n", run.End)
}
