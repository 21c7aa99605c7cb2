package journey

import (
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/channels"
)

// WebhookSpec posts to the brand's system.
type WebhookSpec struct {
	URL     string            `yaml:"url"`
	Method  string            `yaml:"method"`
	Body    string            `yaml:"body"`
	Headers map[string]string `yaml:"headers"`

	url, body *template.Template
}

type webhookKind struct{}

func (webhookKind) Name() string { return KindWebhook }

func (webhookKind) Compile(n *yaml.Node, ck *Check) StepBody {
	w := &WebhookSpec{}
	if !ck.Decode(n, w) {
		return w
	}
	ck.Channel(n, channels.Webhook, nil)
	if w.URL == "" {
		ck.Problemf(n, "webhook needs url")
	}
	w.url = ck.Template("webhook.url", valueOf(n, "url"), w.URL)
	w.body = ck.Template("webhook.body", valueOf(n, "body"), w.Body)
	return w
}

// Waits implements StepBody.
func (*WebhookSpec) Waits() (time.Duration, bool) { return 0, false }

// Refs implements StepBody.
func (*WebhookSpec) Refs() []Ref { return nil }

// Run implements StepBody: the webhook is delivered like a message on the
// webhook channel.
func (w *WebhookSpec) Run(r *Run) (Result, error) {
	rd := renderer{vars: r.vars}
	msg := channels.Message{
		Channel: channels.Webhook,
		URL:     rd.render(w.url),
		Text:    rd.render(w.body),
		Extra:   mergeMaps(w.Headers, map[string]string{"method": w.Method}),
	}
	if rd.err != nil {
		return raw(rd.failed()), nil
	}
	return raw(r.e.deliver(r.Ctx, r.Step, r.Enrollment, r.Visit, r.Member, channels.Webhook, msg, r.Now)), nil
}
