package journey

import (
	"context"
	"sync"
	"time"
)

// gatherer runs requests in batches: the requests that arrive while earlier
// batches run wait and then run together, as the ingest's group commit does
// for callbacks. At a steady trickle each request runs at once, alone; under
// load the batches grow until they keep up.
type gatherer struct {
	// run runs one batch and returns each request's error.
	run func(ctx context.Context, reqs [][]int64) []error
	// max caps the ids of one batch (a request is never split); flushers
	// caps the batches running at once.
	max, flushers int
	// base and timeout make the context of a batch: requests of many
	// tasks share it, so none of theirs.
	base    context.Context
	timeout time.Duration

	mu      sync.Mutex
	queue   []*gatherReq
	running int
}

type gatherReq struct {
	ids  []int64
	done chan error
}

// do runs ids in a batch and returns their error, or ctx's when it ends
// first (the batch goes on: the task's retry finds its work done).
func (g *gatherer) do(ctx context.Context, ids []int64) error {
	req := &gatherReq{ids: ids, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, req)
	start := g.running < g.flushers
	if start {
		g.running++
	}
	g.mu.Unlock()
	if start {
		go g.flush()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush runs queued requests batch after batch until none is left.
func (g *gatherer) flush() {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		n, ids := 0, 0
		for n < len(g.queue) && (n == 0 || ids+len(g.queue[n].ids) <= g.max) {
			ids += len(g.queue[n].ids)
			n++
		}
		batch := g.queue[:n:n]
		g.queue = append([]*gatherReq(nil), g.queue[n:]...)
		g.mu.Unlock()
		reqs := make([][]int64, len(batch))
		for i, r := range batch {
			reqs[i] = r.ids
		}
		ctx, cancel := context.WithTimeout(g.base, g.timeout)
		errs := g.run(ctx, reqs)
		cancel()
		for i, r := range batch {
			r.done <- errs[i]
		}
	}
}
