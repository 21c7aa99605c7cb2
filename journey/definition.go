package journey

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/model"
)

// Definition is a journey as written in YAML (DESIGN.md, "Journeys").
type Definition struct {
	Key        string  `yaml:"key"`
	Name       string  `yaml:"name"`
	Trigger    Trigger `yaml:"trigger"`
	Entry      Entry   `yaml:"entry"`
	Exit       []Rule  `yaml:"exit"`
	QuietHours string  `yaml:"quiet_hours"`
	// FrequencyCaps bound this journey's marketing sends by the member's
	// messages from every journey (with the engine's own caps); OnCap says
	// what a send over one does: OnCapDelay (default) or OnCapSkip.
	FrequencyCaps []CapSpec `yaml:"frequency_caps"`
	OnCap         string    `yaml:"on_cap"`
	Steps         []Step    `yaml:"steps"`
	Tags          []string  `yaml:"tags"`
	// Demo marks an example journey (the ones shipped in journeys/): it is
	// loaded only while the default account is the sandbox, unless the
	// operator chose demos (WEJOURNEY_DEMO_JOURNEYS; see SyncDir).
	Demo bool `yaml:"demo"`
	// Goal is the journey's conversion: reaching it ends the enrollment
	// as model.EnrollmentGoal. Nil: the journey has no goal.
	Goal *Rule `yaml:"goal"`
}

// Trigger says which members enter: today an event of one type (Event),
// optionally filtered by Where. Its kind is the key it sets (see
// TriggerKind).
type Trigger struct {
	Event string `yaml:"event"`
	Where string `yaml:"where"`

	node yaml.Node
}

// UnmarshalYAML keeps the trigger's node: Parse checks it against the
// trigger kinds.
func (t *Trigger) UnmarshalYAML(n *yaml.Node) error {
	t.node = *n
	if n.Kind == yaml.MappingNode {
		if v := valueOf(n, "event"); v != nil && v.Kind == yaml.ScalarNode {
			t.Event = v.Value
		}
		if v := valueOf(n, "where"); v != nil && v.Kind == yaml.ScalarNode {
			t.Where = v.Value
		}
	}
	return nil
}

// Entry limits re-entry. The default lets a member re-enter after leaving.
// MaxActive, when positive, caps how many members are in the journey at
// once: an event that would enter one more enters nobody.
type Entry struct {
	Once      bool     `yaml:"once"`
	Cooldown  Duration `yaml:"cooldown"`
	MaxActive int      `yaml:"max_active"`
}

// Rule is an exit rule or a goal. It matches an event by type (Event) and
// an optional expression (Where), or, with When instead, any event after
// which the member satisfies When (an expression over member).
type Rule struct {
	Event string `yaml:"event"`
	Where string `yaml:"where"`
	When  string `yaml:"when"`
}

// Step is one node of the journey graph: an id, exactly one kind (the key
// naming it: send, wait, …, see StepKind) whose compiled value is Body, and
// Next, the following step; a step without next ends the journey.
// OnTimeout is where a wait_for step goes when its timeout passes.
type Step struct {
	ID        string
	Next      string
	OnTimeout string
	// Line is the step's line in its file.
	Line int
	// Body is the kind's compiled value: *Send, *Wait, *WaitFor, *Branch,
	// *Split, *Update, *WebhookSpec, or an added kind's.
	Body StepBody

	kind string
	node yaml.Node
}

// UnmarshalYAML keeps the step's node: Parse reads it with the step kinds.
func (s *Step) UnmarshalYAML(n *yaml.Node) error {
	s.node = *n
	return nil
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

// Kind returns which kind of step s is ("" when the step is invalid).
func (s *Step) Kind() string { return s.kind }

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
	Def         Definition
	Source      string
	steps       map[string]*Step
	first       string
	trigger     string   // trigger kind
	triggerKeys []string // index keys under the trigger kind
	where       *vm.Program
	exits       []compiledRule
	goal        *compiledRule
	quiet       *quietHours
	quietOff    bool // quiet_hours: off — not even the engine's
	caps        []FrequencyCap
	onCap       string
	origin      string
}

// compiledRule is an exit rule or a goal, compiled: an event rule (event
// and where) or an expression rule (event "" and where the rule's when).
type compiledRule struct {
	event string
	where *vm.Program
}

// reason is what an enrollment the rule ends records after prefix ("exit",
// "goal"): the event type, or "when" for an expression rule.
func (r *compiledRule) reason(prefix string) string {
	if r.event == "" {
		return prefix + ":when"
	}
	return prefix + ":" + r.event
}

// FirstStep is the id of the step members enter at.
func (c *Compiled) FirstStep() string { return c.first }

// Step returns the step with that id.
func (c *Compiled) Step(id string) (*Step, bool) {
	s, ok := c.steps[id]
	return s, ok
}

// Parse reads and validates one YAML journey. name (a file path, or "admin")
// prefixes every problem, with the line where there is one; all problems
// are reported, one per line in file order, wrapped in ErrInvalid. Options
// say what exists: WithChannels (configured senders), WithSources (event
// types and props), WithStepKinds and WithTriggerKinds.
func Parse(name string, src []byte, opts ...ParseOption) (*Compiled, error) {
	o := newParseOptions(opts)
	var def Definition
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var typeErr *yaml.TypeError
	if err := dec.Decode(&def); err != nil && !errors.As(err, &typeErr) {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
	}
	var probs []problem
	ck := &Check{name: name, problems: &probs, opts: &o}
	var doc *yaml.Node
	var root yaml.Node
	if yaml.Unmarshal(src, &root) == nil && len(root.Content) > 0 && root.Content[0].Kind == yaml.MappingNode {
		doc = root.Content[0]
	}
	keyLine := func(key string) int {
		for i := 0; doc != nil && i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == key {
				return doc.Content[i].Line
			}
		}
		return 0
	}
	if typeErr != nil {
		// The decoder went on past these; name the section or step each is in.
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
			if _, rest, ok := strings.Cut(msg, ": "); ok && line > 0 {
				msg = rest
			}
			ck.add(line, where, msg)
		}
	}
	c := &Compiled{Def: def, Source: string(src), steps: map[string]*Step{}}
	if def.Key == "" {
		ck.in("key", keyLine("key")).Problemf(nil, "required")
	}

	// The trigger: exactly one trigger kind's key, and where.
	tck := ck.in("trigger", keyLine("trigger"))
	tn := &def.Trigger.node
	var tkind TriggerKind
	var tval *yaml.Node
	fieldOf := triggerFields(o.triggers) // sibling keys of a kind (segment's every)
	if tn.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(tn.Content); i += 2 {
			k := tn.Content[i]
			if k.Value == "where" || fieldOf[k.Value] != "" {
				continue
			}
			found := false
			for _, kind := range o.triggers {
				if kind.Name() != k.Value {
					continue
				}
				found = true
				if tkind != nil {
					tck.Problemf(k, "needs exactly one of %s", triggerNames(o.triggers))
				} else {
					tkind, tval = kind, tn.Content[i+1]
				}
			}
			if !found {
				tck.Problemf(k, "unknown field %q", k.Value)
			}
		}
	}
	if tkind == nil {
		tck.Problemf(nil, "event is required (e.g. wechat.subscribe)")
	} else {
		c.trigger = tkind.Name()
		for i := 0; i+1 < len(tn.Content); i += 2 {
			if k := tn.Content[i]; fieldOf[k.Value] != "" && fieldOf[k.Value] != tkind.Name() {
				tck.Problemf(k, "%s goes with %s, not %s", k.Value, fieldOf[k.Value], tkind.Name())
			}
		}
		if _, ok := tkind.(TriggerFields); ok {
			tval = tn // the kind reads its value and its sibling keys
		}
		c.triggerKeys = tkind.Compile(tval, tck)
		if c.trigger == triggerEvent {
			ck.trigger = def.Trigger.Event
		}
	}
	if def.Trigger.Where != "" {
		wn := valueOf(tn, "where")
		c.where = ck.in("trigger.where", wn.Line).Expr("", wn, def.Trigger.Where, ck.trigger)
	}

	// Exit rules and the goal.
	exitNode := valueOf(doc, "exit")
	for i, r := range def.Exit {
		var rn *yaml.Node
		if exitNode != nil && i < len(exitNode.Content) {
			rn = exitNode.Content[i]
		}
		line := keyLine("exit")
		if rn != nil {
			line = rn.Line
		}
		c.exits = append(c.exits, compileRule(ck, fmt.Sprintf("exit[%d]", i), rn, line, r))
	}
	if def.Goal != nil {
		gn := valueOf(doc, "goal")
		cr := compileRule(ck, "goal", gn, keyLine("goal"), *def.Goal)
		c.goal = &cr
	}
	c.caps, c.onCap = compileCaps(ck, def, keyLine)
	if def.QuietHours == quietOff {
		c.quietOff = true
	} else if def.QuietHours != "" {
		q, err := parseQuietHours(def.QuietHours)
		if err != nil {
			ck.in("quiet_hours", keyLine("quiet_hours")).Problemf(nil, "%v", err)
		}
		c.quiet = q
	}
	if def.Entry.Once && def.Entry.Cooldown != 0 {
		ck.in("entry", keyLine("entry")).Problemf(nil, "once and cooldown exclude each other")
	}
	if def.Entry.MaxActive < 0 {
		ck.in("entry", keyLine("entry")).Problemf(valueOf(valueOf(doc, "entry"), "max_active"), "max_active must be positive")
	}
	if len(def.Steps) == 0 {
		ck.in("steps", keyLine("steps")).Problemf(nil, "a journey needs at least one step")
	}

	// Steps, in file order; each field in the order written.
	sck := make([]*Check, len(def.Steps))
	lines := make([]map[string]int, len(def.Steps))
	for i := range def.Steps {
		s := &def.Steps[i]
		n := &s.node
		s.Line = n.Line
		if v := valueOf(n, "id"); v != nil {
			s.ID = v.Value
		}
		where := fmt.Sprintf("step %q", s.ID)
		if s.ID == "" {
			where = fmt.Sprintf("step #%d", i+1)
		}
		stck := ck.in(where, s.Line)
		sck[i], lines[i] = stck, map[string]int{}
		if n.Kind != yaml.MappingNode {
			stck.Problemf(nil, "a step is a mapping of id, a kind (%s) and next", stepNames(o.steps))
			continue
		}
		if s.ID == "" {
			stck.Problemf(nil, "id is required")
		}
		if _, dup := c.steps[s.ID]; dup {
			stck.Problemf(nil, "duplicate id")
		}
		var kind StepKind
		var val *yaml.Node
		several := false
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			lines[i][k.Value] = k.Line
			switch k.Value {
			case "id":
			case "next", "on_timeout":
				var str string
				if ck.in(where, s.Line).Decode(v, &str) {
					if k.Value == "next" {
						s.Next = str
					} else {
						s.OnTimeout = str
					}
				}
			default:
				i := slices.IndexFunc(o.steps, func(sk StepKind) bool { return sk.Name() == k.Value })
				switch {
				case i < 0:
					stck.Problemf(k, "unknown field %q%s", k.Value, fieldHint(k.Value))
				case kind != nil:
					several = true
				default:
					kind, val = o.steps[i], v
				}
			}
		}
		if kind == nil || several {
			stck.Problemf(nil, "needs exactly one of %s", stepNames(o.steps))
		} else {
			s.kind = kind.Name()
			s.Body = kind.Compile(val, stck)
		}
		if _, dup := c.steps[s.ID]; !dup {
			c.steps[s.ID] = s
		}
		if i == 0 {
			c.first = s.ID
		}
	}
	// Second pass: every reference names a step.
	isStep := func(id string) bool { return c.steps[id] != nil }
	for i := range def.Steps {
		s := &def.Steps[i]
		stck := sck[i]
		if stck == nil || s.node.Kind != yaml.MappingNode {
			continue
		}
		ref := func(field, id string, line int) {
			if id != "" && !isStep(id) {
				stck.add(line, stck.where, fmt.Sprintf("%s %q is not a step", field, id))
			}
		}
		ref("next", s.Next, lines[i]["next"])
		ref("on_timeout", s.OnTimeout, lines[i]["on_timeout"])
		if s.Body != nil {
			for _, r := range s.Body.Refs() {
				ref(r.Field, r.ID, max(r.Line, s.Line))
			}
			if l, ok := s.Body.(interface {
				link(*Check, func(string) bool)
			}); ok {
				l.link(stck, isStep)
			}
		}
		if s.Next != "" && s.Next == s.ID {
			stck.add(lines[i]["next"], stck.where, "next points at itself")
		}
	}
	if !o.stored {
		// A version stored before this check keeps running (the engine
		// cuts such a loop short at run time).
		checkLoops(def.Steps, c.steps, sck)
	}
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].line < probs[j].line })
		errs := make([]error, len(probs))
		for i, p := range probs {
			errs[i] = errors.New(p.msg)
		}
		return nil, fmt.Errorf("%w:\n%w", ErrInvalid, errors.Join(errs...))
	}
	return c, nil
}

// compileRule checks and compiles an exit rule or the goal (where names
// it: "exit[0]", "goal"; n is its node, line its line): either event with
// an optional where, or when alone, an expression over member.
func compileRule(ck *Check, where string, n *yaml.Node, line int, r Rule) compiledRule {
	rck := ck.in(where, line)
	cr := compiledRule{event: r.Event}
	switch {
	case r.When != "" && (r.Event != "" || r.Where != ""):
		rck.Problemf(valueOf(n, "when"), "when excludes event and where (an event rule filters with where)")
	case r.When != "":
		cr.where = ck.in(where+".when", line).Expr("", valueOf(n, "when"), r.When, "")
		if slices.ContainsFunc(exprNames(r.When), func(p []string) bool { return p[0] == "event" }) {
			rck.Problemf(valueOf(n, "when"), "when is over member only (use event and where to match an event)")
		}
		return cr
	case r.Event == "":
		rck.Problemf(nil, "event or when is required")
	default:
		rck.Event("", valueOf(n, "event"), r.Event)
	}
	if r.Where != "" {
		cr.where = ck.in(where+".where", line).Expr("", valueOf(n, "where"), r.Where, r.Event)
	}
	return cr
}

// fieldHint says where a field written at the step's level belongs, when
// it is a field of a kind ("" otherwise).
func fieldHint(field string) string {
	switch field {
	case "event", "where", "timeout", "match", "within":
		return fmt.Sprintf(" (%s goes inside wait_for: { event: …, %s: … })", field, field)
	case "until", "until_attribute", "offset", "at":
		return fmt.Sprintf(" (%s goes inside wait: { %s: … })", field, field)
	}
	return ""
}

func stepNames(kinds []StepKind) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name()
	}
	return strings.Join(names, ", ")
}

func triggerNames(kinds []TriggerKind) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name()
	}
	return strings.Join(names, ", ")
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
var chinaTime = model.ChinaTime

// quietOff is the quiet_hours of a journey that sends at any hour, whatever
// the engine's QuietHours.
const quietOff = "off"

// CheckQuietHours checks a quiet-hours window as journeys and the engine's
// Config.QuietHours take it: "HH:MM-HH:MM", "off" or empty.
func CheckQuietHours(s string) error {
	if s == "" || s == quietOff {
		return nil
	}
	_, err := parseQuietHours(s)
	return err
}

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
