// Package email is the email channel: it sends a journey's `send: {channel:
// email}` step over SMTP (github.com/wneessen/go-mail) as multipart/
// alternative (text and HTML), with RFC 8058 one-click unsubscribe headers,
// its HTML links sent through the click redirect and an open pixel. The
// tokens of those links are signed (Tokens); the HTTP routes that answer
// them are in package handler.
package email

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/mail"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/clock"
)

// Routes of the public URL that tokens travel in (served by package handler).
const (
	OpenPath        = "/t/o/"
	ClickPath       = "/t/c/"
	UnsubscribePath = "/u/"
)

// Config configures a Sender.
type Config struct {
	// SMTPURL is smtp://[user:pass@]host[:port] (port 587; STARTTLS when
	// the server offers it) or smtps://[user:pass@]host[:port] (port 465,
	// TLS from the first byte). Required.
	SMTPURL string
	// From is the sender address, "Brand <news@brand.example>". Required.
	From string
	// PublicURL is the base URL of the tracking and unsubscribe routes
	// ("https://journeys.brand.example"). Required.
	PublicURL string
	// Tokens signs the tracking and unsubscribe tokens. Required.
	Tokens *Tokens
	// Clock stamps the Date header. Default clock.Real().
	Clock clock.Clock
	// Timeout bounds one message: connecting, the SMTP dialogue and the
	// data. Default 30 s.
	Timeout time.Duration
}

// Sender sends email over SMTP. It implements channels.Provider for the
// "email" channel. It opens one SMTP connection per message and never
// retries: the engine does.
type Sender struct {
	cfg    Config
	host   string
	opts   []gomail.Option
	from   string
	domain string // of From, for Message-IDs
	public string // PublicURL without a trailing slash
	idSalt string // tells this install's Message-IDs apart from another's
}

var _ channels.Provider = (*Sender)(nil)

// ParseSMTPURL checks an SMTP URL and returns its host and port (the
// scheme's default when it names none) and whether it is implicit TLS
// (smtps). Its errors never repeat the URL, which holds a password.
func ParseSMTPURL(raw string) (host string, port int, implicitTLS bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, false, errors.New("not a URL: want smtp://user:pass@host:587 or smtps://user:pass@host:465")
	}
	switch u.Scheme {
	case "smtp":
		port = gomail.DefaultPortTLS
	case "smtps":
		port, implicitTLS = gomail.DefaultPortSSL, true
	default:
		return "", 0, false, fmt.Errorf("scheme %q: want smtp:// (STARTTLS when offered) or smtps:// (implicit TLS)", u.Scheme)
	}
	if host = u.Hostname(); host == "" {
		return "", 0, false, errors.New("no host: want smtp://user:pass@host:587")
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return "", 0, false, errors.New("the port is not a number from 1 to 65535")
		}
	}
	return host, port, implicitTLS, nil
}

// New returns the sender of cfg; it connects to nothing until a Send.
func New(cfg Config) (*Sender, error) {
	host, port, implicitTLS, err := ParseSMTPURL(cfg.SMTPURL)
	if err != nil {
		return nil, fmt.Errorf("email: SMTP URL: %w", err)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("email: from address %q: %w", cfg.From, err)
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
		return nil, fmt.Errorf("email: public URL %q is not an http(s) URL", cfg.PublicURL)
	}
	if cfg.Tokens == nil {
		return nil, errors.New("email: no token signer")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	opts := []gomail.Option{gomail.WithPort(port), gomail.WithTimeout(cfg.Timeout)}
	if implicitTLS {
		opts = append(opts, gomail.WithSSL())
	} else {
		// STARTTLS when the server offers it: a local relay (or a test
		// server) may offer none.
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	u, _ := url.Parse(cfg.SMTPURL) // parsed above
	if user := u.User.Username(); user != "" {
		pass, _ := u.User.Password()
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(user), gomail.WithPassword(pass))
	}
	public := strings.TrimRight(cfg.PublicURL, "/")
	salt := sha256.Sum256([]byte(public))
	_, domain, _ := strings.Cut(from.Address, "@")
	return &Sender{cfg: cfg, host: host, opts: opts, from: from.String(), domain: domain, public: public,
		idSalt: hex.EncodeToString(salt[:4])}, nil
}

// Channels implements channels.Provider: the email channel, addressed by
// the member's email, honouring the "email" opt-out list.
func (s *Sender) Channels() map[string]channels.Capabilities {
	return map[string]channels.Capabilities{channels.Email: Capabilities()}
}

// Capabilities are the email channel's capabilities.
func Capabilities() channels.Capabilities {
	return channels.Capabilities{Address: channels.ByEmail, OptOut: "email", Requires: []string{"subject"}}
}

// Send implements channels.Sender: one message to msg.To.Email.
func (s *Sender) Send(ctx context.Context, msg channels.Message) (channels.Result, error) {
	m, err := s.Build(msg)
	if err != nil {
		return channels.Result{}, err
	}
	c, err := gomail.NewClient(s.host, s.opts...)
	if err != nil {
		return channels.Result{}, fmt.Errorf("email: SMTP client: %w: %w", err, channels.ErrPermanent)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return channels.Result{}, classifyDial(err)
	}
	// The message's fate is settled before QUIT: a failing close changes
	// nothing about it.
	defer c.CloseWithSMTPClient(sc)
	if err := c.SendWithSMTPClient(sc, m); err != nil {
		return channels.Result{}, classify(err)
	}
	return channels.Result{ProviderID: strings.Trim(m.GetMessageID(), "<>")}, nil
}

// Build returns the message Send would send: headers, the text part, the
// HTML part (Extra["html"]) with its links tracked and the open pixel.
// An address that is missing or not an address is ErrUnreachable.
func (s *Sender) Build(msg channels.Message) (*gomail.Msg, error) {
	to := strings.TrimSpace(msg.To.Email)
	if to == "" {
		return nil, &channels.Error{Class: channels.ErrUnreachable, Msg: "member has no email address"}
	}
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := m.From(s.from); err != nil {
		return nil, fmt.Errorf("email: from: %w: %w", err, channels.ErrPermanent)
	}
	if err := m.To(to); err != nil {
		return nil, &channels.Error{Class: channels.ErrUnreachable, Msg: "member's email is not an address: " + err.Error()}
	}
	m.Subject(msg.Subject)
	m.SetDateWithValue(s.cfg.Clock.Now())
	m.SetMessageIDWithValue(s.messageID(msg))
	claims := Claims{DeliveryID: msg.DeliveryID, MemberID: msg.To.MemberID}
	if claims.DeliveryID == 0 {
		// A test send has no delivery row: its links carry an id of their
		// own, negative so that it names no delivery. Under a shared 0 the
		// open, clicks and unsubscribe of only the first test email would
		// be recorded (one event per delivery).
		claims.DeliveryID = -1 - rand.Int64N(math.MaxInt64)
	}
	unsub := s.url(UnsubscribePath, claims, Unsubscribe, "")
	m.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribe, "<"+unsub+">")
	m.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribePost, "List-Unsubscribe=One-Click")
	html := msg.Extra["html"]
	if html != "" {
		html = rewriteHTML(html, func(link string) string { return s.url(ClickPath, claims, Click, link) },
			s.url(OpenPath, claims, Open, ""))
	}
	switch {
	case html == "":
		m.SetBodyString(gomail.TypeTextPlain, msg.Text)
	case msg.Text == "":
		m.SetBodyString(gomail.TypeTextHTML, html)
	default:
		m.SetBodyString(gomail.TypeTextPlain, msg.Text)
		m.AddAlternativeString(gomail.TypeTextHTML, html)
	}
	return m, nil
}

// url is the public URL of a token of kind.
func (s *Sender) url(path string, c Claims, kind Kind, link string) string {
	c.Kind, c.URL = kind, link
	return s.public + path + s.cfg.Tokens.Sign(c)
}

// messageID is the Message-ID of msg, the same on every retry of its
// delivery: "wj-42.1a2b3c4d@brand.example" (without the angle brackets).
func (s *Sender) messageID(msg channels.Message) string {
	key := msg.IdempotencyKey
	if key == "" {
		key = fmt.Sprintf("wj-%d", msg.DeliveryID)
	}
	return key + "." + s.idSalt + "@" + s.domain
}

// classify turns go-mail's error into the channels error classes:
//
//   - a 550, 551 or 553 answer to RCPT TO (no such mailbox, not local,
//     mailbox name not allowed): ErrUnreachable, the step's fallback;
//   - any other 5xx: ErrPermanent (a refused sender, content refused as
//     spam, bad credentials);
//   - a 4xx: temporary, retried by the engine;
//   - no answer at all after the message's data was written: the message's
//     fate is unknown, so the error wraps context.DeadlineExceeded and the
//     engine records the delivery as unknown rather than send it twice;
//   - anything else (connecting, TLS, a dropped connection before the
//     data): temporary.
func classify(err error) error {
	var se *gomail.SendError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		switch {
		case code >= 500 && se.Reason == gomail.ErrSMTPRcptTo && (code == 550 || code == 551 || code == 553):
			return &channels.Error{Class: channels.ErrUnreachable, Code: code, Msg: "recipient refused: " + se.Error()}
		case code >= 500:
			return &channels.Error{Class: channels.ErrPermanent, Code: code, Msg: se.Error()}
		case code >= 400:
			return &channels.Error{Code: code, Msg: se.Error()}
		case se.Reason == gomail.ErrSMTPDataClose:
			return fmt.Errorf("email: the message was written but the server's answer was lost (%v): %w", se, context.DeadlineExceeded)
		}
	}
	return fmt.Errorf("email: %w", err)
}

// classifyDial classifies an error of connecting: the greeting, EHLO,
// STARTTLS, AUTH. Nothing was handed over, so a timeout here is a plain
// temporary error: its text is kept but not wrapped, or the engine would
// take it for a message whose fate is unknown.
func classifyDial(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		if te.Code >= 500 {
			return &channels.Error{Class: channels.ErrPermanent, Code: te.Code, Msg: "SMTP server refused the connection: " + te.Error()}
		}
		return &channels.Error{Code: te.Code, Msg: "SMTP server refused the connection for now: " + te.Error()}
	}
	return fmt.Errorf("email: connecting to the SMTP server: %v", err)
}
