package journey

import (
	"fmt"
	htmltemplate "html/template"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/model"
)

// Send delivers one message. Fallback names a step to go to, or a channel to
// try, when the member is unreachable on Channel; a list chains them
// (`fallback: [wechat.template, sms, by_mail]`): channels tried in turn, the
// last entry may be a step.
type Send struct {
	Channel    string            `yaml:"channel"`
	Text       string            `yaml:"text"`
	Subject    string            `yaml:"subject"`
	HTML       string            `yaml:"html"` // the email's HTML part, rendered into Message.Extra["html"]
	TemplateID string            `yaml:"template_id"`
	Template   string            `yaml:"template"` // SMS template code
	URL        string            `yaml:"url"`
	Data       map[string]string `yaml:"data"`
	Params     map[string]string `yaml:"params"` // SMS params
	Extra      map[string]string `yaml:"extra"`  // media_id, title, pagepath, ...
	Fallback   Fallbacks         `yaml:"fallback"`
	// Category is "marketing" (default) or "transactional": a
	// transactional send (a code, a receipt) goes even to a member who
	// opted out of the channel's marketing messages.
	Category string `yaml:"category"`

	texts    map[string]*template.Template // text, subject, url, extra.<name>
	html     *htmltemplate.Template        // the email's HTML part
	data     map[string]*template.Template // template data / sms params
	fallback string                        // step id
	fbChans  []string                      // channels, in turn
	fbNode   *yaml.Node
}

type sendKind struct{}

func (sendKind) Name() string { return KindSend }

func (sendKind) Compile(n *yaml.Node, ck *Check) StepBody {
	s := &Send{texts: map[string]*template.Template{}, data: map[string]*template.Template{}}
	ck.Decode(n, s) // an unknown field leaves the others decoded: check them too
	has := func(f string) bool {
		return map[string]string{"text": s.Text, "subject": s.Subject, "template_id": s.TemplateID,
			"template": s.Template, "url": s.URL}[f] != ""
	}
	chNode := valueOf(n, "channel")
	if chNode == nil {
		chNode = n
	}
	if s.Channel == channels.Webhook {
		ck.Problemf(chNode, "send cannot use channel webhook: write a webhook step (webhook: { url: … })")
	} else {
		ck.Channel(chNode, s.Channel, has)
	}
	switch s.Category {
	case "", model.CategoryMarketing, model.CategoryTransactional:
	default:
		ck.Problemf(valueOf(n, "category"), "category %q: want %s or %s", s.Category, model.CategoryMarketing, model.CategoryTransactional)
	}
	for _, f := range []struct{ name, text string }{{"text", s.Text}, {"subject", s.Subject}, {"url", s.URL}, {"html", s.HTML}} {
		if f.text != "" {
			if t := ck.Template(f.name, valueOf(n, f.name), f.text); t != nil {
				s.texts[f.name] = t
			}
		}
	}
	if t := s.texts["html"]; t != nil {
		// Checked as the other templates are; rendered by html/template,
		// so a value (a nickname) cannot put markup or links in the email.
		delete(s.texts, "html")
		h, err := htmltemplate.New("html").Option("missingkey=zero").Parse(s.HTML)
		if err != nil {
			ck.Problemf(valueOf(n, "html"), "html: %v", err)
		} else {
			s.html = h
		}
	}
	for _, m := range []struct {
		field string
		vals  map[string]string
		into  map[string]*template.Template
		key   string
	}{{"data", s.Data, s.data, ""}, {"params", s.Params, s.data, ""}, {"extra", s.Extra, s.texts, "extra."}} {
		for _, k := range sortedKeys(m.vals) {
			if t := ck.Template(m.field+"."+k, valueOf(valueOf(n, m.field), k), m.vals[k]); t != nil {
				m.into[m.key+k] = t
			}
		}
	}
	s.fbNode = valueOf(n, "fallback")
	return s
}

// link resolves the fallback, once every step id is known: channels in
// turn, then at most one step, last.
func (s *Send) link(ck *Check, isStep func(string) bool) {
	seen := map[string]bool{s.Channel: true}
	for i, fb := range s.Fallback {
		switch {
		case isStep(fb):
			if i != len(s.Fallback)-1 {
				ck.Problemf(s.fbNode, "fallback step %q must come last: nothing after it is tried", fb)
				continue
			}
			s.fallback = fb
		case fb == channels.Webhook:
			ck.Problemf(s.fbNode, "fallback cannot be channel webhook: a webhook is not a message to the member (name a webhook step instead)")
		case ck.IsChannel(fb):
			if seen[fb] {
				ck.Problemf(s.fbNode, "fallback channel %s is tried twice", fb)
				continue
			}
			seen[fb] = true
			if ck.Channel(s.fbNode, fb, nil) {
				s.fbChans = append(s.fbChans, fb)
			}
		default:
			ck.Problemf(s.fbNode, "fallback %q is neither a step nor a channel", fb)
		}
	}
}

// Fallbacks is a send's fallback: one step or channel, or a list of them
// (YAML: a string or a sequence of strings).
type Fallbacks []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (f *Fallbacks) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value != "" {
			*f = Fallbacks{n.Value}
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return fmt.Errorf("fallback: want a step or channel, or a list of them: %w", err)
	}
	*f = list
	return nil
}

// Waits implements StepBody: a send runs at once.
func (*Send) Waits() (time.Duration, bool) { return 0, false }

// Refs implements StepBody: the fallback step is checked by link.
func (*Send) Refs() []Ref { return nil }

// Run implements StepBody. Quiet hours and frequency caps hold or skip a
// marketing send, except the answer to the member's own action (see held
// and capExempt).
func (s *Send) Run(r *Run) (Result, error) {
	now, enr := r.Now, r.Enrollment
	if q := r.e.quietOf(r.c); s.held(q, r.c, enr, now) {
		return raw(stepResult{retryAt: q.until(now), why: "quiet hours"}), nil
	}
	watch := func(longest time.Duration) (*capWatch, error) {
		return r.e.watchCaps(r.e.cfg.DB.WithContext(r.Ctx), []int64{r.Member.ID}, longest, now)
	}
	if res, err := r.e.capped(watch, r.c, r.Step, s, enr, r.Member, r.Visit, now); err != nil || res != nil {
		if err != nil {
			return Result{}, err
		}
		return raw(*res), nil
	}
	return raw(r.e.send(r.Ctx, s, r.Step, enr, r.Visit, r.Member, r.vars, now)), nil
}

// quietOf returns the quiet hours of c's sends: its own, else the engine's.
func (e *Engine) quietOf(c *Compiled) *quietHours {
	switch {
	case c.quietOff:
		return nil
	case c.quiet != nil:
		return c.quiet
	}
	return e.quiet
}

// held reports whether quiet hours q hold a send of c at now: they do
// unless it answers the member's own action (a journey a member's event
// triggers, within ReplyWindow of entering: a follow's welcome).
func (s *Send) held(q *quietHours, c *Compiled, enr *model.Enrollment, now time.Time) bool {
	until := q.until(now)
	return until.After(now) && !answersAction(c, enr, now)
}

// valueOf returns the value node of key in mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// cutExtra returns the extra field name of a texts key.
func cutExtra(k string) (string, bool) { return strings.CutPrefix(k, "extra.") }
