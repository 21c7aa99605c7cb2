package journey

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/model"
)

// Wait pauses the member: for a duration (wait: 2h), until the next time
// of day (wait: { until: "09:00" }), or until a moment read from a member
// attribute (wait: { until_attribute: renewal_date, offset: -3d, at:
// "10:00" }). Times of day are China time (chinaTime): accounts have no
// time zone of their own. The moment is computed once, when the member
// enters the step.
type Wait struct {
	// Duration is how long a plain wait pauses; 0 in the other forms.
	Duration Duration
	// Until is a time of day, "HH:MM": the wait ends at its next
	// occurrence (tomorrow's when it is that time or later now).
	Until string
	// UntilAttribute names the member attribute (member.attrs) holding the
	// date ("2006-01-02", midnight) or time (RFC 3339) the wait ends at,
	// moved by Offset and, with At, set to that time of day.
	UntilAttribute string
	// Offset moves the attribute's moment; negative is earlier.
	Offset time.Duration
	// At is the time of day, "HH:MM", on the day the offset lands on; ""
	// keeps the attribute's own time.
	At string

	until, at int // minutes after midnight; at is -1 without At
}

// Outcomes a wait records on its visit.
const (
	// OutcomeWaited: the wait ran its course.
	OutcomeWaited = "waited"
	// OutcomeAttributeMissing: until_attribute found no such attribute
	// (or an empty one); the member went on at once.
	OutcomeAttributeMissing = "attribute missing"
	// OutcomeAttributeNotDate: the attribute was neither a date nor an
	// RFC 3339 time; the member went on at once.
	OutcomeAttributeNotDate = "attribute not a date"
	// OutcomeAlreadyPast: the attribute's moment (with offset and at) had
	// passed when the member arrived; they went on at once.
	OutcomeAlreadyPast = "already past"
)

type waitKind struct{}

func (waitKind) Name() string { return KindWait }

// waitSpec is the mapping form of wait.
type waitSpec struct {
	Until          string `yaml:"until"`
	UntilAttribute string `yaml:"until_attribute"`
	Offset         string `yaml:"offset"`
	At             string `yaml:"at"`
}

func (waitKind) Compile(n *yaml.Node, ck *Check) StepBody {
	w := &Wait{at: -1}
	if n.Kind != yaml.MappingNode {
		if ck.Decode(n, &w.Duration) && w.Duration <= 0 {
			ck.Problemf(n, "wait must be positive")
		}
		return w
	}
	// Keys wait_for takes are named as such; the others are unknown.
	known := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		switch k.Value {
		case "until", "until_attribute", "offset", "at":
			known.Content = append(known.Content, k, n.Content[i+1])
		case "event", "where", "timeout", "match", "within":
			ck.Problemf(k, "wait has no %s: it belongs to wait_for (wait_for: { event: …, %s: … })", k.Value, k.Value)
		default:
			ck.Problemf(k, "unknown field %q (wait is a duration, or a mapping of until, or of until_attribute, offset and at)", k.Value)
		}
	}
	var s waitSpec
	if !ck.Decode(known, &s) {
		return w
	}
	w.Until, w.UntilAttribute, w.At = s.Until, s.UntilAttribute, s.At
	switch {
	case s.Until != "" && s.UntilAttribute != "":
		ck.Problemf(n, "wait: until and until_attribute exclude each other (until is a time of day, until_attribute a member's date)")
	case s.Until == "" && s.UntilAttribute == "":
		ck.Problemf(n, `wait needs a duration (wait: 2h), until (wait: { until: "09:00" }) or until_attribute (wait: { until_attribute: renewal_date })`)
	}
	if s.Until != "" {
		w.until = timeOfDay(ck, valueOf(n, "until"), "wait.until", s.Until)
		if s.Offset != "" {
			ck.Problemf(valueOf(n, "offset"), "wait.offset goes with until_attribute, not until")
		}
		if s.At != "" {
			ck.Problemf(valueOf(n, "at"), "wait.at goes with until_attribute (until is itself the time of day)")
		}
	}
	if s.UntilAttribute != "" {
		for _, prefix := range []string{"member.attrs.", "attrs."} {
			if rest, ok := strings.CutPrefix(s.UntilAttribute, prefix); ok {
				ck.Problemf(valueOf(n, "until_attribute"), "wait.until_attribute: %q: name the attribute alone (%s)", s.UntilAttribute, rest)
				break
			}
		}
		if s.Offset != "" {
			d, err := ParseOffset(s.Offset)
			if err != nil {
				ck.Problemf(valueOf(n, "offset"), "wait.offset: %v", err)
			}
			w.Offset = d
		}
		if s.At != "" {
			w.at = timeOfDay(ck, valueOf(n, "at"), "wait.at", s.At)
		}
	}
	return w
}

// timeOfDay parses "HH:MM" into minutes after midnight, reporting a bad one.
func timeOfDay(ck *Check, n *yaml.Node, field, s string) int {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		ck.Problemf(n, "%s: %q: want a time of day HH:MM, China time (e.g. \"09:00\")", field, s)
		return 0
	}
	return t.Hour()*60 + t.Minute()
}

// ParseOffset parses a duration that may be negative: "-3d", "12h",
// "-1d12h", "+2h" (see ParseDuration).
func ParseOffset(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	neg := strings.HasPrefix(t, "-")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "-"), "+")
	d, err := ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("bad offset %q: want -3d, 12h or -1d12h", s)
	}
	if neg {
		d = -d
	}
	return d, nil
}

// Waits implements StepBody: a plain wait waits out its duration. The
// other forms wait until WaitUntil says.
func (w *Wait) Waits() (time.Duration, bool) { return time.Duration(w.Duration), true }

// WaitUntil implements UntilWaiter: when a member entering the step at now
// goes on. Not after now (an attribute missing, not a date, or its moment
// past) means at once.
func (w *Wait) WaitUntil(now time.Time, m *model.Member) time.Time {
	switch {
	case w.Until != "":
		return nextTimeOfDay(now, w.until)
	case w.UntilAttribute != "":
		t, why := w.attributeMoment(m)
		if why != "" {
			return now
		}
		return t
	}
	return now.Add(time.Duration(w.Duration))
}

// nextTimeOfDay is the first moment after now that is mins after midnight,
// China time.
func nextTimeOfDay(now time.Time, mins int) time.Time {
	local := now.In(chinaTime)
	t := time.Date(local.Year(), local.Month(), local.Day(), mins/60, mins%60, 0, 0, chinaTime)
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t.UTC()
}

// attributeMoment is the moment the member's attribute names, with the
// offset and time of day applied, or why there is none (an outcome).
func (w *Wait) attributeMoment(m *model.Member) (time.Time, string) {
	var v any
	if m != nil {
		v = m.Attrs[w.UntilAttribute]
	}
	var t time.Time
	switch x := v.(type) {
	case nil:
		return t, OutcomeAttributeMissing
	case time.Time:
		t = x
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return t, OutcomeAttributeMissing
		}
		var err error
		if t, err = time.ParseInLocation(time.DateOnly, s, chinaTime); err != nil {
			if t, err = time.Parse(time.RFC3339, s); err != nil {
				return t, OutcomeAttributeNotDate
			}
		}
	default:
		return t, OutcomeAttributeNotDate
	}
	t = t.Add(w.Offset)
	if w.at >= 0 {
		local := t.In(chinaTime)
		t = time.Date(local.Year(), local.Month(), local.Day(), w.at/60, w.at%60, 0, 0, chinaTime)
	}
	return t.UTC(), ""
}

// testRun is what a test run (walked at now, waits compressed) says of
// the wait for member m: the outcome the visit would record, and a note.
func (w *Wait) testRun(now time.Time, m *model.Member) (outcome, note string) {
	const layout = "2006-01-02 15:04 China time"
	switch {
	case w.Until != "":
		return OutcomeWaited, fmt.Sprintf("waited until %s: compressed", nextTimeOfDay(now, w.until).In(chinaTime).Format(layout))
	case w.UntilAttribute != "":
		t, why := w.attributeMoment(m)
		switch {
		case why == OutcomeAttributeMissing || m == nil:
			return why, fmt.Sprintf("did not wait: the member has no attribute %s", w.UntilAttribute)
		case why != "":
			return why, fmt.Sprintf("did not wait: attribute %s is %v, not a date", w.UntilAttribute, m.Attrs[w.UntilAttribute])
		case !t.After(now):
			return OutcomeAlreadyPast, fmt.Sprintf("did not wait: %s had passed", t.In(chinaTime).Format(layout))
		}
		return OutcomeWaited, fmt.Sprintf("waited until %s: compressed", t.In(chinaTime).Format(layout))
	}
	return OutcomeWaited, fmt.Sprintf("waited %s: compressed", time.Duration(w.Duration))
}

// Refs implements StepBody.
func (*Wait) Refs() []Ref { return nil }

// Run implements StepBody. A visit due when it was entered did not wait:
// its outcome says why (the attribute, or its moment had passed).
func (w *Wait) Run(r *Run) (Result, error) {
	out := OutcomeWaited
	if w.UntilAttribute != "" && !r.Visit.DueAt.After(r.Visit.CreatedAt) {
		out = OutcomeAlreadyPast
		if _, why := w.attributeMoment(r.Member); why != "" {
			out = why
		}
	}
	return Result{Outcome: out, Next: r.Step.Next}, nil
}
