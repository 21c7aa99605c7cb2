// Package fakesmtp is an SMTP server on loopback for tests
// (github.com/emersion/go-smtp): it keeps the messages it accepts, and can
// answer a recipient with an SMTP error a given number of times.
package fakesmtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"
)

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Server is a running fake SMTP server.
type Server struct {
	// Addr is host:port of the server.
	Addr string

	srv     *smtp.Server
	ln      net.Listener
	mu      sync.Mutex
	msgs    []Message
	changed chan struct{} // closed and replaced at every change
	errs    map[string]*rcptErr
	rcpts   int // RCPT TO commands seen
}

type rcptErr struct {
	code  int
	times int // < 0: always
}

// New starts a server on 127.0.0.1 (no TLS, no authentication); Close stops it.
func New() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakesmtp: listen: %w", err)
	}
	s := &Server{Addr: ln.Addr().String(), ln: ln, changed: make(chan struct{}), errs: map[string]*rcptErr{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ErrorLog = nopLogger{}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.srv.Close()
	s.ln.Close() // Serve may not have taken it yet
}

// URL is the smtp:// URL of the server.
func (s *Server) URL() string { return "smtp://" + s.Addr }

// FailRcpt makes the server answer RCPT TO addr with code (550, 451, ...)
// the next times times (< 0: always).
func (s *Server) FailRcpt(addr string, code, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[strings.ToLower(addr)] = &rcptErr{code: code, times: times}
}

// Messages returns the accepted messages, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// MessagesTo returns the accepted messages to addr.
func (s *Server) MessagesTo(addr string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to, addr) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Rcpts counts the RCPT TO commands the server answered (accepted or not).
func (s *Server) Rcpts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcpts
}

// Wait returns once cond holds for the accepted messages, or ctx's error.
// cond is called without the server's lock: it may call the server.
func (s *Server) Wait(ctx context.Context, cond func([]Message) bool) error {
	for {
		s.mu.Lock()
		msgs, ch := append([]Message(nil), s.msgs...), s.changed
		s.mu.Unlock()
		if cond(msgs) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpts++
	s.notify()
	if e := s.errs[strings.ToLower(to)]; e != nil && e.times != 0 {
		if e.times > 0 {
			e.times--
		}
		return &smtp.SMTPError{Code: e.code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "fakesmtp: refused " + to}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(x.to) == 0 {
		return errors.New("fakesmtp: no recipients")
	}
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, Message{From: x.from, To: append([]string(nil), x.to...), Data: bytes.Clone(b)})
	s.notify()
	return nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}
