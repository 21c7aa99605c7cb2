package journey

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// FrequencyCap bounds how many messages a member gets on a channel within
// a period, from every journey together: at most Max per Per. Channel ""
// (written "*") counts every channel.
type FrequencyCap struct {
	Channel string
	Max     int
	Per     time.Duration
}

// String writes the cap as ParseFrequencyCaps reads it.
func (f FrequencyCap) String() string {
	ch := f.Channel
	if ch == "" {
		ch = "*"
	}
	return fmt.Sprintf("%s=%d/%s", ch, f.Max, formatDays(f.Per))
}

func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

// covers reports whether the cap counts messages on channel.
func (f FrequencyCap) covers(channel string) bool {
	return f.Channel == "" || f.Channel == channel
}

// ParseFrequencyCaps reads a comma-separated list of CHANNEL=MAX/PERIOD
// ("*=2/1d,*=5/7d,sms=1/1d"): "*" is every channel, PERIOD a duration with
// a d (day) unit as in journeys ("1d", "12h", "7d").
func ParseFrequencyCaps(s string) ([]FrequencyCap, error) {
	var out []FrequencyCap
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		ch, rate, ok := strings.Cut(part, "=")
		n, per, ok2 := strings.Cut(rate, "/")
		if !ok || !ok2 {
			return nil, fmt.Errorf("%q: want CHANNEL=MAX/PERIOD, e.g. *=2/1d", part)
		}
		max, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || max < 0 {
			return nil, fmt.Errorf("%q: %q is not a count", part, n)
		}
		d, err := ParseDuration(strings.TrimSpace(per))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q: the period %q is not a duration like 1d or 12h", part, per)
		}
		ch = strings.TrimSpace(ch)
		if ch == "*" {
			ch = ""
		}
		out = append(out, FrequencyCap{Channel: ch, Max: max, Per: d})
	}
	return out, nil
}

// CapSpec is one frequency cap as a journey writes it:
//
//	frequency_caps:
//	  - { channel: wechat.template, max: 2, per: 1d }
//	  - { max: 5, per: 7d }        # every channel
type CapSpec struct {
	Channel string   `yaml:"channel"`
	Max     int      `yaml:"max"`
	Per     Duration `yaml:"per"`
}

// What a send over a frequency cap does (Definition.OnCap).
const (
	// OnCapDelay waits until the member is under every cap again (the
	// default).
	OnCapDelay = "delay"
	// OnCapSkip passes the step without sending: the visit's outcome is
	// "capped" and the journey goes on.
	OnCapSkip = "skip"
)

// compileCaps checks the journey's caps and on_cap.
func compileCaps(ck *Check, def Definition, line func(string) int) ([]FrequencyCap, string) {
	var caps []FrequencyCap
	for i, s := range def.FrequencyCaps {
		cck := ck.in(fmt.Sprintf("frequency_caps[%d]", i), line("frequency_caps"))
		switch {
		case s.Max < 0:
			cck.Problemf(nil, "max %d: want 0 or more", s.Max)
		case s.Per <= 0:
			cck.Problemf(nil, "per is required: a period like 1d or 12h")
		}
		ch := s.Channel
		if ch == "*" {
			ch = ""
		}
		caps = append(caps, FrequencyCap{Channel: ch, Max: s.Max, Per: time.Duration(s.Per)})
	}
	switch def.OnCap {
	case "", OnCapDelay, OnCapSkip:
	default:
		ck.in("on_cap", line("on_cap")).Problemf(nil, "%q: want %s (default) or %s", def.OnCap, OnCapDelay, OnCapSkip)
	}
	onCap := def.OnCap
	if onCap == "" {
		onCap = OnCapDelay
	}
	return caps, onCap
}

// capWatch is what one round of steps knows of its members' recent
// messages: read once for every member the round sends to, and added to
// as the round decides its own sends.
type capWatch struct {
	sent map[int64][]capSend // by member
}

type capSend struct {
	channel string
	at      time.Time
	visit   int64 // the step visit that sent it (0: one this round is about to send)
}

// capCounted are the delivery statuses a cap counts: handed to the
// provider, whatever became of it, or logged in the sandbox.
var capCounted = []string{model.DeliverySending, model.DeliverySent, model.DeliveryUnknown, model.DeliverySandbox}

// watchCaps reads the non-transactional messages of members within the
// longest period of caps. Nothing to read when no cap applies.
func (e *Engine) watchCaps(db *gorm.DB, members []int64, longest time.Duration, now time.Time) (*capWatch, error) {
	w := &capWatch{sent: map[int64][]capSend{}}
	if len(members) == 0 || longest <= 0 {
		return w, nil
	}
	slices.Sort(members)
	members = slices.Compact(members)
	var rows []struct {
		MemberID    int64
		Channel     string
		CreatedAt   time.Time
		StepVisitID int64
	}
	err := db.Model(&model.Delivery{}).Select("member_id", "channel", "created_at", "step_visit_id").
		Where("member_id IN ? AND created_at > ? AND status IN ? AND (category IS NULL OR category <> ?)",
			members, now.Add(-longest), capCounted, model.CategoryTransactional).
		Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("journey: read members' recent messages for frequency caps: %w", err)
	}
	for _, r := range rows {
		w.sent[r.MemberID] = append(w.sent[r.MemberID], capSend{r.Channel, r.CreatedAt, r.StepVisitID})
	}
	return w, nil
}

// over returns, when a message to member on channel at now by step visit
// visit would pass one of caps, until when it must wait (the earliest
// moment every cap allows it) and the tightest cap it passes. The visit's
// own message does not count: an earlier attempt whose worker died handed
// it over, and the step now only settles its delivery.
func (w *capWatch) over(member int64, channel string, visit int64, caps []FrequencyCap, now time.Time) (time.Time, FrequencyCap, bool) {
	var (
		until time.Time
		hit   FrequencyCap
		over  bool
	)
	for _, c := range caps {
		if !c.covers(channel) {
			continue
		}
		var times []time.Time
		for _, s := range w.sent[member] {
			if c.covers(s.channel) && s.at.After(now.Add(-c.Per)) && s.visit != visit {
				times = append(times, s.at)
			}
		}
		if len(times) < c.Max {
			continue
		}
		// The oldest len-Max+1 must leave the window.
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		free := now.Add(c.Per) // Max 0: never within the period
		if c.Max > 0 {
			free = times[len(times)-c.Max].Add(c.Per)
		}
		if !over || free.After(until) {
			until, hit = free, c
		}
		over = true
	}
	return until, hit, over
}

// add counts a message the round is about to send.
func (w *capWatch) add(member int64, channel string, at time.Time) {
	w.sent[member] = append(w.sent[member], capSend{channel, at, 0})
}

// capsOf returns the caps that bound c's sends: the engine's and the
// journey's own.
func (e *Engine) capsOf(c *Compiled) []FrequencyCap {
	if len(c.caps) == 0 {
		return e.cfg.FrequencyCaps
	}
	return append(slices.Clip(e.cfg.FrequencyCaps), c.caps...)
}

// longestCap is the longest period of caps.
func longestCap(caps []FrequencyCap) time.Duration {
	var d time.Duration
	for _, c := range caps {
		d = max(d, c.Per)
	}
	return d
}

// capExempt reports whether a send of c escapes frequency caps: a
// transactional message (a code, a receipt), or the answer to the member's
// own action (a journey a WeChat, WeCom, mini-program, email or SMS event
// triggers, within ReplyWindow of entering: a follow's welcome). Exempt
// messages still count toward the caps of later ones.
func capExempt(snd *Send, c *Compiled, enr *model.Enrollment, now time.Time) bool {
	return snd.Category == model.CategoryTransactional || answersAction(c, enr, now)
}

// answersAction reports whether a send of c at now answers the member's
// own action: c is entered by a member's event and the member entered
// within ReplyWindow (a follow's welcome). Quiet hours do not hold such a
// send, nor caps cap it.
func answersAction(c *Compiled, enr *model.Enrollment, now time.Time) bool {
	return c.answersMember() && now.Sub(enr.EnteredAt) <= ReplyWindow
}

// capped checks a send of c to member m by visit v against its frequency caps: the
// step's result when a cap holds or skips it (nil: it goes, and is counted
// in the round's watch). watch reads the members' recent messages, once a
// round; longest is the longest period it must cover.
func (e *Engine) capped(watch func(longest time.Duration) (*capWatch, error), c *Compiled, cs *Step, snd *Send, enr *model.Enrollment, m *model.Member, v *model.StepVisit, now time.Time) (*stepResult, error) {
	caps := e.capsOf(c)
	if len(caps) == 0 || capExempt(snd, c, enr, now) {
		return nil, nil
	}
	w, err := watch(longestCap(caps))
	if err != nil {
		return nil, err
	}
	if until, hit, over := w.over(m.ID, snd.Channel, v.ID, caps, now); over {
		r := capResult(cs, c.onCap, hit, until)
		return &r, nil
	}
	w.add(m.ID, snd.Channel, now)
	return nil, nil
}

// answersMember reports whether c's members enter by their own action.
func (c *Compiled) answersMember() bool {
	if c.trigger != triggerEvent {
		return false
	}
	for _, t := range c.triggerKeys {
		if !memberAction(t) {
			return false
		}
	}
	return true
}

// capResult is the step's result for a send over a cap: it waits until
// the cap allows it (on_cap: delay), or passes without sending (skip).
func capResult(cs *Step, onCap string, hit FrequencyCap, until time.Time) stepResult {
	why := "frequency cap " + hit.String()
	if onCap == OnCapSkip {
		return stepResult{status: model.VisitDone, next: cs.Next, endReason: ReasonCompleted, outcome: "capped: " + why}
	}
	return stepResult{retryAt: until, why: why, keepAttempts: true}
}
