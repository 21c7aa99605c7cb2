package journey

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/channels"
)

// Definition is a journey as written in YAML (DESIGN.md, "Journeys").
type Definition struct {
	Key        string   `yaml:"key"`
	Name       string   `yaml:"name"`
	Trigger    Trigger  `yaml:"trigger"`
	Entry      Entry    `yaml:"entry"`
	Exit       []Rule   `yaml:"exit"`
	QuietHours string   `yaml:"quiet_hours"`
	Steps      []Step   `yaml:"steps"`
	Tags       []string `yaml:"tags"`
	// Demo marks an example journey (the ones shipped in journeys/): it is
	// loaded only while the default account is the sandbox, unless the
	// operator chose demos (WEJOURNEY_DEMO_JOURNEYS; see SyncDir).
	Demo bool `yaml:"demo"`
}

// Trigger says which events enter members.
type Trigger struct {
	Event string `yaml:"event"`
	Where string `yaml:"where"`
}

// Entry limits re-entry. The default lets a member re-enter after leaving.
type Entry struct {
	Once     bool     `yaml:"once"`
	Cooldown Duration `yaml:"cooldown"`
}

// Rule matches an event by type and an optional expression.
type Rule struct {
	Event string `yaml:"event"`
	Where string `yaml:"where"`
}

// Step is one node of the journey graph. Exactly one of its kinds is set.
// Next names the following step; a step without next ends the journey.
type Step struct {
	ID        string         `yaml:"id"`
	Send      *Send          `yaml:"send"`
	Wait      *Duration      `yaml:"wait"`
	WaitFor   *WaitFor       `yaml:"wait_for"`
	Branch    []BranchArm    `yaml:"branch"`
	Split     []SplitArm     `yaml:"split"`
	Update    *Update        `yaml:"update"`
	Webhook   *WebhookSpec   `yaml:"webhook"`
	Next      string         `yaml:"next"`
	OnTimeout string         `yaml:"on_timeout"`
	Extra     map[string]any `yaml:",inline"`
}

// Send delivers one message. Fallback names a step to go to, or a channel to
// try, when the member is unreachable on Channel.
type Send struct {
	Channel    string            `yaml:"channel"`
	Text       string            `yaml:"text"`
	Subject    string            `yaml:"subject"`
	TemplateID string            `yaml:"template_id"`
	Template   string            `yaml:"template"` // SMS template code
	URL        string            `yaml:"url"`
	Data       map[string]string `yaml:"data"`
	Params     map[string]string `yaml:"params"` // SMS params
	Extra      map[string]string `yaml:"extra"`  // media_id, title, pagepath, ...
	Fallback   string            `yaml:"fallback"`
}

// WaitFor pauses until an event matches or the timeout passes.
type WaitFor struct {
	Event   string   `yaml:"event"`
	Where   string   `yaml:"where"`
	Timeout Duration `yaml:"timeout"`
}

// BranchArm is one arm of a branch: the first whose When holds (or has no When) wins.
type BranchArm struct {
	When string `yaml:"when"`
	Next string `yaml:"next"`
}

// SplitArm is one arm of an A/B split.
type SplitArm struct {
	Weight int    `yaml:"weight"`
	Next   string `yaml:"next"`
}

// Update changes the member.
type Update struct {
	AddTags    []string       `yaml:"add_tags"`
	RemoveTags []string       `yaml:"remove_tags"`
	Set        map[string]any `yaml:"set"`
}

// WebhookSpec posts to the brand's system.
type WebhookSpec struct {
	URL     string            `yaml:"url"`
	Method  string            `yaml:"method"`
	Body    string            `yaml:"body"`
	Headers map[string]string `yaml:"headers"`
}

// Step kinds, as recorded on step visits.
const (
	KindSend    = "send"
	KindWait    = "wait"
	KindWaitFor = "wait_for"
	KindBranch  = "branch"
	KindSplit   = "split"
	KindUpdate  = "update"
	KindWebhook = "webhook"
)

// Kind returns which kind of step s is ("" when none or several are set).
func (s *Step) Kind() string {
	var kinds []string
	if s.Send != nil {
		kinds = append(kinds, KindSend)
	}
	if s.Wait != nil {
		kinds = append(kinds, KindWait)
	}
	if s.WaitFor != nil {
		kinds = append(kinds, KindWaitFor)
	}
	if s.Branch != nil {
		kinds = append(kinds, KindBranch)
	}
	if s.Split != nil {
		kinds = append(kinds, KindSplit)
	}
	if s.Update != nil {
		kinds = append(kinds, KindUpdate)
	}
	if s.Webhook != nil {
		kinds = append(kinds, KindWebhook)
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

// Duration is a time.Duration written as "10m", "48h" or "7d".
type Duration time.Duration

// UnmarshalYAML parses Go durations plus a "d" (day) suffix. A bad one is a
// *yaml.TypeError, so decoding goes on and Parse reports every problem.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses "90s", "10m", "48h", "7d", "1d12h". Negative
// durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "-") {
		return 0, fmt.Errorf("bad duration %q: must not be negative", s)
	}
	var days time.Duration
	if i := strings.Index(s, "d"); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: want 30s, 10m, 48h or 7d", s)
	}
	return days + v, nil
}

// ErrInvalid wraps every validation problem of a journey definition.
var ErrInvalid = errors.New("invalid journey")

// Compiled is a validated definition with its expressions and templates
// compiled. It is immutable and shared.
type Compiled struct {
	Def    Definition
	Source string
	steps  map[string]*compiledStep
	first  string
	where  *vm.Program
	exits  []compiledRule
	quiet  *quietHours
	origin string
}

type compiledRule struct {
	event string
	where *vm.Program
}

type compiledStep struct {
	Step
	index    int
	texts    map[string]*template.Template // send/webhook fields by name
	data     map[string]*template.Template // template data / sms params
	whens    []*vm.Program                 // branch arms
	waitFor  *vm.Program
	fallback string // step id
	fbChan   string // channel
}

// FirstStep is the id of the step members enter at.
func (c *Compiled) FirstStep() string { return c.first }

// Step returns the step with that id.
func (c *Compiled) Step(id string) (*Step, bool) {
	s, ok := c.steps[id]
	if !ok {
		return nil, false
	}
	return &s.Step, true
}

// knownChannels are the send channels the engine accepts in definitions.
var knownChannels = map[string]bool{
	channels.WeChatText: true, channels.WeChatNews: true, channels.WeChatImage: true,
	channels.WeChatMiniprogramPage: true, channels.WeChatTemplate: true, channels.WeChatSubscribe: true,
	channels.WeComWelcome: true, channels.WeComText: true, channels.SMS: true, channels.Email: true,
}

// exprEnv declares the expression variables for compile-time checks; event
// and member fields are open maps, so any field name compiles.
var exprEnv = map[string]any{"event": map[string]any{}, "member": map[string]any{}}

func compileExpr(src string) (*vm.Program, error) {
	return expr.Compile(src, expr.Env(exprEnv), expr.AsBool())
}

// Parse reads and validates one YAML journey. name (a file path, or "admin")
// prefixes every problem; all problems are reported, one per line, wrapped
// in ErrInvalid.
func Parse(name string, src []byte) (*Compiled, error) {
	var def Definition
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var typeErr *yaml.TypeError
	if err := dec.Decode(&def); err != nil && !errors.As(err, &typeErr) {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	c := &Compiled{Def: def, Source: string(src), steps: map[string]*compiledStep{}}
	var errs []error
	bad := func(where, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", name, where, fmt.Sprintf(format, args...)))
	}
	decodeBad := map[string]bool{} // where the decoder already complained
	if typeErr != nil {
		// The decoder went on past these; name the step each one is in.
		starts := sections(src)
		for _, msg := range typeErr.Errors {
			var line int
			fmt.Sscanf(msg, "line %d:", &line)
			where := "definition"
			for _, st := range starts {
				if st.line <= line {
					where = st.where
				}
			}
			bad(where, "%s", msg)
			decodeBad[where] = true
		}
	}
	if def.Key == "" {
		bad("key", "required")
	}
	if def.Trigger.Event == "" {
		bad("trigger", "event is required (e.g. wechat.subscribe)")
	}
	if def.Trigger.Where != "" {
		p, err := compileExpr(def.Trigger.Where)
		if err != nil {
			bad("trigger.where", "%v", oneLine(err))
		}
		c.where = p
	}
	for i, r := range def.Exit {
		if r.Event == "" {
			bad(fmt.Sprintf("exit[%d]", i), "event is required")
		}
		cr := compiledRule{event: r.Event}
		if r.Where != "" {
			p, err := compileExpr(r.Where)
			if err != nil {
				bad(fmt.Sprintf("exit[%d].where", i), "%v", oneLine(err))
			}
			cr.where = p
		}
		c.exits = append(c.exits, cr)
	}
	if def.QuietHours != "" {
		q, err := parseQuietHours(def.QuietHours)
		if err != nil {
			bad("quiet_hours", "%v", err)
		}
		c.quiet = q
	}
	if def.Entry.Once && def.Entry.Cooldown != 0 {
		bad("entry", "once and cooldown exclude each other")
	}
	if len(def.Steps) == 0 {
		bad("steps", "a journey needs at least one step")
	}
	for i := range def.Steps {
		s := &def.Steps[i]
		where := fmt.Sprintf("step %q", s.ID)
		if s.ID == "" {
			where = fmt.Sprintf("step #%d", i+1)
			bad(where, "id is required")
		}
		if _, dup := c.steps[s.ID]; dup {
			bad(where, "duplicate id")
		}
		for k := range s.Extra {
			bad(where, "unknown field %q", k)
		}
		cs := &compiledStep{Step: *s, index: i, texts: map[string]*template.Template{}, data: map[string]*template.Template{}}
		c.steps[s.ID] = cs
		if i == 0 {
			c.first = s.ID
		}
		tmpl := func(field, text string, into map[string]*template.Template, key string) {
			t, err := template.New(field).Option("missingkey=zero").Parse(text)
			if err != nil {
				bad(where, "%s: %v", field, err)
				return
			}
			into[key] = t
		}
		switch s.Kind() {
		case "":
			bad(where, "needs exactly one of send, wait, wait_for, branch, split, update, webhook")
		case KindSend:
			snd := s.Send
			if !knownChannels[snd.Channel] {
				bad(where, "unknown channel %q", snd.Channel)
			}
			switch snd.Channel {
			case channels.WeChatText, channels.WeComText:
				if snd.Text == "" {
					bad(where, "%s needs text", snd.Channel)
				}
			case channels.WeChatTemplate, channels.WeChatSubscribe:
				if snd.TemplateID == "" {
					bad(where, "%s needs template_id", snd.Channel)
				}
			case channels.SMS:
				if snd.Template == "" {
					bad(where, "sms needs template")
				}
			}
			for f, text := range map[string]string{"text": snd.Text, "subject": snd.Subject, "url": snd.URL} {
				if text != "" {
					tmpl(f, text, cs.texts, f)
				}
			}
			for k, v := range snd.Data {
				tmpl("data."+k, v, cs.data, k)
			}
			for k, v := range snd.Params {
				tmpl("params."+k, v, cs.data, k)
			}
			for k, v := range snd.Extra {
				tmpl("extra."+k, v, cs.texts, "extra."+k)
			}
		case KindWait:
			if *s.Wait <= 0 && !decodeBad[where] {
				bad(where, "wait must be positive")
			}
		case KindWaitFor:
			if s.WaitFor.Event == "" {
				bad(where, "wait_for needs event")
			}
			if s.WaitFor.Timeout <= 0 && !decodeBad[where] {
				bad(where, "wait_for needs a positive timeout")
			}
			if s.WaitFor.Where != "" {
				p, err := compileExpr(s.WaitFor.Where)
				if err != nil {
					bad(where, "wait_for.where: %v", oneLine(err))
				}
				cs.waitFor = p
			}
		case KindBranch:
			if len(s.Branch) == 0 {
				bad(where, "branch needs arms")
			}
			for j, arm := range s.Branch {
				var p *vm.Program
				if arm.When != "" {
					var err error
					if p, err = compileExpr(arm.When); err != nil {
						bad(where, "branch[%d].when: %v", j, oneLine(err))
					}
				} else if j != len(s.Branch)-1 {
					bad(where, "branch[%d]: only the last arm may omit when", j)
				}
				cs.whens = append(cs.whens, p)
			}
		case KindSplit:
			total := 0
			for j, arm := range s.Split {
				if arm.Weight <= 0 {
					bad(where, "split[%d]: weight must be positive", j)
				}
				total += arm.Weight
			}
			if total == 0 {
				bad(where, "split needs arms")
			}
		case KindWebhook:
			if s.Webhook.URL == "" {
				bad(where, "webhook needs url")
			}
			tmpl("webhook.url", s.Webhook.URL, cs.texts, "url")
			tmpl("webhook.body", s.Webhook.Body, cs.texts, "body")
		}
	}
	// Second pass: every reference names a step.
	for _, cs := range c.steps {
		where := fmt.Sprintf("step %q", cs.ID)
		ref := func(field, id string) {
			if id != "" && c.steps[id] == nil {
				bad(where, "%s %q is not a step", field, id)
			}
		}
		ref("next", cs.Next)
		ref("on_timeout", cs.OnTimeout)
		for _, arm := range cs.Branch {
			ref("branch next", arm.Next)
		}
		for _, arm := range cs.Split {
			ref("split next", arm.Next)
		}
		if cs.Send != nil && cs.Send.Fallback != "" {
			switch {
			case c.steps[cs.Send.Fallback] != nil:
				cs.fallback = cs.Send.Fallback
			case knownChannels[cs.Send.Fallback]:
				cs.fbChan = cs.Send.Fallback
			default:
				bad(where, "fallback %q is neither a step nor a channel", cs.Send.Fallback)
			}
		}
		if cs.Next != "" && cs.Next == cs.ID {
			bad(where, "next points at itself")
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w:\n%w", ErrInvalid, errors.Join(errs...))
	}
	return c, nil
}

type section struct {
	line  int
	where string
}

// sections lists, in order, the lines where each top-level key and each
// step of a journey's YAML begin, to name where a decoding problem is.
func sections(src []byte) []section {
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	var out []section
	for i := 0; i+1 < len(doc.Content); i += 2 {
		out = append(out, section{doc.Content[i].Line, doc.Content[i].Value})
		if doc.Content[i].Value != "steps" {
			continue
		}
		for j, item := range doc.Content[i+1].Content {
			where := fmt.Sprintf("step #%d", j+1)
			for k := 0; k+1 < len(item.Content); k += 2 {
				if item.Content[k].Value == "id" {
					where = fmt.Sprintf("step %q", item.Content[k+1].Value)
				}
			}
			out = append(out, section{item.Line, where})
		}
	}
	return out
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// quietHours is a daily window in China Standard Time during which sends wait.
type quietHours struct{ from, to int } // minutes after midnight

// chinaTime is UTC+8; WeChat's members and brands live in it.
var chinaTime = time.FixedZone("CST", 8*3600)

func parseQuietHours(s string) (*quietHours, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 2 {
		return nil, fmt.Errorf("%q: want HH:MM-HH:MM", s)
	}
	var mins [2]int
	for i, p := range parts {
		t, err := time.Parse("15:04", strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%q: want HH:MM-HH:MM", s)
		}
		mins[i] = t.Hour()*60 + t.Minute()
	}
	if mins[0] == mins[1] {
		return nil, fmt.Errorf("%q: empty window", s)
	}
	return &quietHours{mins[0], mins[1]}, nil
}

// until returns when the quiet window containing t ends, or t when t is outside it.
func (q *quietHours) until(t time.Time) time.Time {
	if q == nil {
		return t
	}
	local := t.In(chinaTime)
	m := local.Hour()*60 + local.Minute()
	in := false
	if q.from < q.to {
		in = m >= q.from && m < q.to
	} else {
		in = m >= q.from || m < q.to
	}
	if !in {
		return t
	}
	end := time.Date(local.Year(), local.Month(), local.Day(), q.to/60, q.to%60, 0, 0, chinaTime)
	if !end.After(local) {
		end = end.AddDate(0, 0, 1)
	}
	return end.UTC()
}
