package wxsim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// WeChat's callback retry rules: a callback that is not answered 200 within
// RetryTimeout, or whose connection fails, is sent again RetryDelay later,
// at most RetryCount times; any 200 ends it, whatever the body.
const (
	RetryTimeout = 5 * time.Second
	RetryDelay   = 5 * time.Second
	RetryCount   = 3
)

// RetryConfig configures a [Retrier]. The zero value is WeChat's behaviour.
type RetryConfig struct {
	// Timeout is how long an attempt may take, from dialing to the last byte
	// of the answer, before it counts as failed. Default RetryTimeout (5 s).
	Timeout time.Duration
	// Delay is the pause between a failed attempt and the next. Default
	// RetryDelay (5 s).
	Delay time.Duration
	// Retries is how many times a failed callback is sent again. 0: RetryCount
	// (3, so 4 attempts in all); negative: never.
	Retries int
	// HTTPClient sends the attempts; its own Timeout, if any, should not be
	// shorter than Timeout. Nil: the Client's.
	HTTPClient *http.Client
}

// Retrier sends callbacks the way WeChat's servers do, retrying the same
// request until it is answered 200 or the retries are spent. Create it with
// [Client.Retrier]; it is safe for concurrent use.
type Retrier struct {
	c   *Client
	cfg RetryConfig
}

// Retrier returns a retrying sender for c's account. Zero fields of cfg take
// WeChat's values.
func (c *Client) Retrier(cfg RetryConfig) *Retrier {
	if cfg.Timeout <= 0 {
		cfg.Timeout = RetryTimeout
	}
	if cfg.Delay <= 0 {
		cfg.Delay = RetryDelay
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = RetryCount
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = c.http
	}
	return &Retrier{c: c, cfg: cfg}
}

// Config returns the retrier's configuration with the defaults filled in.
func (r *Retrier) Config() RetryConfig { return r.cfg }

// Outcome is how a retried callback ended.
type Outcome string

// The outcomes of [Retrier.Deliver].
const (
	// Acknowledged: an attempt was answered 200.
	Acknowledged Outcome = "acknowledged"
	// GaveUp: every attempt failed; WeChat drops the callback.
	GaveUp Outcome = "gave up"
	// Canceled: the context ended before an attempt was answered 200.
	Canceled Outcome = "canceled"
)

// Attempt is one send of a callback.
type Attempt struct {
	Start, End time.Time
	// Status is the HTTP status, 0 when no answer came (Err says why).
	Status int
	// Body is (at most 1 MiB of) the answer's body.
	Body string
	// Err is why no complete answer came: a refused or broken connection, or
	// the timeout.
	Err error
}

// OK reports whether the attempt was answered 200, which ends the retries.
func (a Attempt) OK() bool { return a.Err == nil && a.Status == http.StatusOK }

// String describes the attempt, e.g. "200 success" or "refused: …".
func (a Attempt) String() string {
	if a.Err != nil {
		return a.Err.Error()
	}
	return fmt.Sprintf("%d %q", a.Status, a.Body)
}

// Delivery is the record of one callback sent with retries.
type Delivery struct {
	// Event is the callback, pinned: every attempt carried its XML.
	Event Event
	// Request is the signed request every attempt sent, byte for byte.
	Request Prepared
	// Attempts are in order; the last one decided the Outcome.
	Attempts []Attempt
	Outcome  Outcome
}

// Acknowledged reports whether an attempt was answered 200.
func (d Delivery) Acknowledged() bool { return d.Outcome == Acknowledged }

// AckedAt returns when the 200 answer arrived, or the zero time.
func (d Delivery) AckedAt() time.Time {
	if d.Outcome != Acknowledged {
		return time.Time{}
	}
	return d.Attempts[len(d.Attempts)-1].End
}

// Deliver builds the callback for ev once (its timestamp, nonce and body
// fixed, ev pinned) and sends it as WeChat would: an attempt answered 200
// ends it; an attempt with another status, a failed connection or no full
// answer within Timeout is followed, Delay later, by the same request again,
// up to Retries times. It returns when the callback was acknowledged, the
// retries are spent, or ctx ends; an error only when ev cannot be built.
func (r *Retrier) Deliver(ctx context.Context, ev Event) (Delivery, error) {
	ev = ev.Pinned()
	p, err := r.c.Prepared(ev)
	if err != nil {
		return Delivery{}, err
	}
	d := Delivery{Event: ev, Request: p}
	for i := 0; ; i++ {
		a := r.attempt(ctx, p)
		d.Attempts = append(d.Attempts, a)
		if a.OK() {
			d.Outcome = Acknowledged
			return d, nil
		}
		if ctx.Err() != nil {
			d.Outcome = Canceled
			return d, nil
		}
		if i == r.cfg.Retries {
			d.Outcome = GaveUp
			return d, nil
		}
		t := time.NewTimer(r.cfg.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			d.Outcome = Canceled
			return d, nil
		}
	}
}

// attempt sends p once within the timeout.
func (r *Retrier) attempt(ctx context.Context, p Prepared) Attempt {
	a := Attempt{Start: time.Now()}
	actx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := p.NewRequest(actx)
	if err != nil {
		a.Err = err
		a.End = time.Now()
		return a
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		a.Err = fmt.Errorf("wxsim: attempt: %w", err)
		a.End = time.Now()
		return a
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	a.End = time.Now()
	a.Status, a.Body = resp.StatusCode, string(b)
	if err != nil {
		// The answer was cut short or came too late: WeChat counts it as
		// no answer.
		a.Err = fmt.Errorf("wxsim: attempt: reading the answer: %w", err)
	}
	return a
}
