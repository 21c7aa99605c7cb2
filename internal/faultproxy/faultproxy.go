// Package faultproxy is a TCP proxy on loopback that a test can cut, to play
// a database or Redis outage without touching the real server.
//
// A Proxy listens on 127.0.0.1 (a free port) and forwards every connection it
// accepts to one target address, byte for byte in both directions. [Proxy.Cut]
// closes every forwarded connection (both sides) and, until [Proxy.Restore],
// closes every newly accepted connection at once, before anything is read or
// written: to the client it looks like a server that went away and a port that
// hangs up on connect. Nothing is delayed or reordered, and Cut, Restore and
// Close take effect before they return, so a test that cuts, waits and
// restores knows exactly when the outage began and ended.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds how long a new connection waits for the target.
const dialTimeout = 5 * time.Second

// Proxy forwards TCP connections from its loopback address to a target. Create
// it with [New]; it is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu       sync.Mutex
	cut      bool
	closed   bool
	conns    map[*link]struct{}
	accepted int
	refused  int

	wg sync.WaitGroup
}

// link is one forwarded connection: the client's side and the target's.
type link struct {
	client, upstream net.Conn
	once             sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.client.Close()
		l.upstream.Close()
	})
}

// New starts a proxy on 127.0.0.1 (a free port) that forwards to target
// ("host:port"). The target need not be up yet: a connection that cannot
// reach it is closed.
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's "127.0.0.1:port", to put in place of the target's
// address in a client's configuration.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Cut closes every open connection, both the client's and the target's side,
// and makes the proxy close new connections as soon as it accepts them, until
// Restore. It returns once every open connection is closed.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for l := range p.conns {
		l.close()
		delete(p.conns, l)
	}
}

// Restore ends a Cut: connections accepted from now on are forwarded again.
// Connections closed by the Cut stay closed; clients reconnect.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// IsCut reports whether the proxy is cut.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// Stats returns how many connections the proxy has forwarded and how many it
// closed at once because it was cut or the target could not be reached.
func (p *Proxy) Stats() (forwarded, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines to end. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for l := range p.conns {
		l.close()
		delete(p.conns, l)
	}
	p.mu.Unlock()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy: close: %w", err)
	}
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Other accept errors are transient (e.g. too many open
			// files); keep serving.
			continue
		}
		if !p.admit() {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// admit reports whether a new connection may be forwarded now, counting a
// refusal when not.
func (p *Proxy) admit() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		p.refused++
		return false
	}
	return true
}

// forward dials the target for client and copies both ways until either
// side ends or the proxy cuts the link.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	upstream, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		client.Close()
		return
	}
	l := &link{client: client, upstream: upstream}
	p.mu.Lock()
	if p.cut || p.closed {
		// Cut while dialing: the connection never carries a byte.
		p.refused++
		p.mu.Unlock()
		l.close()
		return
	}
	p.accepted++
	p.conns[l] = struct{}{}
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
	<-done // either side ended: end both
	l.close()
	<-done
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}
