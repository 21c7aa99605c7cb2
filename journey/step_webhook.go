package journey

import (
	"slices"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/webhook"
	"github.com/wejourney/wejourney/model"
)

// WebhookSpec calls the brand's own system: method (default POST) url
// with body, and headers; url, body and header values are templates.
type WebhookSpec struct {
	URL     string            `yaml:"url"`
	Method  string            `yaml:"method"`
	Body    string            `yaml:"body"`
	Headers map[string]string `yaml:"headers"`

	url, body *template.Template
	headers   map[string]*template.Template
}

type webhookKind struct{}

func (webhookKind) Name() string { return KindWebhook }

func (webhookKind) Compile(n *yaml.Node, ck *Check) StepBody {
	w := &WebhookSpec{}
	if !ck.Decode(n, w) {
		return w
	}
	ck.Channel(n, channels.Webhook, nil)
	switch {
	case w.URL == "":
		ck.Problemf(n, "webhook needs url")
	case !strings.HasPrefix(w.URL, "https://") && !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "{{"):
		ck.Problemf(valueOf(n, "url"), "webhook url %q: want an http:// or https:// URL", w.URL)
	}
	if w.Method != "" && !slices.Contains(webhook.Methods, strings.ToUpper(w.Method)) {
		ck.Problemf(valueOf(n, "method"), "webhook method %q: want one of %s", w.Method, strings.Join(webhook.Methods, ", "))
	}
	w.url = ck.Template("webhook.url", valueOf(n, "url"), w.URL)
	w.body = ck.Template("webhook.body", valueOf(n, "body"), w.Body)
	w.headers = map[string]*template.Template{}
	for k, v := range w.Headers {
		w.headers[k] = ck.Template("webhook.headers."+k, valueOf(valueOf(n, "headers"), k), v)
	}
	return w
}

// Waits implements StepBody.
func (*WebhookSpec) Waits() (time.Duration, bool) { return 0, false }

// Refs implements StepBody.
func (*WebhookSpec) Refs() []Ref { return nil }

// Run implements StepBody: the webhook is delivered like a message on the
// webhook channel, recorded as a delivery, retried like one. It is not a
// message to the member: it is transactional (no frequency cap counts it,
// no opt-out stops it).
func (w *WebhookSpec) Run(r *Run) (Result, error) {
	rd := renderer{vars: r.vars}
	extra := map[string]string{webhook.ExtraMethod: strings.ToUpper(w.Method)}
	for k, t := range w.headers {
		extra[webhook.HeaderPrefix+k] = rd.render(t)
	}
	msg := channels.Message{
		Channel:  channels.Webhook,
		Category: model.CategoryTransactional,
		URL:      rd.render(w.url),
		Text:     rd.render(w.body),
		Extra:    extra,
	}
	if rd.err != nil {
		return raw(rd.failed()), nil
	}
	return raw(r.e.deliver(r.Ctx, r.Step, r.Enrollment, r.Visit, r.Member, channels.Webhook, msg, r.Now)), nil
}
