package journey

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// StepKind is one kind of step: the YAML key that selects it in a step
// ("send", "wait", …, also the kind recorded on its visits) and how its
// value is read and checked. Adding a kind is one file with a type
// implementing StepKind and one line in BuiltinStepKinds (or, for a test or
// an extension, Config.StepKinds and WithStepKinds).
type StepKind interface {
	// Name is the step's YAML key and the kind recorded on its visits.
	Name() string
	// Compile decodes and checks the kind's YAML value n, reporting every
	// problem to ck, and returns the compiled body. It may return a body
	// even when it reported problems (the journey is then refused).
	Compile(n *yaml.Node, ck *Check) StepBody
}

// StepBody is one step's kind-specific part, compiled. Bodies are
// immutable and shared by every visit of their journey version.
type StepBody interface {
	// Waits says how long a visit to the step waits once entered before it
	// runs, and whether it waits at all (false: it runs at once).
	Waits() (time.Duration, bool)
	// Refs lists the step ids the body names (branch and split arms), in
	// order, for the reference check. Step.Next and on_timeout are checked
	// for every kind.
	Refs() []Ref
	// Run executes a claimed visit of the step. An error leaves the visit
	// claimed, to be retried.
	Run(r *Run) (Result, error)
}

// UntilWaiter is a StepBody whose wait ends at a moment computed when the
// member enters the step (a time of day, a date in the member's
// attributes) rather than after a fixed duration. The engine asks it
// instead of Waits. The moment is computed once: what changes later (the
// attribute) does not move a wait already entered.
type UntilWaiter interface {
	// WaitUntil returns when a visit entered at now by member m runs. A
	// moment not after now runs it at once, as a step that does not wait.
	WaitUntil(now time.Time, m *model.Member) time.Time
}

// Ref is a step id a body names, with the field that names it and its line.
type Ref struct {
	Field string
	ID    string
	Line  int
}

// Run is a claimed visit being executed: what a step body may read.
type Run struct {
	Ctx        context.Context
	Step       *Step
	Visit      *model.StepVisit
	Enrollment *model.Enrollment
	Member     *model.Member
	Now        time.Time

	e    *Engine
	c    *Compiled
	vars env
}

// Eval evaluates a compiled boolean expression against the visit's event
// (the one that entered the member) and member; a nil program is true.
func (r *Run) Eval(p *vm.Program) bool { return r.e.eval(p, r.vars) }

// Vars returns what expressions and templates see: "event" and "member".
func (r *Run) Vars() map[string]any { return r.vars }

// Result is what running a step decided.
type Result struct {
	// Outcome is recorded on the visit ("sent", "branch:0", …).
	Outcome string
	// Next is the step to go to; "" ends the enrollment.
	Next string
	// Failed marks the visit failed (and the enrollment, when Next is "").
	Failed bool
	// EndReason is recorded on the enrollment when Next is "". Default
	// ReasonCompleted, or ReasonFailed when Failed.
	EndReason string

	raw *stepResult // the built-in kinds' full result (deliveries, retries)
}

func (r Result) internal() stepResult {
	if r.raw != nil {
		return *r.raw
	}
	s := stepResult{status: model.VisitDone, outcome: r.Outcome, next: r.Next, endReason: r.EndReason}
	if r.Failed {
		s.status = model.VisitFailed
	}
	if s.endReason == "" {
		s.endReason = ReasonCompleted
		if r.Failed {
			s.endReason = ReasonFailed
		}
	}
	return s
}

func raw(s stepResult) Result { return Result{raw: &s} }

// BuiltinStepKinds returns the step kinds wejourney ships, in the order
// messages list them.
func BuiltinStepKinds() []StepKind {
	return []StepKind{
		sendKind{},
		waitKind{},
		waitForKind{},
		branchKind{},
		splitKind{},
		updateKind{},
		webhookKind{},
	}
}

// TriggerKind is one kind of trigger: the key under trigger: that selects
// it ("event") and the index keys a live journey is found under. Route
// looks up event triggers by event type; schedule and segment triggers plug
// in beside it as one file and one line in BuiltinTriggerKinds.
type TriggerKind interface {
	// Name is the key under trigger: and the index's name.
	Name() string
	// Compile checks the kind's value n and returns the index keys of a
	// journey with this trigger (for event: the event type).
	Compile(n *yaml.Node, ck *Check) []string
}

// TriggerFields is a TriggerKind that takes keys of its own beside its
// name under trigger: (segment's every). Its Compile gets the whole
// trigger mapping (where included) instead of its key's value.
type TriggerFields interface {
	TriggerKind
	// Fields lists the kind's other keys.
	Fields() []string
}

// triggerFields maps each trigger kind's other keys to the kind.
func triggerFields(kinds []TriggerKind) map[string]string {
	m := map[string]string{}
	for _, k := range kinds {
		if f, ok := k.(TriggerFields); ok {
			for _, name := range f.Fields() {
				m[name] = k.Name()
			}
		}
	}
	return m
}

// BuiltinTriggerKinds returns the trigger kinds wejourney ships.
func BuiltinTriggerKinds() []TriggerKind {
	return []TriggerKind{eventTrigger{}, scheduleTrigger{}, segmentTrigger{}}
}

// ChannelSet says which channels have a sender and what each needs;
// *channels.Registry implements it.
type ChannelSet interface {
	Capabilities(channel string) (channels.Capabilities, bool)
}

// ParseOption changes what Parse checks.
type ParseOption func(*parseOptions)

type parseOptions struct {
	stored   bool // a stored version: structure only, not what exists
	channels ChannelSet
	sources  *events.Registry
	steps    []StepKind
	triggers []TriggerKind
}

// WithChannels checks send channels (and channel fallbacks) against the
// configured senders: a channel without one, or a step lacking a field its
// channel requires, is refused. Without it only the channel name is checked.
func WithChannels(c ChannelSet) ParseOption {
	return func(o *parseOptions) { o.channels = c }
}

// WithSources checks event types and props against these sources (default
// events.Default()).
func WithSources(r *events.Registry) ParseOption {
	return func(o *parseOptions) {
		if r != nil {
			o.sources = r
		}
	}
}

// WithStepKinds adds step kinds to the built-in ones.
func WithStepKinds(kinds ...StepKind) ParseOption {
	return func(o *parseOptions) { o.steps = append(o.steps, kinds...) }
}

// WithTriggerKinds adds trigger kinds to the built-in ones.
func WithTriggerKinds(kinds ...TriggerKind) ParseOption {
	return func(o *parseOptions) { o.triggers = append(o.triggers, kinds...) }
}

// storedVersion re-parses a stored version: only the structure is checked,
// not channels, event types or names, which may have changed since it was
// published.
func storedVersion(o *parseOptions) { o.stored = true }

func newParseOptions(opts []ParseOption) parseOptions {
	o := parseOptions{steps: BuiltinStepKinds(), triggers: BuiltinTriggerKinds()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.sources == nil {
		o.sources = events.Default()
	}
	return o
}

// problem is one validation problem; line 0 when no line applies.
type problem struct {
	line int
	msg  string
}

// Check collects the problems of one journey and knows what exists
// (channels, event sources). Step and trigger kinds report through it.
type Check struct {
	name     string
	where    string // "step \"id\"", "trigger", …
	line     int    // of the step or section
	problems *[]problem
	opts     *parseOptions
	trigger  string // the trigger's event type, "" when none
}

// in returns a Check reporting under another section name and line.
func (ck *Check) in(where string, line int) *Check {
	c := *ck
	c.where, c.line = where, line
	return &c
}

// Problemf reports a problem at n's line (the section's line when n is nil).
func (ck *Check) Problemf(n *yaml.Node, format string, args ...any) {
	line := ck.line
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	ck.add(line, ck.where, fmt.Sprintf(format, args...))
}

func (ck *Check) add(line int, where, msg string) {
	prefix := ck.name
	if line > 0 {
		prefix = fmt.Sprintf("%s:%d", ck.name, line)
	}
	*ck.problems = append(*ck.problems, problem{line, fmt.Sprintf("%s: %s: %s", prefix, where, msg)})
}

// TriggerEvent is the journey's trigger event type ("" when it has none):
// the event expressions and templates of steps see.
func (ck *Check) TriggerEvent() string { return ck.trigger }

// Decode decodes n into v (a pointer to a struct, or another value),
// refusing mapping keys v's struct has no yaml field for. It reports
// problems and returns false when there were any.
func (ck *Check) Decode(n *yaml.Node, v any) bool {
	ok := true
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode {
		known := map[string]bool{}
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			known[name] = true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; !known[k.Value] {
				ck.Problemf(k, "unknown field %q", k.Value)
				ok = false
			}
		}
	}
	if err := n.Decode(v); err != nil {
		if te, is := err.(*yaml.TypeError); is {
			for _, msg := range te.Errors {
				line := 0
				fmt.Sscanf(msg, "line %d:", &line)
				_, rest, cut := strings.Cut(msg, ": ")
				if !cut {
					rest = msg
				}
				ck.add(max(line, ck.line), ck.where, rest)
			}
		} else {
			ck.Problemf(n, "%v", err)
		}
		ok = false
	}
	return ok
}

// Expr compiles a boolean expression of field (its YAML node n), checking
// the names it uses: event.<prop> against eventType's props (its own
// props, type and at; any prop for a brand event) and member.<field>
// against the member's fields. A nil program means "" or a problem.
func (ck *Check) Expr(field string, n *yaml.Node, src, eventType string) *vm.Program {
	if src == "" {
		return nil
	}
	p, err := compileExpr(src)
	if err != nil {
		ck.Problemf(n, "%s%s", label(field), oneLine(err))
		return nil
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return p
	}
	v := &nameVisitor{}
	ast.Walk(&tree.Node, v)
	for _, path := range v.paths {
		if msg := ck.checkName(path, eventType); msg != "" {
			ck.Problemf(n, "%s%s", label(field), msg)
		}
	}
	return p
}

// templateFuncs are the functions message templates may call: json
// writes a value as JSON ({{ json .member.nickname }} is a quoted,
// escaped string), for webhook bodies.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// Template parses a message template of field, checking the names it uses
// like Expr does (.event.X, .member.X; any other top-level name is refused).
func (ck *Check) Template(field string, n *yaml.Node, text string) *template.Template {
	t, err := template.New(field).Option("missingkey=zero").Funcs(templateFuncs).Parse(text)
	if err != nil {
		ck.Problemf(n, "%s: %v", field, err)
		return nil
	}
	var paths [][]string
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			templateFields(tt.Tree.Root, &paths)
		}
	}
	for _, path := range paths {
		if msg := ck.checkName(path, ck.trigger); msg != "" {
			ck.Problemf(n, "%s: %s", field, msg)
		}
	}
	return t
}

// Event checks that an event of type t can occur.
func (ck *Check) Event(field string, n *yaml.Node, t string) {
	src := ck.opts.sources
	if t == "" || ck.opts.stored || src.Known(t) {
		return
	}
	ns, _, _ := strings.Cut(t, ".")
	var same []string
	for _, k := range src.Types() {
		if strings.HasPrefix(k, ns+".") {
			same = append(same, k)
		}
	}
	hint := fmt.Sprintf("no source emits %s. events yet", ns)
	if len(same) > 0 {
		hint = fmt.Sprintf("%s events: %s", ns, strings.Join(same, ", "))
	}
	ck.Problemf(n, "%sno source emits event %q (%s)", label(field), t, hint)
}

// IsChannel reports whether name is a channel: one of the channels package,
// or one the WithChannels set has a sender for (a sender added by a brand).
// In a stored version any name is: it was checked when published.
func (ck *Check) IsChannel(name string) bool {
	if channels.Known(name) || ck.opts.stored {
		return true
	}
	if ck.opts.channels == nil {
		return false
	}
	_, ok := ck.opts.channels.Capabilities(name)
	return ok
}

// Channel checks a send channel: its name, and with WithChannels that it
// has a sender and the step sets what the channel requires (has reports
// whether the step sets a field). A stored version is not re-checked.
func (ck *Check) Channel(n *yaml.Node, ch string, has func(field string) bool) bool {
	if ck.opts.stored {
		return true
	}
	if !ck.IsChannel(ch) {
		ck.Problemf(n, "unknown channel %q", ch)
		return false
	}
	if ck.opts.channels == nil {
		return true
	}
	caps, ok := ck.opts.channels.Capabilities(ch)
	if !ok {
		ck.Problemf(n, "channel %s has no sender (%s)", ch, channels.Setup(ch))
		return false
	}
	for _, f := range caps.Requires {
		if has != nil && !has(f) {
			ck.Problemf(n, "%s needs %s", ch, f)
		}
	}
	return true
}

// label prefixes a message with its field, if any.
func label(field string) string {
	if field == "" {
		return ""
	}
	return field + ": "
}

// memberFields are the names memberEnv gives expressions and templates.
var memberFields = []string{"appid", "attrs", "email", "external_userid", "first_scene", "id", "last_scene",
	"mp_openid", "nickname", "openid", "phone", "subscribed", "tags", "unionid", "user_id"}

// checkName checks one name path (["event","scene"]) and says what is wrong.
func (ck *Check) checkName(path []string, eventType string) string {
	if ck.opts.stored {
		return ""
	}
	switch path[0] {
	case "event":
		if len(path) < 2 || path[1] == "type" || path[1] == "at" {
			return ""
		}
		if eventType == "" {
			return ""
		}
		props, open := ck.opts.sources.Props(eventType)
		if open || slices.Contains(props, path[1]) {
			return ""
		}
		return fmt.Sprintf("event has no prop %q (%s has: %s)", path[1], eventType, strings.Join(props, ", "))
	case "member":
		if len(path) < 2 || slices.Contains(memberFields, path[1]) {
			return ""
		}
		return fmt.Sprintf("member has no field %q (member has: %s)", path[1], strings.Join(memberFields, ", "))
	}
	return fmt.Sprintf("unknown name .%s (use .event or .member)", path[0])
}

// exprNames returns the event.X and member.X paths expression src reads
// (none when it does not parse).
func exprNames(src string) [][]string {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	v := &nameVisitor{}
	ast.Walk(&tree.Node, v)
	return v.paths
}

// nameVisitor collects event.X and member.X accesses of an expression.
type nameVisitor struct{ paths [][]string }

func (v *nameVisitor) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok {
		return
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || (id.Value != "event" && id.Value != "member") {
		return
	}
	if s, ok := m.Property.(*ast.StringNode); ok {
		v.paths = append(v.paths, []string{id.Value, s.Value})
	}
}

// templateFields collects the field chains templates read from the top
// level (.event.X); bodies of with and range, where dot moves, are skipped.
func templateFields(n parse.Node, out *[][]string) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			templateFields(c, out)
		}
	case *parse.ActionNode:
		templateFields(n.Pipe, out)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			templateFields(c, out)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			templateFields(a, out)
		}
	case *parse.FieldNode:
		*out = append(*out, n.Ident)
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			*out = append(*out, n.Ident[1:])
		}
	case *parse.ChainNode:
		templateFields(n.Node, out)
	case *parse.IfNode:
		templateFields(n.Pipe, out)
		templateFields(n.List, out)
		templateFields(n.ElseList, out)
	case *parse.WithNode:
		templateFields(n.Pipe, out)
	case *parse.RangeNode:
		templateFields(n.Pipe, out)
	}
}

// exprEnv declares the expression variables for compile-time checks; event
// and member fields are open maps here, Check.Expr checks their names.
var exprEnv = map[string]any{"event": map[string]any{}, "member": map[string]any{}}

func compileExpr(src string) (*vm.Program, error) {
	return expr.Compile(src, expr.Env(exprEnv), expr.AsBool())
}

// sortedKeys returns m's keys sorted.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
