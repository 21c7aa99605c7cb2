package journey

// Internal tests: quiet hours and the A/B split are unexported.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
)

// designExample is the journey of DESIGN.md ("Journeys") with the coupon_a
// and coupon_b steps its split names added.
const designExample = `
key: welcome-store             # stable id
name: 门店扫码关注欢迎
trigger:
  event: wechat.subscribe
  where: 'event.scene startsWith "store_"'   # expr-lang expression over event and member
entry:
  once: true                   # or cooldown: 24h ; default: re-enter after leaving
exit:                          # goals / exit criteria: leave at once when any happens
  - event: wechat.unsubscribe
  - event: member.attribute_changed
    where: 'event.name == "phone"'
quiet_hours: "22:00-08:00"     # sends due then wait until the window ends
steps:
  - id: hello
    send:
      channel: wechat.text     # 48 h customer-service message
      text: "欢迎来到 {{ .event.scene }}!"
    next: pause
  - id: pause
    wait: 10m
    next: ask
  - id: ask
    send:
      channel: wechat.template
      template_id: TEMPLATE_ID
      url: https://example.com/bind
      data: { first: "绑定会员领券", keyword1: "{{ .member.nickname }}" }
    next: wait_bind
  - id: wait_bind
    wait_for:
      event: form.submitted
      where: 'event.form == "bind"'
      timeout: 48h
    next: thanks
    on_timeout: sms
  - id: sms
    send: { channel: sms, template: SMS_123, params: { name: "{{ .member.nickname }}" } }
  - id: thanks
    branch:
      - when: '"vip" in member.tags'
        next: vip
      - next: regular
  - id: vip
    split:                      # A/B test
      - { weight: 50, next: coupon_a }
      - { weight: 50, next: coupon_b }
  - id: coupon_a
    send: { channel: wechat.text, text: "A 券" }
  - id: coupon_b
    send: { channel: wechat.text, text: "B 券" }
  - id: regular
    update: { add_tags: [welcomed], set: { stage: aware } }
    next: crm
  - id: crm
    webhook: { url: "https://crm.example.com/leads", body: '{"openid":"{{ .member.openid }}"}' }
`

func TestParseDesignExample(t *testing.T) {
	c, err := Parse("journeys/welcome.yaml", []byte(designExample))
	if err != nil {
		t.Fatalf("Parse(design example) = %v", err)
	}
	type summary struct {
		Key, Name, First, Trigger, QuietHours string
		Once                                  bool
		Exits                                 []string
		Kinds                                 map[string]string // step id -> kind
		Next                                  map[string]string // step id -> next
		WaitForTimeout                        time.Duration
		OnTimeout                             string
	}
	got := summary{
		Key: c.Def.Key, Name: c.Def.Name, First: c.FirstStep(), Trigger: c.Def.Trigger.Event,
		QuietHours: c.Def.QuietHours, Once: c.Def.Entry.Once,
		Kinds: map[string]string{}, Next: map[string]string{},
	}
	for _, r := range c.Def.Exit {
		got.Exits = append(got.Exits, r.Event)
	}
	for _, s := range c.Def.Steps {
		st, ok := c.Step(s.ID)
		if !ok {
			t.Fatalf("Step(%q) not found", s.ID)
		}
		got.Kinds[s.ID] = st.Kind()
		if st.Next != "" {
			got.Next[s.ID] = st.Next
		}
	}
	wb, _ := c.Step("wait_bind")
	got.WaitForTimeout, got.OnTimeout = time.Duration(wb.Body.(*WaitFor).Timeout), wb.OnTimeout
	want := summary{
		Key: "welcome-store", Name: "门店扫码关注欢迎", First: "hello", Trigger: "wechat.subscribe",
		QuietHours: "22:00-08:00", Once: true,
		Exits: []string{"wechat.unsubscribe", "member.attribute_changed"},
		Kinds: map[string]string{
			"hello": KindSend, "pause": KindWait, "ask": KindSend, "wait_bind": KindWaitFor, "sms": KindSend,
			"thanks": KindBranch, "vip": KindSplit, "coupon_a": KindSend, "coupon_b": KindSend,
			"regular": KindUpdate, "crm": KindWebhook,
		},
		Next: map[string]string{
			"hello": "pause", "pause": "ask", "ask": "wait_bind", "wait_bind": "thanks", "regular": "crm",
		},
		WaitForTimeout: 48 * time.Hour, OnTimeout: "sms",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsed design example mismatch (-want +got):\n%s", diff)
	}
	if _, ok := c.Step("nope"); ok {
		t.Errorf("Step(%q) found a step that does not exist", "nope")
	}
	if c.quiet == nil {
		t.Errorf("quiet_hours %q was not compiled", c.Def.QuietHours)
	}
}

// problemLines returns the problems of a Parse error: one per line after the
// "invalid journey:" header.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	lines := strings.Split(err.Error(), "\n")
	if lines[0] != ErrInvalid.Error()+":" {
		t.Fatalf("error does not start with %q on a line of its own:\n%v", ErrInvalid.Error()+":", err)
	}
	return lines[1:]
}

// orderProblems pairs the i-th wanted prefix with the i-th problem line:
// problems come in file order, so the order is part of what is checked. got
// holds the wanted prefix where the line starts with it and the whole line
// where it does not, so cmp.Diff(want, got) shows exactly what differs.
func orderProblems(want, lines []string) []string {
	got := make([]string, len(lines))
	for i, l := range lines {
		got[i] = l
		if i < len(want) && strings.HasPrefix(l, want[i]) {
			got[i] = want[i]
		}
	}
	return got
}

// testChannels has a sender on every channel but the WeCom mark-tag and
// group-message channels, with the
// capabilities the real senders declare (sms needs a template).
func testChannels() *channels.Registry {
	reg := channels.NewRegistry()
	nop := channels.SenderFunc(func(context.Context, channels.Message) (channels.Result, error) { return channels.Result{}, nil })
	for ch, caps := range wechat.Capabilities() {
		reg.Register(ch, nop, caps)
	}
	for _, ch := range []string{channels.WeChatSubscribe, channels.WeComText, channels.WeComWelcome, channels.Email, channels.Webhook} {
		reg.Register(ch, nop, channels.Capabilities{})
	}
	reg.Register(channels.SMS, nop, channels.Capabilities{Requires: []string{"template"}})
	return reg
}

func TestParseRejects(t *testing.T) {
	const file = "journeys/bad.yaml"
	tests := []struct {
		name string
		src  string
		want []string // one fragment per reported problem, file prefix included
		bug  string   // set: a known engine bug; the case is skipped with this reason
	}{
		{
			name: "missing key",
			src: `
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`,
			want: []string{file + `: key: required`},
		},
		{
			name: "webhook with a method HTTP has not and a URL that is not http",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - id: crm
    webhook: { url: "crm.example.com/leads", method: FETCH, body: '{"a": {{ json .member.nickname }}}' }
`,
			want: []string{file + `:6: step "crm": webhook url "crm.example.com/leads": want an http:// or https:// URL`,
				file + `:6: step "crm": webhook method "FETCH": want one of POST, PUT, PATCH, GET, DELETE`},
		},
		{
			name: "missing trigger event",
			src: `
key: k
trigger: { where: 'event.scene == "x"' }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`,
			want: []string{file + `:3: trigger: event is required`},
		},
		{
			name: "unknown channel",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.fax, text: hi } }
`,
			want: []string{file + `:5: step "hello": unknown channel "wechat.fax"`},
		},
		{
			name: "step with two kinds",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - id: hello
    send: { channel: wechat.text, text: hi }
    wait: 10m
`,
			want: []string{file + `:5: step "hello": needs exactly one of send, wait, wait_for, branch, split, update, webhook`},
		},
		{
			name: "step with no kind",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, next: bye }
  - { id: bye, wait: 1m }
`,
			want: []string{file + `:5: step "hello": needs exactly one of`},
		},
		{
			name: "next names an unknown step",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: nowhere }
`,
			want: []string{file + `:5: step "hello": next "nowhere" is not a step`},
		},
		{
			name: "on_timeout and branch and split name unknown steps",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: w, wait_for: { event: form.submitted, timeout: 1h }, next: b, on_timeout: gone }
  - id: b
    branch:
      - { when: 'member.subscribed', next: lost }
      - next: s
  - id: s
    split: [ { weight: 1, next: missing } ]
`,
			want: []string{
				file + `:5: step "w": on_timeout "gone" is not a step`,
				file + `:8: step "b": branch next "lost" is not a step`,
				file + `:11: step "s": split next "missing" is not a step`,
			},
		},
		{
			name: "bad expression syntax in trigger.where",
			src: `
key: k
trigger: { event: wechat.subscribe, where: 'event.scene startsWith' }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`,
			want: []string{file + `:3: trigger.where: `},
		},
		{
			name: "bad expression syntax in exit, wait_for and branch",
			src: `
key: k
trigger: { event: wechat.subscribe }
exit:
  - { event: wechat.unsubscribe, where: 'event.x ==' }
steps:
  - { id: w, wait_for: { event: form.submitted, where: '(event.form', timeout: 1h }, next: b }
  - id: b
    branch:
      - { when: 'member.tags contains contains', next: w }
`,
			want: []string{
				file + `:5: exit[0].where: `,
				file + `:7: step "w": wait_for.where: `,
				file + `:10: step "b": branch[0].when: `,
			},
		},
		{
			name: "wait_for without timeout",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: w, wait_for: { event: form.submitted } }
`,
			want: []string{file + `:5: step "w": wait_for needs a positive timeout`},
		},
		{
			name: "wait_for without event",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: w, wait_for: { timeout: 1h } }
`,
			want: []string{file + `:5: step "w": wait_for needs event`},
		},
		{
			name: "wechat.text without text",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text } }
`,
			want: []string{file + `:5: step "hello": wechat.text needs text`},
		},
		{
			name: "wechat.template without template_id",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: ask, send: { channel: wechat.template, data: { first: hi } } }
`,
			want: []string{file + `:5: step "ask": wechat.template needs template_id`},
		},
		{
			name: "duplicate step ids",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: hello2 }
  - { id: hello2, wait: 1m }
  - { id: hello, wait: 1m }
`,
			want: []string{file + `:7: step "hello": duplicate id`},
		},
		{
			name: "step without id",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { send: { channel: wechat.text, text: hi } }
`,
			want: []string{file + `:5: step #1: id is required`},
		},
		{
			name: "unknown field on a step",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, nxet: bye }
`,
			want: []string{file + `:5: step "hello": unknown field "nxet"`},
		},
		{
			name: "once and cooldown together",
			src: `
key: k
trigger: { event: wechat.subscribe }
entry: { once: true, cooldown: 24h }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`,
			want: []string{file + `:4: entry: once and cooldown exclude each other`},
		},
		{
			name: "next points at itself",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi }, next: hello }
`,
			want: []string{file + `:5: step "hello": next points at itself`},
		},
		{
			name: "no steps",
			src: `
key: k
trigger: { event: wechat.subscribe }
`,
			want: []string{file + `: steps: a journey needs at least one step`},
		},
		{
			name: "split with no arms",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: s, split: [] }
`,
			want: []string{file + `:5: step "s": split needs arms`},
		},
		{
			name: "branch with no arms",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: b, branch: [] }
`,
			want: []string{file + `:5: step "b": branch needs arms`},
		},
		{
			name: "negative cooldown",
			src: `
key: k
trigger: { event: wechat.subscribe }
entry: { cooldown: -1d }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`,
			want: []string{file + `:4: entry: `},
		},
		{
			name: "bad template syntax",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: "hi {{ .member.nickname " } }
`,
			want: []string{file + `:5: step "hello": text: `},
		},
		{
			name: "fallback is neither a step nor a channel",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi, fallback: carrier_pigeon } }
`,
			want: []string{file + `:5: step "hello": fallback "carrier_pigeon" is neither a step nor a channel`},
		},
		{
			name: "wait until not a time of day",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: p, wait: { until: "9am" } }
  - { id: q, wait: { until: "25:00" } }
`,
			want: []string{
				file + `:5: step "p": wait.until: "9am": want a time of day HH:MM, China time (e.g. "09:00")`,
				file + `:6: step "q": wait.until: "25:00": want a time of day HH:MM`,
			},
		},
		{
			name: "wait with both until and until_attribute",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: p, wait: { until: "09:00", until_attribute: renewal_date } }
`,
			want: []string{file + `:5: step "p": wait: until and until_attribute exclude each other`},
		},
		{
			name: "wait mapping with neither until nor until_attribute",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: p, wait: { offset: -3d } }
`,
			want: []string{file + `:5: step "p": wait needs a duration (wait: 2h), until (wait: { until: "09:00" }) or until_attribute`},
		},
		{
			name: "offset and at go with until_attribute only",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: p, wait: { until: "09:00", offset: -1d, at: "10:00" } }
`,
			want: []string{
				file + `:5: step "p": wait.offset goes with until_attribute, not until`,
				file + `:5: step "p": wait.at goes with until_attribute (until is itself the time of day)`,
			},
		},
		{
			name: "until_attribute with a bad offset and a bad at",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - id: p
    wait:
      until_attribute: renewal_date
      offset: -3days
      at: "10h"
`,
			want: []string{
				file + `:8: step "p": wait.offset: bad offset "-3days": want -3d, 12h or -1d12h`,
				file + `:9: step "p": wait.at: "10h": want a time of day HH:MM`,
			},
		},
		{
			name: "until_attribute written as a path",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: p, wait: { until_attribute: member.attrs.renewal_date } }
`,
			want: []string{file + `:5: step "p": wait.until_attribute: "member.attrs.renewal_date": name the attribute alone (renewal_date)`},
		},
		{
			name: "wait_for fields on a wait, and a typo",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: p, wait: { until: "09:00", match: cart_id, within: 10m } }
  - { id: q, wait: { untill: "09:00" } }
`,
			want: []string{
				file + `:5: step "p": wait has no match: it belongs to wait_for (wait_for: { event: …, match: … })`,
				file + `:5: step "p": wait has no within: it belongs to wait_for`,
				file + `:6: step "q": unknown field "untill" (wait is a duration, or a mapping of until, or of until_attribute, offset and at)`,
				file + `:6: step "q": wait needs a duration`,
			},
		},
		{
			name: "match and within beside a step's kind",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: p, send: { channel: wechat.text, text: hi }, match: cart_id, next: q }
  - { id: q, wait: 1h, within: 10m, until: "09:00" }
`,
			want: []string{
				file + `:5: step "p": unknown field "match" (match goes inside wait_for: { event: …, match: … })`,
				file + `:6: step "q": unknown field "within" (within goes inside wait_for: { event: …, within: … })`,
				file + `:6: step "q": unknown field "until" (until goes inside wait: { until: … })`,
			},
		},
		{
			name: "match on a send",
			src: `
key: k
trigger: { event: cart.abandoned }
steps:
  - { id: p, send: { channel: wechat.text, text: hi, match: cart_id } }
`,
			want: []string{file + `:5: step "p": unknown field "match"`},
		},
		{
			name: "wait_for match a prop the trigger event does not carry",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: w, wait_for: { event: order.paid, match: cart_id, timeout: 1d } }
`,
			want: []string{file + `:5: step "w": wait_for.match: trigger event has no prop "cart_id" (wechat.subscribe has: scene, ticket)`},
		},
		{
			name: "wait_for match a prop the awaited event does not carry",
			src: `
key: k
trigger: { event: cart.abandoned }
steps:
  - { id: w, wait_for: { event: wechat.scan, match: [cart_id], timeout: 1d } }
`,
			want: []string{file + `:5: step "w": wait_for.match: awaited event has no prop "cart_id" (wechat.scan has: scene, ticket)`},
		},
		{
			name: "wait_for match names that are not props",
			src: `
key: k
trigger: { event: cart.abandoned }
steps:
  - { id: w, wait_for: { event: order.paid, match: [cart_id, at, cart_id, event.store, ""], timeout: 1d } }
  - { id: x, wait_for: { event: order.paid, match: [], timeout: 1d } }
  - { id: y, wait_for: { event: order.paid, match: { cart_id: c1 }, timeout: 1d } }
`,
			want: []string{
				file + `:5: step "w": wait_for.match: "at" is not a prop (match compares props such as cart_id)`,
				file + `:5: step "w": wait_for.match: "cart_id" twice`,
				file + `:5: step "w": wait_for.match: "event.store": name the prop alone (store)`,
				file + `:5: step "w": wait_for.match: empty prop name`,
				file + `:6: step "x": wait_for.match: empty list`,
				file + `:7: step "y": match: want a prop name or a list of prop names`,
			},
		},
		{
			name: "wait_for within negative or not a duration",
			src: `
key: k
trigger: { event: cart.abandoned }
steps:
  - { id: w, wait_for: { event: order.paid, timeout: 1h, within: -10m } }
  - { id: x, wait_for: { event: order.paid, timeout: 1h, within: soon } }
`,
			want: []string{
				file + `:5: step "w": bad duration "-10m": must not be negative`,
				file + `:6: step "x": bad duration "soon"`,
			},
		},
		{
			name: "the tester tag is reserved to the admin API",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: mark, update: { add_tags: [vip, tester] }, next: unmark }
  - { id: unmark, update: { remove_tags: [tester] } }
`,
			want: []string{
				file + `:5: step "mark": add_tags: the tag "tester" is reserved: testers are marked through the admin API (POST /api/v1/members/{id}/tester)`,
				file + `:6: step "unmark": remove_tags: the tag "tester" is reserved`,
			},
		},
		{
			name: "every problem of a file is reported",
			src: `
name: many mistakes
trigger: { where: 'event.scene startsWith' }
entry: { once: true, cooldown: 1h }
quiet_hours: "22:00"
steps:
  - { id: hello, send: { channel: wechat.fax, text: hi }, next: nowhere }
  - { id: both, send: { channel: wechat.text, text: hi }, wait: 1m }
  - { id: none }
  - { id: w, wait_for: { event: form.submitted, where: 'event.form ==' } }
  - { id: t, send: { channel: wechat.text } }
  - { id: t, wait: 1m, colour: red }
`,
			want: []string{
				file + `: key: required`,
				file + `:3: trigger: event is required`,
				file + `:3: trigger.where: `,
				file + `:4: entry: once and cooldown exclude each other`,
				file + `:5: quiet_hours: "22:00": want HH:MM-HH:MM`,
				file + `:7: step "hello": unknown channel "wechat.fax"`,
				file + `:7: step "hello": next "nowhere" is not a step`,
				file + `:8: step "both": needs exactly one of`,
				file + `:9: step "none": needs exactly one of`,
				file + `:10: step "w": wait_for needs a positive timeout`,
				file + `:10: step "w": wait_for.where: `,
				file + `:11: step "t": wechat.text needs text`,
				file + `:12: step "t": duplicate id`,
				file + `:12: step "t": unknown field "colour"`,
			},
		},
	}
	for _, quiet := range []struct{ spec, want string }{
		{"22:00", `want HH:MM-HH:MM`},
		{"22:00-08:00-09:00", `want HH:MM-HH:MM`},
		{"25:00-08:00", `want HH:MM-HH:MM`},
		{"22:00-8am", `want HH:MM-HH:MM`},
		{"late-night", `want HH:MM-HH:MM`},
		{"08:00-08:00", `empty window`},
	} {
		tests = append(tests, struct {
			name string
			src  string
			want []string
			bug  string
		}{
			name: "bad quiet_hours " + quiet.spec,
			src: fmt.Sprintf(`
key: k
trigger: { event: wechat.subscribe }
quiet_hours: %q
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`, quiet.spec),
			want: []string{fmt.Sprintf(`%s:4: quiet_hours: %q: %s`, file, quiet.spec, quiet.want)},
		})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bug != "" {
				t.Skip(tc.bug)
			}
			c, err := Parse(file, []byte(tc.src), WithChannels(testChannels()))
			if err == nil {
				t.Fatalf("Parse = %+v, nil; want an error", c.Def)
			}
			if c != nil {
				t.Errorf("Parse returned a journey along with error %v", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			lines := problemLines(t, err)
			for _, l := range lines {
				if !strings.HasPrefix(l, file+":") {
					t.Errorf("problem %q does not name the file %q", l, file)
				}
			}
			if diff := cmp.Diff(tc.want, orderProblems(tc.want, lines)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

func TestParseRejectsUnknownTopLevelField(t *testing.T) {
	const file = "journeys/typo.yaml"
	_, err := Parse(file, []byte(`
key: k
trigger: { event: wechat.subscribe }
entery: { once: true }
steps:
  - { id: hello, send: { channel: wechat.text, text: hi } }
`))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse = %v; want an error wrapping ErrInvalid", err)
	}
	for _, want := range []string{file + ":4: ", "entery"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// A problem the YAML decoder finds (an unknown field inside send, a bad
// duration) is reported with its step and line, beside the file's other
// problems.
func TestParseDecoderProblemsNameStepAndKeepOthers(t *testing.T) {
	const file = "journeys/bad.yaml"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown field inside send",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: hello, send: { channel: wechat.text, txt: hi }, next: nowhere }
`,
			want: []string{file + `:5: step "hello": unknown field "txt"`, file + `:5: step "hello": wechat.text needs text`, file + `:5: step "hello": next "nowhere" is not a step`},
		},
		{
			name: "bad duration",
			src: `
key: k
trigger: { event: wechat.subscribe }
steps:
  - { id: pause, wait: 10x, next: nowhere }
`,
			want: []string{file + `:5: step "pause": bad duration "10x"`, file + `:5: step "pause": next "nowhere" is not a step`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(file, []byte(tc.src), WithChannels(testChannels()))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v; want an error wrapping ErrInvalid", err)
			}
			lines := strings.Split(err.Error(), "\n")[1:]
			if diff := cmp.Diff(tc.want, orderProblems(tc.want, lines)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"10m", 10 * time.Minute},
		{"48h", 48 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"7d", 7 * 24 * time.Hour},
		{"1d", 24 * time.Hour},
		{"10d", 240 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"2d30m", 48*time.Hour + 30*time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if err != nil {
				t.Fatalf("ParseDuration(%q) = %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseDuration(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
	for _, bad := range []string{"", "7", "abc", "d", "7x", "1.5d", "d7", "7days", "1h2d", "1dd", "xd"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if got, err := ParseDuration(bad); err == nil {
				t.Errorf("ParseDuration(%q) = %v, nil; want an error", bad, got)
			} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) && !strings.Contains(err.Error(), "bad duration") {
				t.Errorf("ParseDuration(%q) error %q names neither the input nor the problem", bad, err)
			}
		})
	}
}

func TestParseDurationInYAML(t *testing.T) {
	c, err := Parse("j.yaml", []byte(`
key: k
trigger: { event: wechat.subscribe }
entry: { cooldown: 1d12h }
steps:
  - { id: pause, wait: 7d, next: w }
  - { id: w, wait_for: { event: form.submitted, timeout: 90s } }
`))
	if err != nil {
		t.Fatal(err)
	}
	pause, _ := c.Step("pause")
	w, _ := c.Step("w")
	got := []time.Duration{time.Duration(c.Def.Entry.Cooldown), time.Duration(pause.Body.(*Wait).Duration), time.Duration(w.Body.(*WaitFor).Timeout)}
	want := []time.Duration{36 * time.Hour, 7 * 24 * time.Hour, 90 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("durations mismatch (-want +got):\n%s", diff)
	}
}

func TestQuietHours(t *testing.T) {
	cst := func(day, h, m int) time.Time { return time.Date(2026, time.March, day, h, m, 0, 0, chinaTime) }
	tests := []struct {
		name   string
		window string
		at     time.Time
		want   time.Time // when the send may go
	}{
		// Across midnight.
		{"overnight, late evening", "22:00-08:00", cst(10, 23, 0), cst(11, 8, 0)},
		{"overnight, at the start", "22:00-08:00", cst(10, 22, 0), cst(11, 8, 0)},
		{"overnight, just before midnight", "22:00-08:00", cst(10, 23, 59), cst(11, 8, 0)},
		{"overnight, at midnight", "22:00-08:00", cst(11, 0, 0), cst(11, 8, 0)},
		{"overnight, early morning", "22:00-08:00", cst(11, 3, 30), cst(11, 8, 0)},
		{"overnight, last minute", "22:00-08:00", cst(11, 7, 59), cst(11, 8, 0)},
		{"overnight, at the end", "22:00-08:00", cst(11, 8, 0), cst(11, 8, 0)},
		{"overnight, midday", "22:00-08:00", cst(11, 12, 0), cst(11, 12, 0)},
		{"overnight, just before the start", "22:00-08:00", cst(10, 21, 59), cst(10, 21, 59)},
		{"overnight, month end", "22:00-08:00", time.Date(2026, time.March, 31, 23, 0, 0, 0, chinaTime), time.Date(2026, time.April, 1, 8, 0, 0, 0, chinaTime)},
		// Within a day.
		{"lunch, inside", "12:00-14:00", cst(10, 13, 30), cst(10, 14, 0)},
		{"lunch, at the start", "12:00-14:00", cst(10, 12, 0), cst(10, 14, 0)},
		{"lunch, at the end", "12:00-14:00", cst(10, 14, 0), cst(10, 14, 0)},
		{"lunch, before", "12:00-14:00", cst(10, 11, 59), cst(10, 11, 59)},
		{"lunch, late night", "12:00-14:00", cst(10, 23, 0), cst(10, 23, 0)},
		{"lunch, early morning", "12:00-14:00", cst(10, 1, 0), cst(10, 1, 0)},
		// The window is China time whatever zone the time is given in:
		// 15:30 UTC is 23:30 in China, 00:00 UTC the next day is 08:00.
		{"UTC input inside", "22:00-08:00", time.Date(2026, time.March, 10, 15, 30, 0, 0, time.UTC), time.Date(2026, time.March, 11, 0, 0, 0, 0, time.UTC)},
		{"UTC input outside", "22:00-08:00", time.Date(2026, time.March, 10, 13, 30, 0, 0, time.UTC), time.Date(2026, time.March, 10, 13, 30, 0, 0, time.UTC)},
		// 04:30 UTC is 12:30 in China (lunch), 12:30 UTC is 20:30 in China.
		{"UTC morning is China lunchtime", "12:00-14:00", time.Date(2026, time.March, 10, 4, 30, 0, 0, time.UTC), time.Date(2026, time.March, 10, 6, 0, 0, 0, time.UTC)},
		{"UTC lunchtime is China evening", "12:00-14:00", time.Date(2026, time.March, 10, 12, 30, 0, 0, time.UTC), time.Date(2026, time.March, 10, 12, 30, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := parseQuietHours(tc.window)
			if err != nil {
				t.Fatalf("parseQuietHours(%q) = %v", tc.window, err)
			}
			got := q.until(tc.at)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("until(%v) for %q mismatch (-want +got):\n%s", tc.at, tc.window, diff)
			}
		})
	}
	t.Run("no quiet hours", func(t *testing.T) {
		var q *quietHours
		at := cst(10, 23, 0)
		if got := q.until(at); !got.Equal(at) {
			t.Errorf("nil quiet hours: until(%v) = %v; want it unchanged", at, got)
		}
	})
}

func TestPickSplit(t *testing.T) {
	half := []SplitArm{{Weight: 50, Next: "coupon_a"}, {Weight: 50, Next: "coupon_b"}}
	t.Run("deterministic per enrollment", func(t *testing.T) {
		for id := int64(1); id <= 1000; id++ {
			first := pickSplit(half, id, "vip")
			for range 3 {
				if got := pickSplit(half, id, "vip"); got != first {
					t.Fatalf("pickSplit(enrollment %d) = %d, then %d", id, first, got)
				}
			}
		}
	})
	tests := []struct {
		name    string
		arms    []SplitArm
		wantPct []float64 // expected share of each arm, percent
	}{
		{"50/50", half, []float64{50, 50}},
		{"90/10", []SplitArm{{Weight: 90, Next: "a"}, {Weight: 10, Next: "b"}}, []float64{90, 10}},
		{"1/1/2", []SplitArm{{Weight: 1, Next: "a"}, {Weight: 1, Next: "b"}, {Weight: 2, Next: "c"}}, []float64{25, 25, 50}},
		{"single arm", []SplitArm{{Weight: 7, Next: "a"}}, []float64{100}},
	}
	const n = 10000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counts := make([]int, len(tc.arms))
			for id := int64(1); id <= n; id++ {
				i := pickSplit(tc.arms, id, "vip")
				if i < 0 || i >= len(tc.arms) {
					t.Fatalf("pickSplit(enrollment %d) = %d; want an arm index below %d", id, i, len(tc.arms))
				}
				counts[i]++
			}
			// Each arm within 5 points of its weight (45-55% for a 50/50 split).
			got := make([]string, len(counts))
			want := make([]string, len(counts))
			for i, c := range counts {
				pct := 100 * float64(c) / n
				want[i] = "ok"
				got[i] = "ok"
				if pct < tc.wantPct[i]-5 || pct > tc.wantPct[i]+5 {
					got[i] = fmt.Sprintf("%.1f%%, want %.0f%%±5", pct, tc.wantPct[i])
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("split shares %v over %d enrollments (-want +got):\n%s", counts, n, diff)
			}
		})
	}
	t.Run("steps split independently", func(t *testing.T) {
		// The same enrollment at two split steps is not always sent down the
		// same arm index (else a second A/B test would be fully confounded).
		same := 0
		for id := int64(1); id <= n; id++ {
			if pickSplit(half, id, "first") == pickSplit(half, id, "second") {
				same++
			}
		}
		if pct := 100 * float64(same) / n; pct < 40 || pct > 60 {
			t.Errorf("two 50/50 splits agree for %.1f%% of enrollments; want about 50%%", pct)
		}
	})
}

// Parse checks a journey against what exists: channels against the
// configured senders (with WithChannels), event types against the sources,
// and the names expressions and templates read.
func TestParseChecksWhatExists(t *testing.T) {
	t.Parallel()
	const file = "welcome.yaml"
	head := "key: k\ntrigger: { event: wechat.subscribe }\nsteps:\n"
	tests := []struct {
		name     string
		src      string
		channels bool // WithChannels(testChannels())
		want     []string
	}{
		{
			name:     "channel without a sender",
			src:      head + "  - id: ask\n    send: { channel: wecom.group_message, text: hi }\n",
			channels: true,
			want: []string{file + `:5: step "ask": channel wecom.group_message has no sender (configure a WeCom app: WEJOURNEY_WECOM_CORPID, ` +
				`WEJOURNEY_WECOM_AGENTID and WEJOURNEY_WECOM_SECRET (or add one in the admin))`},
		},
		{
			name: "without WithChannels only the channel name is checked",
			src:  head + "  - id: crm\n    webhook: { url: \"https://crm.example.com\" }\n  - { id: t, send: { channel: wechat.text } }\n",
		},
		{
			name:     "fallback channel without a sender",
			src:      head + "  - id: hi\n    send: { channel: wechat.text, text: hi, fallback: wecom.group_message }\n",
			channels: true,
			want:     []string{file + `:5: step "hi": channel wecom.group_message has no sender`},
		},
		{
			name:     "a field the channel requires",
			src:      head + "  - { id: sms, send: { channel: sms, params: { a: b } } }\n",
			channels: true,
			want:     []string{file + `:4: step "sms": sms needs template`},
		},
		{
			name: "trigger event no source emits",
			src:  "key: k\ntrigger: { event: wechat.follow }\nsteps:\n  - { id: w, wait: 1m }\n",
			want: []string{file + `:2: trigger: no source emits event "wechat.follow" (wechat events: wechat.follower_imported, wechat.location, wechat.menu_click, wechat.menu_view, wechat.message, wechat.scan, wechat.subscribe, wechat.subscribe_message_authorized, wechat.template_sent, wechat.unsubscribe)`},
		},
		{
			name: "wait_for and exit events no source emits",
			src: "key: k\ntrigger: { event: wechat.subscribe }\nexit:\n  - event: wecom.left\nsteps:\n" +
				"  - id: w\n    wait_for: { event: wechat.clik, timeout: 1h }\n",
			want: []string{
				file + `:4: exit[0]: no source emits event "wecom.left" (wecom events: wecom.contact_added, wecom.contact_edited, wecom.contact_removed, wecom.group_changed, wecom.group_joined, wecom.group_left, wecom.message)`,
				file + `:7: step "w": wait_for.event: no source emits event "wechat.clik" (wechat events: `,
			},
		},
		{
			name: "brand events and their props pass",
			src: "key: k\ntrigger: { event: order.paid, where: 'event.amount > 100' }\nsteps:\n" +
				"  - { id: hi, send: { channel: wechat.text, text: \"{{ .event.amount }} {{ .member.attrs.tier }}\" } }\n",
		},
		{
			name: "a prop the trigger event lacks, in branch",
			src: head + "  - id: vip\n    branch:\n      - when: 'event.scen == \"x\" && member.tags != nil'\n        next: end\n      - next: end\n" +
				"  - { id: end, wait: 1m }\n",
			want: []string{file + `:6: step "vip": branch[0].when: event has no prop "scen" (wechat.subscribe has: scene, ticket)`},
		},
		{
			name: "trigger.where, exit where and wait_for.where use their own event",
			src: "key: k\ntrigger: { event: wechat.subscribe, where: 'event.key == \"a\"' }\nexit:\n  - { event: wechat.menu_click, where: 'event.scene == \"a\"' }\nsteps:\n" +
				"  - id: w\n    wait_for: { event: wechat.menu_click, where: 'event.key == \"b\" && event.ticket == \"\"', timeout: 1h }\n",
			want: []string{
				file + `:2: trigger.where: event has no prop "key" (wechat.subscribe has: scene, ticket)`,
				file + `:4: exit[0].where: event has no prop "scene" (wechat.menu_click has: key)`,
				file + `:7: step "w": wait_for.where: event has no prop "ticket" (wechat.menu_click has: key)`,
			},
		},
		{
			name: "exit when and goal: event or when, when over member only",
			src: "key: k\ntrigger: { event: wechat.subscribe }\nentry: { max_active: -1 }\nexit:\n" +
				"  - { when: 'member.attrs.vip == true' }\n" +
				"  - { event: wechat.unsubscribe, when: 'member.subscribed == false' }\n" +
				"  - { when: 'event.scene == \"x\"' }\n" +
				"  - { where: 'member.attrs.vip == true' }\n" +
				"goal: { event: order.paid, where: 'event.amount > 0 && member.nicknam != \"\"' }\nsteps:\n  - { id: w, wait: 1m }\n",
			want: []string{
				file + `:3: entry: max_active must be positive`,
				file + `:6: exit[1]: when excludes event and where (an event rule filters with where)`,
				file + `:7: exit[2]: when is over member only (use event and where to match an event)`,
				file + `:8: exit[3]: event or when is required`,
				file + `:9: goal.where: member has no field "nicknam" (member has: `,
			},
		},
		{
			name: "goal when, exit when and max_active pass",
			src: "key: k\ntrigger: { event: wechat.subscribe }\nentry: { once: true, max_active: 100 }\nexit:\n" +
				"  - { when: 'member.attrs.vip == true' }\n  - { event: wechat.unsubscribe }\n" +
				"goal: { when: 'member.attrs.bound == true' }\nsteps:\n  - { id: w, wait: 1m }\n",
		},
		{
			name: "member fields",
			src:  head + "  - id: b\n    branch:\n      - { when: 'member.nicknam == \"x\" || member.attrs.anything', next: e }\n  - { id: e, wait: 1m }\n",
			want: []string{file + `:6: step "b": branch[0].when: member has no field "nicknam" (member has: `},
		},
		{
			name: "template names",
			src: head + "  - id: hi\n    send:\n      channel: wechat.text\n      text: \"{{ .membr.nickname }}\"\n" +
				"      data: { b: \"{{ .event.scen }}\", a: \"{{ if .member.subscribed }}{{ .member.nick }}{{ end }}\" }\n",
			want: []string{
				file + `:7: step "hi": text: unknown name .membr (use .event or .member)`,
				file + `:8: step "hi": data.a: member has no field "nick"`,
				file + `:8: step "hi": data.b: event has no prop "scen" (wechat.subscribe has: scene, ticket)`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []ParseOption
			if tc.channels {
				opts = append(opts, WithChannels(testChannels()))
			}
			_, err := Parse(file, []byte(tc.src), opts...)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Parse = %v; want no problems", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v; want an error wrapping ErrInvalid", err)
			}
			lines := problemLines(t, err)
			if diff := cmp.Diff(tc.want, orderProblems(tc.want, lines)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}

// A journey with many problems is reported the same way every time: in
// file order, each step's fields in the order written.
func TestParseProblemOrderIsStable(t *testing.T) {
	t.Parallel()
	src := []byte(`
name: many mistakes
trigger: { event: wechat.follow, where: 'event.scen == "a"' }
entry: { once: true, cooldown: 1h }
exit:
  - { event: wecom.left }
  - { event: wechat.unsubscribe, where: 'event.x ==' }
steps:
  - id: hello
    send:
      channel: wechat.fax
      data: { z: "{{ .a }}", y: "{{ .b }}", x: "{{ .c }}", w: "{{ .d }}" }
      params: { d: "{{ .e }}", c: "{{ .f }}" }
      extra: { q: "{{ .g }}", p: "{{ .h }}" }
    next: nowhere
  - { id: both, send: { channel: webhook, url: "{{ .i }}" }, wait: 1m, colour: red, size: 2 }
  - id: b
    branch:
      - { when: 'event.a == 1', next: x1 }
      - { when: 'member.b', next: x2 }
      - { next: x3 }
  - { id: s, split: [ { weight: 0, next: y1 }, { weight: 1, next: y2 } ] }
`)
	var first string
	for i := range 30 {
		_, err := Parse("many.yaml", src, WithChannels(testChannels()))
		if err == nil {
			t.Fatal("Parse = nil; want problems")
		}
		if i == 0 {
			first = err.Error()
			if n := strings.Count(first, "\n"); n < 20 {
				t.Fatalf("only %d problems; the test wants many:\n%s", n, first)
			}
			continue
		}
		if diff := cmp.Diff(first, err.Error()); diff != "" {
			t.Fatalf("run %d reported differently (-first +now):\n%s", i+1, diff)
		}
	}
	lines := problemLines(t, errors.New(first))
	prev := 0
	for _, l := range lines {
		var line int
		if _, err := fmt.Sscanf(strings.TrimPrefix(l, "many.yaml:"), "%d:", &line); err != nil {
			continue
		}
		if line < prev {
			t.Errorf("problem %q comes after one at line %d: not in file order", l, prev)
		}
		prev = line
	}
}

func TestParseWaitForms(t *testing.T) {
	c, err := Parse("j.yaml", []byte(`
key: k
trigger: { event: cart.abandoned }
steps:
  - { id: plain, wait: 2h, next: morning }
  - { id: morning, wait: { until: "09:00" }, next: renewal }
  - { id: renewal, wait: { until_attribute: renewal_date, offset: -3d, at: "10:00" }, next: bare }
  - { id: bare, wait: { until_attribute: renewal_date }, next: order }
  - { id: order, wait_for: { event: order.paid, match: cart_id, timeout: 1d, within: 10m }, next: both }
  - { id: both, wait_for: { event: order.paid, match: [cart_id, store], timeout: 1h } }
`))
	if err != nil {
		t.Fatal(err)
	}
	type waitForm struct {
		Duration       time.Duration
		Until          string
		UntilAttribute string
		Offset         time.Duration
		At             string
		Waits          time.Duration
	}
	var got []waitForm
	for _, id := range []string{"plain", "morning", "renewal", "bare"} {
		s, _ := c.Step(id)
		w := s.Body.(*Wait)
		d, _ := w.Waits()
		got = append(got, waitForm{time.Duration(w.Duration), w.Until, w.UntilAttribute, w.Offset, w.At, d})
	}
	want := []waitForm{
		{Duration: 2 * time.Hour, Waits: 2 * time.Hour},
		{Until: "09:00"},
		{UntilAttribute: "renewal_date", Offset: -72 * time.Hour, At: "10:00"},
		{UntilAttribute: "renewal_date"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("waits mismatch (-want +got):\n%s", diff)
	}
	order, _ := c.Step("order")
	both, _ := c.Step("both")
	o, b := order.Body.(*WaitFor), both.Body.(*WaitFor)
	waits, _ := o.Waits()
	if diff := cmp.Diff([]any{PropNames{"cart_id"}, 10 * time.Minute, 24*time.Hour + 10*time.Minute, PropNames{"cart_id", "store"}},
		[]any{o.Match, time.Duration(o.Within), waits, b.Match}); diff != "" {
		t.Errorf("wait_for mismatch (-want +got):\n%s", diff)
	}
}

func TestParseOffset(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"-3d": -72 * time.Hour, "3d": 72 * time.Hour, "+2h": 2 * time.Hour, "-1d12h": -36 * time.Hour, "-90m": -90 * time.Minute,
	} {
		if got, err := ParseOffset(in); err != nil || got != want {
			t.Errorf("ParseOffset(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-", "--3d", "3 days", "-3x", "+-1h"} {
		if got, err := ParseOffset(bad); err == nil {
			t.Errorf("ParseOffset(%q) = %v, nil; want an error", bad, got)
		}
	}
}

// Until, at the boundaries of China time's day, whatever the zone of now.
func TestNextTimeOfDay(t *testing.T) {
	cst := func(day, h, m, s int) time.Time { return time.Date(2026, time.March, day, h, m, s, 0, chinaTime) }
	tests := []struct{ now, want time.Time }{
		{cst(1, 8, 59, 59), cst(1, 9, 0, 0)},
		{cst(1, 9, 0, 0), cst(2, 9, 0, 0)},
		{cst(1, 9, 0, 1), cst(2, 9, 0, 0)},
		{cst(1, 23, 59, 0).UTC(), cst(2, 9, 0, 0)},
		{cst(31, 10, 0, 0).In(time.FixedZone("PST", -8*3600)), time.Date(2026, time.April, 1, 9, 0, 0, 0, chinaTime)},
	}
	for _, tc := range tests {
		if got := nextTimeOfDay(tc.now, 9*60); !got.Equal(tc.want) {
			t.Errorf("nextTimeOfDay(%v, 09:00) = %v; want %v", tc.now, got.In(chinaTime), tc.want)
		}
	}
}
