package email

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/fakesmtp"
)

const testPublic = "https://journeys.brand.example"

func newTestSender(t *testing.T) (*Sender, *fakesmtp.Server, *Tokens) {
	t.Helper()
	srv, err := fakesmtp.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	tokens, err := NewTokens([]byte("test key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{SMTPURL: srv.URL(), From: "Brand <news@brand.example>", PublicURL: testPublic + "/", Tokens: tokens,
		Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s, srv, tokens
}

// parts parses a received message into its headers and its parts by
// content type.
func parts(t *testing.T, data []byte) (mail.Header, map[string]string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	if !strings.HasPrefix(mt, "multipart/") {
		b, _ := io.ReadAll(decode(m.Header.Get("Content-Transfer-Encoding"), m.Body))
		out[mt] = strings.TrimRight(string(b), "\r\n")
		return m.Header, out
	}
	if mt != "multipart/alternative" {
		t.Fatalf("Content-Type %s; want multipart/alternative", mt)
	}
	r := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		b, _ := io.ReadAll(decode(p.Header.Get("Content-Transfer-Encoding"), p))
		out[pt] = strings.TrimRight(string(b), "\r\n")
	}
	return m.Header, out
}

func send(t *testing.T, s *Sender, msg channels.Message) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.Send(ctx, msg)
	return err
}

var hrefs = regexp.MustCompile(`href="([^"]*)"`)

func TestSendMultipartWithTracking(t *testing.T) {
	t.Parallel()
	s, srv, tokens := newTestSender(t)
	html := `<html><BODY><p>看看 <a class="x" HREF="https://brand.example/pricing?a=1&amp;b=2">价格</a>, ` +
		`<a href="mailto:help@brand.example">写信</a>, <a href="#top">top</a>.</p></BODY></html>`
	msg := channels.Message{DeliveryID: 42, IdempotencyKey: "wj-42", Channel: channels.Email, Subject: "欢迎",
		Text: "看看价格 https://brand.example/pricing", To: channels.Recipient{MemberID: 7, Email: "li@example.com"},
		Extra: map[string]string{"html": html}}
	if err := send(t, s, msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.MessagesTo("li@example.com")
	if len(got) != 1 {
		t.Fatalf("%d messages arrived; want 1", len(got))
	}
	h, ps := parts(t, got[0].Data)
	if subj, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject")); subj != "欢迎" {
		t.Errorf("Subject %q; want 欢迎", subj)
	}
	if ps["text/plain"] != msg.Text {
		t.Errorf("text part %q; want %q", ps["text/plain"], msg.Text)
	}
	lu := h.Get("List-Unsubscribe")
	if !strings.HasPrefix(lu, "<"+testPublic+"/u/") || !strings.HasSuffix(lu, ">") {
		t.Fatalf("List-Unsubscribe %q; want <%s/u/{token}>", lu, testPublic)
	}
	c, err := tokens.Verify(strings.TrimSuffix(strings.TrimPrefix(lu, "<"+testPublic+"/u/"), ">"))
	if err != nil || c != (Claims{Kind: Unsubscribe, DeliveryID: 42, MemberID: 7}) {
		t.Errorf("unsubscribe token: %+v, %v", c, err)
	}
	if got := h.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post %q", got)
	}
	if id := h.Get("Message-Id"); !strings.HasPrefix(id, "<wj-42.") || !strings.HasSuffix(id, "@brand.example>") {
		t.Errorf("Message-ID %q; want <wj-42.…@brand.example>", id)
	}
	body := ps["text/html"]
	links := hrefs.FindAllStringSubmatch(body, -1)
	if len(links) != 3 {
		t.Fatalf("html part %q: want 3 links", body)
	}
	tracked := strings.ReplaceAll(links[0][1], "&amp;", "&")
	tok, ok := strings.CutPrefix(tracked, testPublic+"/t/c/")
	if !ok {
		t.Fatalf("first link %q is not tracked", tracked)
	}
	c, err = tokens.Verify(tok)
	if err != nil || c != (Claims{Kind: Click, DeliveryID: 42, MemberID: 7, URL: "https://brand.example/pricing?a=1&b=2"}) {
		t.Errorf("click token: %+v, %v", c, err)
	}
	if links[1][1] != "mailto:help@brand.example" || links[2][1] != "#top" {
		t.Errorf("non-http links were changed: %q, %q", links[1][1], links[2][1])
	}
	if !strings.Contains(body, `<p>看看 `) || !strings.Contains(body, `>价格</a>`) {
		t.Errorf("the rest of the HTML changed: %q", body)
	}
	pix := regexp.MustCompile(`<img src="` + regexp.QuoteMeta(testPublic) + `/t/o/([^"]+)" width="1" height="1"[^>]*></BODY>`).FindStringSubmatch(body)
	if pix == nil {
		t.Fatalf("no open pixel before </BODY> in %q", body)
	}
	if c, err := tokens.Verify(pix[1]); err != nil || c.Kind != Open || c.DeliveryID != 42 {
		t.Errorf("open token: %+v, %v", c, err)
	}

	// A retry of the same delivery carries the same Message-ID.
	if err := send(t, s, msg); err != nil {
		t.Fatal(err)
	}
	h2, _ := parts(t, srv.MessagesTo("li@example.com")[1].Data)
	if h2.Get("Message-Id") != h.Get("Message-Id") {
		t.Errorf("retry Message-ID %q; first %q", h2.Get("Message-Id"), h.Get("Message-Id"))
	}
}

func TestSendTextOnly(t *testing.T) {
	t.Parallel()
	s, srv, _ := newTestSender(t)
	msg := channels.Message{DeliveryID: 1, Subject: "code", Text: "your code: 1234", To: channels.Recipient{MemberID: 1, Email: "a@example.com"}}
	if err := send(t, s, msg); err != nil {
		t.Fatal(err)
	}
	h, ps := parts(t, srv.MessagesTo("a@example.com")[0].Data)
	if len(ps) != 1 || ps["text/plain"] != "your code: 1234" {
		t.Errorf("parts %v; want the text part alone", ps)
	}
	if h.Get("List-Unsubscribe") == "" {
		t.Error("no List-Unsubscribe header")
	}
}

// A test send (channels test, a test run sending to a tester) has no
// delivery: each test email's links carry an id of their own, naming no
// delivery, so each one's unsubscribe and opens are recorded.
func TestTestSendLinksNameNoDelivery(t *testing.T) {
	t.Parallel()
	s, srv, tokens := newTestSender(t)
	seen := map[int64]bool{}
	for range 2 {
		msg := channels.Message{IdempotencyKey: channels.TestKey(), Subject: "test", Text: "hi", To: channels.Recipient{MemberID: 7, Email: "tester@example.com"}}
		if err := send(t, s, msg); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range srv.MessagesTo("tester@example.com") {
		h, _ := parts(t, m.Data)
		lu := h.Get("List-Unsubscribe")
		c, err := tokens.Verify(strings.TrimSuffix(strings.TrimPrefix(lu, "<"+testPublic+"/u/"), ">"))
		if err != nil || c.MemberID != 7 || c.DeliveryID >= 0 || seen[c.DeliveryID] {
			t.Errorf("unsubscribe token %+v, %v: want member 7 and a negative id of its own", c, err)
		}
		seen[c.DeliveryID] = true
	}
	if len(seen) != 2 {
		t.Errorf("%d test emails' tokens, want 2", len(seen))
	}
}

func TestSendErrorClasses(t *testing.T) {
	t.Parallel()
	s, srv, _ := newTestSender(t)
	srv.FailRcpt("gone@example.com", 550, -1)
	srv.FailRcpt("busy@example.com", 451, 1)
	srv.FailRcpt("spam@example.com", 554, -1)
	to := func(addr string) channels.Message {
		return channels.Message{DeliveryID: 3, Subject: "s", Text: "t", To: channels.Recipient{MemberID: 3, Email: addr}}
	}
	var ce *channels.Error
	err := send(t, s, to("gone@example.com"))
	if !errors.Is(err, channels.ErrUnreachable) || !errors.As(err, &ce) || ce.Code != 550 {
		t.Errorf("550 to RCPT: %v; want ErrUnreachable with code 550", err)
	}
	err = send(t, s, to("spam@example.com"))
	if !errors.Is(err, channels.ErrPermanent) {
		t.Errorf("554: %v; want ErrPermanent", err)
	}
	err = send(t, s, to("busy@example.com"))
	if err == nil || errors.Is(err, channels.ErrUnreachable) || errors.Is(err, channels.ErrPermanent) || errors.Is(err, channels.ErrQuota) ||
		errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ce) || ce.Code != 451 {
		t.Errorf("451: %v; want a temporary error with code 451", err)
	}
	if err := send(t, s, to("busy@example.com")); err != nil {
		t.Errorf("second try after a 451: %v", err)
	}
	if n := len(srv.MessagesTo("busy@example.com")); n != 1 {
		t.Errorf("%d messages to busy@; want 1", n)
	}
	if err := send(t, s, to("")); !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("no address: %v; want ErrUnreachable", err)
	}
	if err := send(t, s, to("not an address")); !errors.Is(err, channels.ErrUnreachable) {
		t.Errorf("bad address: %v; want ErrUnreachable", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages arrived in all; want 1", n)
	}
}

func TestSendServerDown(t *testing.T) {
	t.Parallel()
	srv, err := fakesmtp.New()
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	tokens, _ := NewTokens([]byte("k"))
	s, err := New(Config{SMTPURL: srv.URL(), From: "news@brand.example", PublicURL: testPublic, Tokens: tokens, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = send(t, s, channels.Message{DeliveryID: 1, Subject: "s", Text: "t", To: channels.Recipient{Email: "a@example.com"}})
	if err == nil || errors.Is(err, channels.ErrPermanent) || errors.Is(err, channels.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("server down: %v; want a temporary error", err)
	}
}

func TestParseSMTPURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		raw  string
		host string
		port int
		tls  bool
		ok   bool
	}{
		{"smtp://u:p@mail.example:2525", "mail.example", 2525, false, true},
		{"smtp://mail.example", "mail.example", 587, false, true},
		{"smtps://u:p@mail.example", "mail.example", 465, true, true},
		{"http://mail.example", "", 0, false, false},
		{"smtp://", "", 0, false, false},
		{"smtp://u:secret@mail.example:99999", "", 0, false, false},
	} {
		host, port, tls, err := ParseSMTPURL(c.raw)
		if (err == nil) != c.ok || host != c.host || port != c.port || tls != c.tls {
			t.Errorf("ParseSMTPURL(%q) = %q, %d, %v, %v", c.raw, host, port, tls, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q repeats the password", err)
		}
	}
}

func TestRewriteHTML(t *testing.T) {
	t.Parallel()
	link := func(u string) string { return "https://t.example/c?u=" + url.QueryEscape(u) }
	for _, c := range []struct{ in, want string }{
		{`<a href="http://x.example/">x</a>`, `<a href="https://t.example/c?u=http%3A%2F%2Fx.example%2F">x</a><img src="P" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">`},
		{`<body><A Href=' https://x.example/a '>a</A><a>none</a></body>`, `<body><a href="https://t.example/c?u=https%3A%2F%2Fx.example%2Fa">a</A><a>none</a><img src="P" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px"></body>`},
		{`<p>javascript <a href="javascript:alert(1)">j</a> <a href="//x.example/">rel</a></p></body>`, `<p>javascript <a href="javascript:alert(1)">j</a> <a href="//x.example/">rel</a></p><img src="P" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px"></body>`},
	} {
		if got := rewriteHTML(c.in, link, "P"); got != c.want {
			t.Errorf("rewriteHTML(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

// decode undoes a part's Content-Transfer-Encoding.
func decode(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(cte) {
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r)
	}
	return r
}
