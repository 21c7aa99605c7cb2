package handler

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The journey editor's forms: a journey as the forms show it (edJourney),
// read from a draft's YAML (edFromYAML) and written back as YAML
// (edJourney.yaml) in the format of docs/journeys.md. What the forms do
// not show (quiet_hours, tags, a send's data, a webhook step, …) is kept
// as YAML beside them (Keep) and merged back, so a round trip through the
// forms loses nothing.

// edKinds are the step kinds the forms edit; other kinds ("other") are
// edited as YAML in the step's Keep.
var edKinds = []string{"send", "wait", "wait_for", "branch", "split", "update"}

// edRule is an exit rule or the goal.
type edRule struct{ Event, Where, When string }

func (r edRule) empty() bool { return r.Event == "" && r.Where == "" && r.When == "" }

// edArm is a branch arm (When, Next) or a split arm (Weight, Next).
type edArm struct{ When, Weight, Next string }

// edStep is one step as its fieldset shows it.
type edStep struct {
	ID, Kind, Next, OnTimeout string
	// send
	Channel, Text, Subject, URL, TemplateID, Template, Category, Fallback string
	// wait: a duration or a time of day
	Duration, Until string
	// wait_for
	Event, Where, Timeout string
	// branch (Arms' When and Next, Else the default arm) and split
	// (Arms' Weight and Next)
	Arms []edArm
	Else string
	// update: tags comma-separated, Set a YAML mapping
	AddTags, RemoveTags, Set string
	// Keep is YAML of the step's keys the fieldset does not show.
	Keep string
}

// edJourney is a journey as the editor's forms show it.
type edJourney struct {
	Key, Name                  string
	TriggerEvent, TriggerWhere string
	Once                       bool
	Cooldown                   string
	Exits                      []edRule
	Goal                       edRule
	Steps                      []edStep
	// Keep is YAML of the top-level keys (and trigger, entry, goal keys)
	// the forms do not show.
	Keep string
}

// errNotMapping is a journey whose YAML is not a mapping.
var errNotMapping = errors.New("the journey is not a YAML mapping (key: …, trigger: …, steps: …)")

// edFromYAML reads a journey's YAML into the forms.
func edFromYAML(src []byte) (edJourney, error) {
	var j edJourney
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return j, err
	}
	if len(root.Content) == 0 {
		return j, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return j, errNotMapping
	}
	keep := mapNode()
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		switch {
		case k.Value == "key" && v.Kind == yaml.ScalarNode:
			j.Key = v.Value
		case k.Value == "name" && v.Kind == yaml.ScalarNode:
			j.Name = v.Value
		case k.Value == "trigger" && v.Kind == yaml.MappingNode:
			rest := pick(v, map[string]*string{"event": &j.TriggerEvent, "where": &j.TriggerWhere})
			keepPairs(keep, k, rest)
		case k.Value == "entry" && v.Kind == yaml.MappingNode:
			var once string
			rest := pick(v, map[string]*string{"once": &once, "cooldown": &j.Cooldown})
			j.Once = once == "true"
			keepPairs(keep, k, rest)
		case k.Value == "goal" && v.Kind == yaml.MappingNode:
			rest := pick(v, map[string]*string{"event": &j.Goal.Event, "where": &j.Goal.Where, "when": &j.Goal.When})
			keepPairs(keep, k, rest)
		case k.Value == "exit" && v.Kind == yaml.SequenceNode && rulesOnly(v):
			for _, rn := range v.Content {
				var r edRule
				pick(rn, map[string]*string{"event": &r.Event, "where": &r.Where, "when": &r.When})
				j.Exits = append(j.Exits, r)
			}
		case k.Value == "steps" && v.Kind == yaml.SequenceNode:
			for _, sn := range v.Content {
				s, err := edStepFrom(sn)
				if err != nil {
					return j, err
				}
				j.Steps = append(j.Steps, s)
			}
		default:
			keep.Content = append(keep.Content, k, v)
		}
	}
	var err error
	j.Keep, err = keepText(keep)
	return j, err
}

// rulesOnly reports whether every exit rule has only event, where, when.
func rulesOnly(seq *yaml.Node) bool {
	for _, rn := range seq.Content {
		if rn.Kind != yaml.MappingNode {
			return false
		}
		for i := 0; i+1 < len(rn.Content); i += 2 {
			switch rn.Content[i].Value {
			case "event", "where", "when":
				if rn.Content[i+1].Kind != yaml.ScalarNode {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// pick copies the scalar values of m's keys named in fields and returns
// the other pairs.
func pick(m *yaml.Node, fields map[string]*string) []*yaml.Node {
	var rest []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if p, ok := fields[k.Value]; ok && v.Kind == yaml.ScalarNode {
			*p = v.Value
			continue
		}
		rest = append(rest, k, v)
	}
	return rest
}

// keepPairs keeps pairs under key k of keep.
func keepPairs(keep, k *yaml.Node, pairs []*yaml.Node) {
	if len(pairs) > 0 {
		keep.Content = append(keep.Content, k, &yaml.Node{Kind: yaml.MappingNode, Content: pairs})
	}
}

func keepText(keep *yaml.Node) (string, error) {
	if len(keep.Content) == 0 {
		return "", nil
	}
	b, err := encodeYAML(keep)
	return string(b), err
}

// edStepFrom reads one step.
func edStepFrom(n *yaml.Node) (edStep, error) {
	s := edStep{Kind: "other"}
	if n.Kind != yaml.MappingNode {
		b, err := encodeYAML(n)
		s.Keep = string(b)
		return s, err
	}
	keep := mapNode()
	found := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "id" && v.Kind == yaml.ScalarNode:
			s.ID = v.Value
		case k.Value == "next" && v.Kind == yaml.ScalarNode:
			s.Next = v.Value
		case k.Value == "on_timeout" && v.Kind == yaml.ScalarNode:
			s.OnTimeout = v.Value
		case !found && s.body(k, v, keep):
			found = true
		default:
			keep.Content = append(keep.Content, k, v)
		}
	}
	var err error
	s.Keep, err = keepText(keep)
	return s, err
}

// body reads a step kind's value into s; false: the forms do not edit it.
func (s *edStep) body(k, v *yaml.Node, keep *yaml.Node) bool {
	switch k.Value {
	case "send":
		if v.Kind != yaml.MappingNode {
			return false
		}
		keepPairs(keep, k, pick(v, map[string]*string{"channel": &s.Channel, "text": &s.Text, "subject": &s.Subject,
			"url": &s.URL, "template_id": &s.TemplateID, "template": &s.Template, "category": &s.Category, "fallback": &s.Fallback}))
	case "wait":
		switch v.Kind {
		case yaml.ScalarNode:
			s.Duration = v.Value
		case yaml.MappingNode:
			keepPairs(keep, k, pick(v, map[string]*string{"until": &s.Until}))
		default:
			return false
		}
	case "wait_for":
		if v.Kind != yaml.MappingNode {
			return false
		}
		keepPairs(keep, k, pick(v, map[string]*string{"event": &s.Event, "where": &s.Where, "timeout": &s.Timeout}))
	case "branch", "split":
		if v.Kind != yaml.SequenceNode || !armsOnly(v, k.Value) {
			return false
		}
		for i, an := range v.Content {
			var a edArm
			pick(an, map[string]*string{"when": &a.When, "weight": &a.Weight, "next": &a.Next})
			if k.Value == "branch" && a.When == "" && i == len(v.Content)-1 {
				s.Else = a.Next
				continue
			}
			s.Arms = append(s.Arms, a)
		}
	case "update":
		if v.Kind != yaml.MappingNode {
			return false
		}
		var rest []*yaml.Node
		for i := 0; i+1 < len(v.Content); i += 2 {
			uk, uv := v.Content[i], v.Content[i+1]
			switch {
			case (uk.Value == "add_tags" || uk.Value == "remove_tags") && scalarsOnly(uv):
				var tags []string
				for _, t := range uv.Content {
					tags = append(tags, t.Value)
				}
				if uk.Value == "add_tags" {
					s.AddTags = strings.Join(tags, ", ")
				} else {
					s.RemoveTags = strings.Join(tags, ", ")
				}
			case uk.Value == "set" && uv.Kind == yaml.MappingNode:
				b, err := encodeYAML(uv)
				if err != nil {
					rest = append(rest, uk, uv)
					continue
				}
				s.Set = strings.TrimSpace(string(b))
			default:
				rest = append(rest, uk, uv)
			}
		}
		keepPairs(keep, k, rest)
	default:
		return false
	}
	s.Kind = k.Value
	return true
}

// armsOnly reports whether every arm is a mapping of the kind's fields.
func armsOnly(seq *yaml.Node, kind string) bool {
	allowed := map[string]bool{"next": true, "when": kind == "branch", "weight": kind == "split"}
	for _, an := range seq.Content {
		if an.Kind != yaml.MappingNode {
			return false
		}
		for i := 0; i+1 < len(an.Content); i += 2 {
			if !allowed[an.Content[i].Value] || an.Content[i+1].Kind != yaml.ScalarNode {
				return false
			}
		}
	}
	return true
}

func scalarsOnly(n *yaml.Node) bool {
	if n.Kind != yaml.SequenceNode {
		return false
	}
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			return false
		}
	}
	return true
}

// edFieldError is a form field whose value the forms cannot write as
// YAML (a Keep or Set that is not a YAML mapping, a weight that is not a
// number): the draft is not saved and the field shows Msg.
type edFieldError struct{ Field, Msg string }

func (e *edFieldError) Error() string { return e.Field + ": " + e.Msg }

// yaml writes the journey as YAML.
func (j edJourney) yaml() ([]byte, error) {
	doc := mapNode()
	addStr(doc, "key", j.Key)
	addStr(doc, "name", j.Name)
	trig := mapNode()
	addStr(trig, "event", j.TriggerEvent)
	addStr(trig, "where", j.TriggerWhere)
	addMap(doc, "trigger", trig)
	entry := mapNode()
	if j.Once {
		entry.Content = append(entry.Content, strNode("once"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	addStr(entry, "cooldown", j.Cooldown)
	addMap(doc, "entry", entry)
	exits := &yaml.Node{Kind: yaml.SequenceNode}
	for _, r := range j.Exits {
		if !r.empty() {
			exits.Content = append(exits.Content, ruleNode(r))
		}
	}
	if len(exits.Content) > 0 {
		doc.Content = append(doc.Content, strNode("exit"), exits)
	}
	if !j.Goal.empty() {
		doc.Content = append(doc.Content, strNode("goal"), ruleNode(j.Goal))
	}
	if err := mergeKeep(doc, j.Keep, "keep"); err != nil {
		return nil, err
	}
	steps := &yaml.Node{Kind: yaml.SequenceNode}
	for i, s := range j.Steps {
		sn, err := s.node(i)
		if err != nil {
			return nil, err
		}
		steps.Content = append(steps.Content, sn)
	}
	doc.Content = append(doc.Content, strNode("steps"), steps)
	return encodeYAML(doc)
}

func ruleNode(r edRule) *yaml.Node {
	n := mapNode()
	addStr(n, "event", r.Event)
	addStr(n, "where", r.Where)
	addStr(n, "when", r.When)
	return n
}

// node writes step i.
func (s edStep) node(i int) (*yaml.Node, error) {
	n := mapNode()
	addStr(n, "id", s.ID)
	field := func(f string) string { return fmt.Sprintf("s.%d.%s", i, f) }
	switch s.Kind {
	case "send":
		b := mapNode()
		for _, f := range [][2]string{{"channel", s.Channel}, {"text", s.Text}, {"subject", s.Subject}, {"url", s.URL},
			{"template_id", s.TemplateID}, {"template", s.Template}, {"category", s.Category}, {"fallback", s.Fallback}} {
			addStr(b, f[0], f[1])
		}
		n.Content = append(n.Content, strNode("send"), b)
	case "wait":
		switch {
		case s.Duration != "":
			n.Content = append(n.Content, strNode("wait"), strNode(s.Duration))
		case s.Until != "":
			b := mapNode()
			addStr(b, "until", s.Until)
			n.Content = append(n.Content, strNode("wait"), b)
		case !strings.Contains(s.Keep, "wait:"):
			// A wait not filled in yet: the engine says what it lacks.
			n.Content = append(n.Content, strNode("wait"), strNode(""))
		}
	case "wait_for":
		b := mapNode()
		addStr(b, "event", s.Event)
		addStr(b, "where", s.Where)
		addStr(b, "timeout", s.Timeout)
		n.Content = append(n.Content, strNode("wait_for"), b)
	case "branch", "split":
		arms := &yaml.Node{Kind: yaml.SequenceNode}
		for _, a := range s.Arms {
			an := mapNode()
			if s.Kind == "branch" {
				if a.When == "" && a.Next == "" {
					continue
				}
				addStr(an, "when", a.When)
			} else {
				if a.Weight == "" && a.Next == "" {
					continue
				}
				w, err := strconv.Atoi(strings.TrimSpace(a.Weight))
				if err != nil {
					return nil, &edFieldError{field("weight"), fmt.Sprintf("weight %q is not a whole number", a.Weight)}
				}
				an.Content = append(an.Content, strNode("weight"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(w)})
			}
			addStr(an, "next", a.Next)
			arms.Content = append(arms.Content, an)
		}
		if s.Kind == "branch" && s.Else != "" {
			an := mapNode()
			addStr(an, "next", s.Else)
			arms.Content = append(arms.Content, an)
		}
		n.Content = append(n.Content, strNode(s.Kind), arms)
	case "update":
		b := mapNode()
		for _, f := range [][2]string{{"add_tags", s.AddTags}, {"remove_tags", s.RemoveTags}} {
			if tags := splitTags(f[1]); len(tags) > 0 {
				seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
				for _, t := range tags {
					seq.Content = append(seq.Content, strNode(t))
				}
				b.Content = append(b.Content, strNode(f[0]), seq)
			}
		}
		if strings.TrimSpace(s.Set) != "" {
			set, err := parseMapping(s.Set)
			if err != nil {
				return nil, &edFieldError{field("set"), err.Error()}
			}
			b.Content = append(b.Content, strNode("set"), set)
		}
		n.Content = append(n.Content, strNode("update"), b)
	}
	if err := mergeKeep(n, s.Keep, field("keep")); err != nil {
		return nil, err
	}
	addStr(n, "next", s.Next)
	addStr(n, "on_timeout", s.OnTimeout)
	return n, nil
}

// splitTags reads "a, b c" as [a b c].
func splitTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '，' || r == '\n' || r == '\r' || r == '\t' })
}

// parseMapping reads a YAML mapping.
func parseMapping(s string) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(s), &root); err != nil {
		return nil, err
	}
	if len(root.Content) == 0 {
		return mapNode(), nil
	}
	if root.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("want a YAML mapping, one name: value a line")
	}
	return root.Content[0], nil
}

// mergeKeep merges the YAML mapping keep into n: a key n has as a mapping
// gets keep's keys inside it; a key n lacks is added; a key n has as
// something else keeps n's value.
func mergeKeep(n *yaml.Node, keep, field string) error {
	if strings.TrimSpace(keep) == "" {
		return nil
	}
	k, err := parseMapping(keep)
	if err != nil {
		return &edFieldError{field, err.Error()}
	}
	mergeMap(n, k)
	return nil
}

func mergeMap(dst, src *yaml.Node) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		if cur := mapValue(dst, k.Value); cur != nil {
			if cur.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode {
				mergeMap(cur, v)
			}
			continue
		}
		dst.Content = append(dst.Content, k, v)
	}
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func mapNode() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func strNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// addStr adds key: value when value is not empty.
func addStr(m *yaml.Node, key, value string) {
	if value = strings.TrimSpace(value); value != "" {
		m.Content = append(m.Content, strNode(key), strNode(value))
	}
}

// addMap adds key: value when the mapping value is not empty.
func addMap(m *yaml.Node, key string, value *yaml.Node) {
	if len(value.Content) > 0 {
		m.Content = append(m.Content, strNode(key), value)
	}
}

// encodeYAML writes a node as YAML indented by two.
func encodeYAML(n *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("write YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("write YAML: %w", err)
	}
	return buf.Bytes(), nil
}
