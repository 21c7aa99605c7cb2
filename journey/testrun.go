package journey

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/model"
)

// TestRun is the path a journey takes for one member, walked without
// writing anything: waits are compressed to nothing, a wait_for matches the
// first of the given events that it would (or times out), and each send is
// rendered as it would go out — and, when the run sends (TestRunOptions.Send,
// testers only), delivered to the member.
type TestRun struct {
	Journey string     `json:"journey"`
	Version int        `json:"version"` // 0: a draft, not published
	Member  int64      `json:"member_id"`
	Steps   []TestStep `json:"steps"`
	// End is how the enrollment would end: ReasonCompleted, ReasonTimeout,
	// ReasonFailed (a template failed), "loop" after testRunMaxSteps steps,
	// or "not simulated" at a step kind the test run cannot walk.
	End string `json:"end"`
	// Entered reports whether the event would enter the member: false when
	// the trigger's where refuses it, or the member is outside a segment
	// trigger's segment (the path is walked anyway).
	Entered bool `json:"entered"`
	// Send reports whether the messages were really delivered to the
	// member (TestRunOptions.Send); false: they were only rendered.
	Send bool `json:"send"`
}

// TestStep is one step of a test run.
type TestStep struct {
	Step    string `json:"step"`
	Kind    string `json:"kind"`
	Outcome string `json:"outcome"`
	// Message is what a send step would hand to its channel.
	Message *TestMessage `json:"message,omitempty"`
	// Note says what the test run did instead of the real thing ("waited
	// 10m: compressed", "not called").
	Note string `json:"note,omitempty"`
	// Sends are the real deliveries of a run that sends: the step's
	// channel, then its fallback channels in turn while the member is
	// unreachable, as a real run tries them.
	Sends []TestSend `json:"sends,omitempty"`
}

// TestSend is one message of a test run handed to a channel's sender: sent
// (the provider's id, or sandbox when the sender only logs), or not, with
// the provider's answer.
type TestSend struct {
	Channel    string `json:"channel"`
	Sent       bool   `json:"sent"`
	ProviderID string `json:"provider_id,omitempty"`
	Sandbox    bool   `json:"sandbox,omitempty"`
	// Class, Code and Error describe a refusal (channels.Describe):
	// "unreachable", "quota", "permanent" or "temporary", the provider's
	// code, its message with secrets masked.
	Class string `json:"class,omitempty"`
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// TestMessage is a rendered message of a test run.
type TestMessage struct {
	Channel    string            `json:"channel"`
	Category   string            `json:"category"`
	Text       string            `json:"text,omitempty"`
	Subject    string            `json:"subject,omitempty"`
	URL        string            `json:"url,omitempty"`
	TemplateID string            `json:"template_id,omitempty"`
	Template   string            `json:"template,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	Extra      map[string]string `json:"extra,omitempty"`
	Fallback   []string          `json:"fallback,omitempty"`
}

// testRunMaxSteps is how many steps a test run walks before it calls the
// path a loop.
const testRunMaxSteps = 200

// TestRunOptions are the inputs of a test run.
type TestRunOptions struct {
	// Event enters the member (its type need not be the trigger's: an
	// operator may try a journey with any event). Nil: an empty event of
	// the trigger's type.
	Event *model.Event
	// Later are events that happen while the member waits, in order: each
	// wait_for takes the first one it matches, once.
	Later []*model.Event
	// Send delivers each rendered message to the member for real, through
	// the channel senders (Config.Senders) as a channel test send does
	// (idempotency key "test-…", no delivery row): the member is not
	// entered, no step visit or delivery is recorded, so journey stats do
	// not count them. The member's marketing opt-outs and an unfollowed
	// Official Account are honoured as in a real run. Only a tester
	// (model.TesterTag) is sent to: any other member is refused with
	// ErrNotTester before anything is sent.
	Send bool
}

// ErrNotTester is returned by TestRun asked to send (TestRunOptions.Send)
// to a member who does not carry model.TesterTag.
var ErrNotTester = errors.New("the member is not a tester")

// TestRun walks c for member m (see TestRun). Nothing is written, and no
// channel is called unless opts.Send asks for it (and then only for a
// tester); the member is left as it is (update steps change a copy that
// later steps see).
func (e *Engine) TestRun(ctx context.Context, c *Compiled, version int, m *model.Member, opts TestRunOptions) (*TestRun, error) {
	if opts.Send {
		if !m.IsTester() {
			return nil, fmt.Errorf("%w: member %s does not carry the reserved tag %q, and a test run sends only to testers", ErrNotTester, testWho(m), model.TesterTag)
		}
		if e.cfg.Senders == nil {
			return nil, errors.New("journey: a test run that sends needs the channel senders (Config.Senders)")
		}
	}
	ev := opts.Event
	if ev == nil {
		ev = c.testEvent()
	}
	if ev.At.IsZero() {
		ev.At = e.now()
	}
	mem := *m
	mem.Tags = slices.Clone(m.Tags)
	mem.Attrs = maps.Clone(m.Attrs)
	enr := &model.Enrollment{JourneyID: 0, MemberID: m.ID, Status: model.EnrollmentActive, Event: eventEnv(ev), EnteredAt: e.now()}
	vars := env{"event": enr.Event, "member": memberEnv(&mem)}
	out := &TestRun{Journey: c.Def.Key, Version: version, Member: m.ID, Entered: e.eval(c.where, vars) && c.inSegment(e, vars), Send: opts.Send}
	later := slices.Clone(opts.Later)
	cur := c.first
	for i := 0; ; i++ {
		if i == testRunMaxSteps {
			out.End = "loop" // waits are compressed: a loop through one goes round for ever
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cs := c.steps[cur]
		if cs == nil {
			out.End = ReasonFailed
			out.Steps = append(out.Steps, TestStep{Step: cur, Outcome: "missing step"})
			return out, nil
		}
		ts := TestStep{Step: cs.ID, Kind: cs.kind}
		next := cs.Next
		switch b := cs.Body.(type) {
		case *Send:
			v := &model.StepVisit{StepID: cs.ID}
			msg, bad := e.renderSend(b, v, enr, vars)
			if bad != nil {
				ts.Outcome = bad.outcome
				out.Steps = append(out.Steps, ts)
				out.End = ReasonFailed
				return out, nil
			}
			ts.Outcome = "rendered"
			ts.Note = "not sent (test run)"
			ts.Message = testMessage(b.Channel, msg, b)
			if opts.Send {
				var err error
				ts.Sends, err = e.testSend(ctx, b, msg, &mem)
				ts.Note = "sent to the tester (test run: not recorded)"
				switch {
				case err == nil:
					ts.Outcome = model.DeliverySent
					if last := ts.Sends[len(ts.Sends)-1]; last.Channel != b.Channel {
						ts.Outcome = "fallback:" + last.Channel
					} else if last.Sandbox {
						ts.Outcome = model.DeliverySandbox
					}
				case errors.Is(err, channels.ErrUnreachable) && b.fallback != "":
					ts.Outcome, ts.Note, next = "fallback:"+b.fallback, "unreachable: the step's fallback", b.fallback
				case errors.Is(err, channels.ErrUnreachable), errors.Is(err, channels.ErrPermanent):
					ts.Outcome, ts.Note = "failed", "not sent"
					out.End = ReasonFailed
					if errors.Is(err, channels.ErrUnreachable) {
						ts.Outcome, out.End = ReasonUnreachable, ReasonUnreachable
					}
					out.Steps = append(out.Steps, ts)
					return out, nil
				default:
					ts.Outcome, ts.Note = "failed", "not sent: a real run would try again later (a spent quota or a temporary error)"
				}
			}
		case *Wait:
			ts.Outcome, ts.Note = b.testRun(e.now(), &mem)
		case *WaitFor:
			matched := -1
			for j, l := range later {
				if b.resumes(e, l, env{"event": eventEnv(l), "member": memberEnv(&mem)}, enr) {
					matched = j
					break
				}
			}
			if matched >= 0 {
				later = slices.Delete(later, matched, matched+1)
				ts.Outcome = "matched"
				ts.Note = "the given " + b.Event + " arrived"
			} else {
				ts.Outcome = "timeout"
				ts.Note = fmt.Sprintf("no %s given: timed out after %s (compressed)", b.Event, time.Duration(b.Timeout))
				if b.Within > 0 {
					ts.Note = fmt.Sprintf("no %s given: timed out after %s and the %s grace for late events (compressed)", b.Event, time.Duration(b.Timeout), time.Duration(b.Within))
				}
				next = cs.OnTimeout
				if next == "" {
					out.Steps = append(out.Steps, ts)
					out.End = ReasonTimeout
					return out, nil
				}
			}
		case *Branch, *Split:
			res, err := b.(StepBody).Run(&Run{Ctx: ctx, Step: cs, Visit: &model.StepVisit{StepID: cs.ID}, Enrollment: enr, Member: &mem, Now: e.now(), e: e, c: c, vars: vars})
			if err != nil {
				return nil, err
			}
			ts.Outcome, next = res.Outcome, res.Next
		case *Update:
			applyUpdateTo(&mem, b)
			vars["member"] = memberEnv(&mem)
			ts.Outcome, ts.Note = "updated", "applied to a copy of the member"
		case *WebhookSpec:
			ts.Outcome, ts.Note = "skipped", "not called (test run)"
		default:
			ts.Outcome = "not simulated"
			out.Steps = append(out.Steps, ts)
			out.End = "not simulated"
			return out, nil
		}
		out.Steps = append(out.Steps, ts)
		if next == "" {
			out.End = ReasonCompleted
			return out, nil
		}
		cur = next
	}
}

// testSend delivers msg, rendered for snd, to member m as a test send:
// on snd's channel, then on its fallback channels while m is unreachable.
// It answers each attempt and the last one's error (nil: sent).
func (e *Engine) testSend(ctx context.Context, snd *Send, msg channels.Message, m *model.Member) ([]TestSend, error) {
	var (
		out []TestSend
		err error
	)
	for _, ch := range append([]string{snd.Channel}, snd.fbChans...) {
		msg.Channel, msg.To, msg.IdempotencyKey = ch, recipientOf(m), channels.TestKey()
		caps, has := e.cfg.Senders.Capabilities(ch)
		var res channels.Result
		if err = refusal(msg, caps, has, m); err == nil {
			res, err = e.cfg.Senders.Send(ctx, msg)
		}
		ts := TestSend{Channel: ch}
		if err == nil {
			ts.Sent, ts.ProviderID, ts.Sandbox = true, res.ProviderID, res.Sandbox
			return append(out, ts), nil
		}
		f := channels.Describe(err)
		ts.Class, ts.Code, ts.Error = f.Class, f.Code, f.Error
		out = append(out, ts)
		if !errors.Is(err, channels.ErrUnreachable) {
			break
		}
	}
	return out, err
}

// testWho names m for a message: its id, else its openid.
func testWho(m *model.Member) string {
	if m.ID != 0 {
		return fmt.Sprint(m.ID)
	}
	return fmt.Sprintf("%q (not in the database)", m.OpenID)
}

// applyUpdateTo changes m's tags and attributes as u would.
func applyUpdateTo(m *model.Member, u *Update) {
	for _, t := range u.AddTags {
		if !slices.Contains(m.Tags, t) {
			m.Tags = append(m.Tags, t)
		}
	}
	m.Tags = slices.DeleteFunc(m.Tags, func(t string) bool { return slices.Contains(u.RemoveTags, t) })
	if len(u.Set) > 0 && m.Attrs == nil {
		m.Attrs = map[string]any{}
	}
	maps.Copy(m.Attrs, u.Set)
}

func testMessage(channel string, msg channels.Message, snd *Send) *TestMessage {
	t := &TestMessage{Channel: channel, Category: msg.Category, Text: msg.Text, Subject: msg.Subject, URL: msg.URL,
		TemplateID: msg.TemplateID, Template: msg.Template}
	if len(msg.Data) > 0 {
		t.Data = msg.Data
	}
	if len(msg.Extra) > 0 {
		t.Extra = msg.Extra
	}
	t.Fallback = append(t.Fallback, snd.fbChans...)
	if snd.fallback != "" {
		t.Fallback = append(t.Fallback, snd.fallback)
	}
	return t
}
