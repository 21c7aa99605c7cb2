package wxsim_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/internal/wxsim"
)

// scripted answers the n-th request with answers[n] (the last one repeats)
// and records every request's URL and body.
type scripted struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	url, body string
}

// answer is one scripted answer: a status and body, or hang until the client
// gives up.
type answer struct {
	status int
	body   string
	hang   bool
}

func newScripted(t *testing.T, answers ...answer) *scripted {
	t.Helper()
	s := &scripted{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.seen)
		s.seen = append(s.seen, seenRequest{r.URL.String(), string(b)})
		s.mu.Unlock()
		a := answers[min(n, len(answers)-1)]
		if a.hang {
			<-r.Context().Done() // the client's timeout ends it
			return
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.seen...)
}

// fast is a retry configuration short enough for unit tests; the fault suite
// keeps WeChat's real timings.
var fast = wxsim.RetryConfig{Timeout: 300 * time.Millisecond, Delay: 100 * time.Millisecond}

func TestRetryDefaultsAreWeChats(t *testing.T) {
	t.Parallel()
	c := newClient(t, "http://127.0.0.1:1", "")
	got := c.Retrier(wxsim.RetryConfig{}).Config()
	if got.Timeout != 5*time.Second || got.Delay != 5*time.Second || got.Retries != 3 {
		t.Fatalf("defaults = timeout %v, delay %v, retries %d; want 5s, 5s, 3", got.Timeout, got.Delay, got.Retries)
	}
	if got := c.Retrier(wxsim.RetryConfig{Retries: -1}).Config().Retries; got != 0 {
		t.Fatalf("Retries -1 = %d retries, want 0", got)
	}
}

func TestRetryUntil200SameRequest(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv := newScripted(t, answer{status: 503, body: "try again"}, answer{status: 500}, answer{status: 200, body: "success"})
			r := newClient(t, srv.URL, m.aesKey).Retrier(fast)
			d, err := r.Deliver(context.Background(), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: testOpenID})
			if err != nil {
				t.Fatal(err)
			}
			if !d.Acknowledged() || len(d.Attempts) != 3 {
				t.Fatalf("outcome %s after %d attempts %v, want acknowledged at the 3rd", d.Outcome, len(d.Attempts), d.Attempts)
			}
			if d.AckedAt() != d.Attempts[2].End {
				t.Errorf("AckedAt = %v, want the 3rd attempt's end", d.AckedAt())
			}
			reqs := srv.requests()
			if len(reqs) != 3 {
				t.Fatalf("server saw %d requests, want 3", len(reqs))
			}
			for i, rq := range reqs {
				if rq.url != reqs[0].url || rq.body != reqs[0].body {
					t.Errorf("attempt %d differs from the first: a retry must resend the same timestamp, nonce and body", i+1)
				}
			}
			for i := 1; i < len(d.Attempts); i++ {
				if gap := d.Attempts[i].Start.Sub(d.Attempts[i-1].End); gap < fast.Delay {
					t.Errorf("attempt %d came %v after the failure, want at least %v", i+1, gap, fast.Delay)
				}
			}
		})
	}
}

func TestRetryAny200EndsIt(t *testing.T) {
	t.Parallel()
	// silenceper's plaintext Serve writes "success" before the handler's
	// error answer: WeChat sees 200 and never retries.
	srv := newScripted(t, answer{status: 200, body: "successtry again"})
	d, err := newClient(t, srv.URL, "").Retrier(fast).Deliver(context.Background(), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: testOpenID})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Acknowledged() || len(d.Attempts) != 1 || d.Attempts[0].Body != "successtry again" {
		t.Fatalf("got %s after %v, want acknowledged at once", d.Outcome, d.Attempts)
	}
}

func TestRetryGivesUpAfterFourAttempts(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, answer{status: 503})
	d, err := newClient(t, srv.URL, testAESKey).Retrier(fast).Deliver(context.Background(), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: testOpenID})
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != wxsim.GaveUp || len(d.Attempts) != 4 || len(srv.requests()) != 4 {
		t.Fatalf("outcome %s after %d attempts (server saw %d), want gave up after 4", d.Outcome, len(d.Attempts), len(srv.requests()))
	}
}

func TestRetryNoAnswerInTimeIsAFailure(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, answer{hang: true}, answer{status: 200, body: "success"})
	d, err := newClient(t, srv.URL, "").Retrier(fast).Deliver(context.Background(), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: testOpenID})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Acknowledged() || len(d.Attempts) != 2 {
		t.Fatalf("outcome %s after %v, want acknowledged at the 2nd attempt", d.Outcome, d.Attempts)
	}
	first := d.Attempts[0]
	if first.Err == nil || first.Status != 0 {
		t.Errorf("the hanging attempt = %v, want a timeout error", first)
	}
	if took := first.End.Sub(first.Start); took < fast.Timeout || took > fast.Timeout+2*time.Second {
		t.Errorf("the hanging attempt took %v, want about %v", took, fast.Timeout)
	}
}

func TestRetryRefusedConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d, err := newClient(t, "http://"+addr, "").Retrier(fast).Deliver(context.Background(), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: testOpenID})
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != wxsim.GaveUp || len(d.Attempts) != 4 {
		t.Fatalf("outcome %s after %d attempts, want gave up after 4", d.Outcome, len(d.Attempts))
	}
	for i, a := range d.Attempts {
		if a.Err == nil {
			t.Errorf("attempt %d to a closed port has no error: %v", i+1, a)
		}
	}
}

func TestRetryCanceled(t *testing.T) {
	t.Parallel()
	srv := newScripted(t, answer{status: 503})
	ctx, cancel := context.WithCancel(context.Background())
	r := newClient(t, srv.URL, "").Retrier(wxsim.RetryConfig{}) // 5 s delay: cancel ends the wait
	done := make(chan wxsim.Delivery)
	go func() {
		d, _ := r.Deliver(ctx, wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: testOpenID})
		done <- d
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case d := <-done:
		if d.Outcome != wxsim.Canceled || len(d.Attempts) != 1 {
			t.Fatalf("outcome %s after %d attempts, want canceled after 1", d.Outcome, len(d.Attempts))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Deliver did not return when its context ended")
	}
}

func TestRetryInvalidEvent(t *testing.T) {
	t.Parallel()
	c := newClient(t, "http://127.0.0.1:1", "")
	if _, err := c.Retrier(fast).Deliver(context.Background(), wxsim.Event{Kind: "nope", OpenID: "o"}); err == nil {
		t.Fatal("Deliver built an invalid event")
	}
}
