package faultproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/internal/faultproxy"
)

// echoServer answers every line with the same line, until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// roundTrip writes a line and reads the answer.
func roundTrip(c net.Conn, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

// closedByPeer asserts that c is closed by the proxy: a read ends with EOF
// or a reset, never a timeout.
func closedByPeer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 16))
	if err == nil {
		t.Fatalf("%s: read %d bytes, want the connection closed", what, n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection stayed open (read timed out)", what)
	}
}

func TestForwardCutRestore(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr = %q, want loopback", p.Addr())
	}

	before := dial(t, p.Addr())
	if got, err := roundTrip(before, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}

	p.Cut()
	if !p.IsCut() {
		t.Fatal("IsCut after Cut = false")
	}
	closedByPeer(t, before, "open connection after Cut")
	during := dial(t, p.Addr()) // the listener still accepts...
	closedByPeer(t, during, "new connection while cut")
	if _, err := roundTrip(during, "lost"); err == nil {
		t.Fatal("a connection made while cut carried data")
	}

	p.Restore()
	after := dial(t, p.Addr())
	if got, err := roundTrip(after, "again"); err != nil || got != "again" {
		t.Fatalf("after Restore: %q, %v", got, err)
	}
	fwd, refused := p.Stats()
	if fwd != 2 || refused != 1 {
		t.Errorf("Stats = %d forwarded, %d refused; want 2, 1", fwd, refused)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	closedByPeer(t, after, "open connection after Close")
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Fatal("the proxy still listens after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestManyConnectionsAllCut(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var conns []net.Conn
	for i := range 20 {
		c := dial(t, p.Addr())
		if got, err := roundTrip(c, "x"); err != nil || got != "x" {
			t.Fatalf("conn %d: %q, %v", i, got, err)
		}
		conns = append(conns, c)
	}
	p.Cut()
	for i, c := range conns {
		closedByPeer(t, c, "connection "+string(rune('a'+i)))
	}
}

func TestTargetDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p, err := faultproxy.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	closedByPeer(t, c, "connection to a target that is down")
	if _, refused := p.Stats(); refused != 1 {
		t.Errorf("refused = %d, want 1", refused)
	}
}

func TestNewRejectsBadTarget(t *testing.T) {
	t.Parallel()
	if _, err := faultproxy.New("no-port"); err == nil {
		t.Fatal("New accepted a target without a port")
	}
}
