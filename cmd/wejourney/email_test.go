package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/internal/fakesmtp"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// emailHarness is a running wejourney whose email channel sends to a
// fake SMTP server on loopback, with WEJOURNEY_PUBLIC_URL its own address.
type emailHarness struct {
	*harness
	smtp *fakesmtp.Server
}

func newEmailHarness(t *testing.T, journeys map[string]string) *emailHarness {
	t.Helper()
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	srv, err := fakesmtp.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cfg := testConfig(t, fake, journeys)
	cfg.SMTPURL, cfg.EmailFrom = srv.URL(), "品牌 <news@brand.example>"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.PublicURL = "http://" + ln.Addr().String()
	ctx := context.Background()
	app, err := NewApp(ctx, cfg, Options{Listener: ln, Logger: testLogger(), AutoMigrate: true, SweepInterval: 500 * time.Millisecond})
	if err != nil {
		ln.Close()
		t.Fatalf("NewApp: %v", err)
	}
	t.Cleanup(app.Close)
	if err := app.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	h := &harness{t: t, app: app, fake: fake, base: "http://" + app.Addr, db: app.DB}
	return &emailHarness{harness: h, smtp: srv}
}

// waitMail waits until n messages to addr arrived and returns them.
func (h *emailHarness) waitMail(addr string, n int, within time.Duration) []fakesmtp.Message {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	err := h.smtp.Wait(ctx, func([]fakesmtp.Message) bool { return len(h.smtp.MessagesTo(addr)) >= n })
	got := h.smtp.MessagesTo(addr)
	if err != nil {
		h.t.Fatalf("waiting for %d emails to %s: got %d: %v", n, addr, len(got), err)
	}
	return got
}

// noRedirects is an HTTP client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// readMail parses a received message: its headers and its parts by content type.
func readMail(t *testing.T, m fakesmtp.Message) (mail.Header, map[string]string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	decode := func(cte string, r io.Reader) string {
		switch strings.ToLower(cte) {
		case "quoted-printable":
			r = quotedprintable.NewReader(r)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, r)
		}
		b, _ := io.ReadAll(r)
		return strings.TrimRight(string(b), "\r\n")
	}
	out := map[string]string{}
	if !strings.HasPrefix(mt, "multipart/") {
		out[mt] = decode(msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
		return msg.Header, out
	}
	out["multipart"] = mt
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		out[pt] = decode(p.Header.Get("Content-Transfer-Encoding"), p)
	}
	return msg.Header, out
}

func (h *emailHarness) member(addr string) *model.Member {
	h.t.Helper()
	m := &model.Member{}
	if err := h.db.Where("email = ?", addr).First(m).Error; err != nil {
		h.t.Fatalf("member %s: %v", addr, err)
	}
	return m
}

// An email step sends multipart/alternative with the one-click unsubscribe
// headers, its links tracked and an open pixel; following the link
// redirects to the original and resumes the journey waiting for the click.
func TestEmailTrackedLinkResumesJourney(t *testing.T) {
	parallel(t)
	h := newEmailHarness(t, map[string]string{"news.yaml": `
key: news
trigger: { event: newsletter.requested }
steps:
  - id: mail
    send:
      channel: email
      subject: "{{ .event.title }}，欢迎"
      text: "看看价格: https://brand.example/pricing"
      html: '<html><body><p>看看 <a href="https://brand.example/pricing?plan=pro&amp;ref=mail">价格</a>，{{ .event.title }}</p></body></html>'
    next: wait_click
  - id: wait_click
    wait_for: { event: email.clicked, where: 'event.url startsWith "https://brand.example/pricing"', timeout: 48h }
    next: thanks
  - id: thanks
    send: { channel: email, subject: "谢谢", text: "thanks for clicking" }
`})
	const addr = "li.lei@example.com"
	if got := h.postEvents(`{"id": "n1", "type": "newsletter.requested", "member": {"email": "` + addr + `"}, "props": {"title": "十一月"}}`); got != http.StatusAccepted {
		t.Fatalf("POST /api/v1/events: %d", got)
	}
	first := h.waitMail(addr, 1, 10*time.Second)[0]
	hdr, parts := readMail(t, first)
	if parts["multipart"] != "multipart/alternative" {
		t.Errorf("Content-Type %q; want multipart/alternative", hdr.Get("Content-Type"))
	}
	if subj, _ := new(mime.WordDecoder).DecodeHeader(hdr.Get("Subject")); subj != "十一月，欢迎" {
		t.Errorf("Subject %q", subj)
	}
	if parts["text/plain"] != "看看价格: https://brand.example/pricing" {
		t.Errorf("text part %q", parts["text/plain"])
	}
	base := h.app.Cfg.PublicURL
	unsub := hdr.Get("List-Unsubscribe")
	if !strings.HasPrefix(unsub, "<"+base+"/u/") {
		t.Errorf("List-Unsubscribe %q; want <%s/u/{token}>", unsub, base)
	}
	if got := hdr.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post %q", got)
	}
	var d model.Delivery
	if err := h.db.Where("channel = ?", "email").Order("id").First(&d).Error; err != nil {
		t.Fatal(err)
	}
	if d.To != addr {
		t.Errorf("the delivery's address %q; want %s", d.To, addr)
	}
	if want := fmt.Sprintf("<wj-%d.", d.ID); !strings.HasPrefix(hdr.Get("Message-Id"), want) {
		t.Errorf("Message-ID %q; want it to start with %s", hdr.Get("Message-Id"), want)
	}
	html := parts["text/html"]
	if !strings.Contains(html, "，十一月</p>") {
		t.Errorf("the HTML part was not rendered: %q", html)
	}
	link := regexp.MustCompile(`href="(` + regexp.QuoteMeta(base) + `/t/c/[^"]+)"`).FindStringSubmatch(html)
	pixel := regexp.MustCompile(`<img src="(` + regexp.QuoteMeta(base) + `/t/o/[^"]+)" width="1" height="1"`).FindStringSubmatch(html)
	if link == nil || pixel == nil || strings.Contains(html, `href="https://brand.example`) {
		t.Fatalf("the HTML part has no tracked link or no open pixel: %q", html)
	}

	// The open pixel, loaded twice: one email.opened.
	for range 2 {
		resp, err := http.Get(pixel[1])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/gif" || len(body) == 0 {
			t.Errorf("open pixel: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	// The tracked link: 302 to the original.
	resp, err := noRedirects.Get(strings.ReplaceAll(link[1], "&amp;", "&"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://brand.example/pricing?plan=pro&ref=mail" {
		t.Fatalf("tracked link: %d to %q; want 302 to the original", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The journey waiting for the click goes on.
	second := h.waitMail(addr, 2, 15*time.Second)[1]
	if subj, _ := new(mime.WordDecoder).DecodeHeader(mustHeader(t, second).Get("Subject")); subj != "谢谢" {
		t.Errorf("second email's subject %q; want 谢谢", subj)
	}
	if n := h.count(&model.Event{}, "type = ?", events.EmailOpened); n != 1 {
		t.Errorf("%d email.opened events after two loads of the pixel; want 1", n)
	}
	var clicks []model.Event
	h.db.Where("type = ?", events.EmailClicked).Find(&clicks)
	if len(clicks) != 1 || clicks[0].Props["url"] != "https://brand.example/pricing?plan=pro&ref=mail" {
		t.Errorf("email.clicked events %+v; want one with the original url", clicks)
	}

	// Forged and altered tokens: 404, never 500.
	tok := strings.TrimPrefix(link[1], base+"/t/c/")
	for _, u := range []string{"/t/c/" + tok[:len(tok)-2] + "AA", "/t/o/nope", "/t/c/x.y", "/u/" + tok, "/t/o/" + tok} {
		resp, err := noRedirects.Get(h.base + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d; want 404", u, resp.StatusCode)
		}
	}
}

// A one-click unsubscribe (RFC 8058) stops the member's marketing email;
// a transactional one still goes.
func TestEmailOneClickUnsubscribe(t *testing.T) {
	parallel(t)
	h := newEmailHarness(t, map[string]string{
		"promo.yaml": `
key: promo
trigger: { event: promo.due }
steps:
  - id: offer
    send: { channel: email, subject: "双十一", text: "five percent off", html: "<p>5% off</p>" }
`,
		"receipt.yaml": `
key: receipt
trigger: { event: order.paid }
steps:
  - id: receipt
    send: { channel: email, subject: "订单 {{ .event.order }}", text: "paid", category: transactional }
`})
	const addr = "han.meimei@example.com"
	post := func(id, typ string) {
		t.Helper()
		if got := h.postEvents(`{"id": "` + id + `", "type": "` + typ + `", "member": {"email": "` + addr + `"}, "props": {"order": "A-1"}}`); got != http.StatusAccepted {
			t.Fatalf("POST %s: %d", typ, got)
		}
	}
	post("p1", "promo.due")
	hdr, _ := readMail(t, h.waitMail(addr, 1, 10*time.Second)[0])
	unsub := strings.TrimSuffix(strings.TrimPrefix(hdr.Get("List-Unsubscribe"), "<"), ">")

	// The page asks first, and changes nothing.
	resp, err := http.Get(unsub)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "退订") || !strings.Contains(string(page), `method="post"`) {
		t.Errorf("unsubscribe page: %d %s", resp.StatusCode, page)
	}
	if h.member(addr).OptedOut("email") {
		t.Fatal("GET of the unsubscribe page unsubscribed the member")
	}
	// The mail client's one-click POST.
	resp, err = http.Post(unsub, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %d; want 200", resp.StatusCode)
	}
	h.eventually("the member to be opted out of email", 10*time.Second, func() bool { return h.member(addr).OptedOut("email") })
	// Again, from the page's form: the same, and still one event.
	resp, err = http.Post(unsub, "application/x-www-form-urlencoded", strings.NewReader("confirm=1"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "已退订") {
		t.Errorf("unsubscribe form: %d %s", resp.StatusCode, page)
	}
	if n := h.count(&model.Event{}, "type = ?", events.EmailUnsubscribed); n != 1 {
		t.Errorf("%d email.unsubscribed events; want 1", n)
	}

	post("p2", "promo.due")
	h.eventually("the second promo's delivery to be settled", 10*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ? AND status = ?", "email", model.DeliveryFailed) == 1
	})
	var d model.Delivery
	h.db.Where("channel = ? AND status = ?", "email", model.DeliveryFailed).First(&d)
	if !strings.Contains(d.Error, "opted out") {
		t.Errorf("the second promo's delivery error %q; want it to say the member opted out", d.Error)
	}
	post("o1", "order.paid")
	got := h.waitMail(addr, 2, 10*time.Second)
	if len(got) != 2 {
		t.Fatalf("%d emails; want the promo and the receipt", len(got))
	}
	if subj, _ := new(mime.WordDecoder).DecodeHeader(mustHeader(t, got[1]).Get("Subject")); subj != "订单 A-1" {
		t.Errorf("second email %q; want the receipt (订单 A-1), not the promo", subj)
	}
}

func mustHeader(t *testing.T, m fakesmtp.Message) mail.Header {
	hdr, _ := readMail(t, m)
	return hdr
}

// SMTP 550 for a recipient is not retried: the member is unreachable on
// email and the step takes its fallback. 451 is retried, then delivered.
func TestEmailSMTPRefusals(t *testing.T) {
	parallel(t)
	h := newEmailHarness(t, map[string]string{"hello.yaml": `
key: hello
trigger: { event: signup.done }
steps:
  - id: mail
    send: { channel: email, subject: "hi", text: "hello", fallback: by_sms }
  - id: by_sms
    send: { channel: sms, template: SMS_HELLO }
`})
	h.smtp.FailRcpt("gone@example.com", 550, -1)
	h.smtp.FailRcpt("busy@example.com", 451, 1)
	for i, addr := range []string{"gone@example.com", "busy@example.com"} {
		body := fmt.Sprintf(`{"id": "s%d", "type": "signup.done", "member": {"email": %q, "phone": "1380000000%d"}}`, i, addr, i)
		if got := h.postEvents(body); got != http.StatusAccepted {
			t.Fatalf("POST: %d", got)
		}
	}
	h.waitMail("busy@example.com", 1, 20*time.Second)
	h.eventually("the refused member's SMS fallback", 10*time.Second, func() bool {
		return h.count(&model.Delivery{}, "channel = ?", "sms") == 1
	})
	gone := h.member("gone@example.com")
	var d model.Delivery
	if err := h.db.Where("member_id = ? AND channel = ?", gone.ID, "email").First(&d).Error; err != nil {
		t.Fatal(err)
	}
	if d.Status != model.DeliveryFailed || d.ErrorCode != 550 {
		t.Errorf("the 550 delivery: %s, code %d; want failed with 550", d.Status, d.ErrorCode)
	}
	if n := h.count(&model.Delivery{}, "member_id = ? AND channel = ?", gone.ID, "sms"); n != 1 {
		t.Errorf("%d SMS fallbacks for the refused member; want 1", n)
	}
	busy := h.member("busy@example.com")
	h.eventually("the 451 member's email delivery to be recorded sent", 10*time.Second, func() bool {
		return h.count(&model.Delivery{}, "member_id = ? AND channel = ? AND status = ?", busy.ID, "email", model.DeliverySent) == 1
	})
	if n := h.count(&model.Delivery{}, "member_id = ? AND channel = ?", busy.ID, "sms"); n != 0 {
		t.Errorf("the 451 member took the SMS fallback")
	}
	// Two RCPTs for busy (the 451, then the retry), one for gone (no retry).
	if n := h.smtp.Rcpts(); n != 3 {
		t.Errorf("%d RCPT TO commands; want 3 (550 not retried, 451 retried once)", n)
	}
	if n := len(h.smtp.MessagesTo("gone@example.com")); n != 0 {
		t.Errorf("%d messages to the refused address", n)
	}
}
