package journey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
)

// IngestorConfig configures an Ingestor. Zero values have the documented defaults.
type IngestorConfig struct {
	// DB is required.
	DB *gorm.DB
	// Queue receives one route task per committed batch. Nil: routing is left
	// to the sweeper (tests).
	Queue *asynq.Client
	// MaxBatch caps how many waiting events one transaction commits. Default 512.
	MaxBatch int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// PressureAt is how many callers waiting for a commit count as pressure
	// (see WaitCalm). Default 8.
	PressureAt int
}

// Ingestor durably stores events with group commit: concurrent callers'
// events share one transaction, so a callback is acknowledged after one
// commit however many arrive at once.
type Ingestor struct {
	cfg  IngestorConfig
	in   chan *ingestReq
	done chan struct{}

	mu          sync.Mutex
	pending     int           // callers inside Ingest
	calm        chan struct{} // closed once pending stayed below PressureAt for calmAfter
	calmClosed  bool
	pressureGen int // counts rises to PressureAt
}

type ingestReq struct {
	events []*model.Event
	result chan ingestResult
}

type ingestResult struct {
	accepted, duplicates int
	err                  error
}

// ErrClosed is returned by Ingest after Close.
var ErrClosed = errors.New("journey: ingestor closed")

// NewIngestor starts the ingestor's commit loop; Close stops it.
func NewIngestor(cfg IngestorConfig) *Ingestor {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PressureAt <= 0 {
		cfg.PressureAt = 8
	}
	ing := &Ingestor{cfg: cfg, in: make(chan *ingestReq, 4096), done: make(chan struct{}), calm: make(chan struct{}), calmClosed: true}
	close(ing.calm)
	go ing.loop()
	return ing
}

// Ingest stores events (their ReceivedAt is set now) and reports how many
// were new and how many repeated an already stored DedupeKey. It returns after
// the commit. On error nothing of this call is stored.
func (ing *Ingestor) Ingest(ctx context.Context, events ...*model.Event) (accepted, duplicates int, err error) {
	ing.track(+1)
	defer ing.track(-1)
	req := &ingestReq{events: events, result: make(chan ingestResult, 1)}
	select {
	case ing.in <- req:
	case <-ing.done:
		return 0, 0, ErrClosed
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	select {
	case r := <-req.result:
		return r.accepted, r.duplicates, r.err
	case <-ctx.Done():
		// The commit may still happen; the caller answers an error and the
		// sender retries, which the dedupe key makes harmless.
		return 0, 0, ctx.Err()
	}
}

// calmAfter is how long the queue of callers must stay short before
// background work resumes: a burst's waiters come and go with every commit,
// and resuming between two commits would let the worker take the CPU back.
const calmAfter = 50 * time.Millisecond

func (ing *Ingestor) track(delta int) {
	ing.mu.Lock()
	defer ing.mu.Unlock()
	before := ing.pending
	ing.pending += delta
	switch {
	case before < ing.cfg.PressureAt && ing.pending >= ing.cfg.PressureAt:
		ing.pressureGen++
		if ing.calmClosed {
			ing.calm, ing.calmClosed = make(chan struct{}), false
		}
	case before >= ing.cfg.PressureAt && ing.pending < ing.cfg.PressureAt:
		gen := ing.pressureGen
		time.AfterFunc(calmAfter, func() {
			ing.mu.Lock()
			defer ing.mu.Unlock()
			if ing.pressureGen == gen && !ing.calmClosed {
				close(ing.calm)
				ing.calmClosed = true
			}
		})
	}
}

// WaitCalm blocks while at least PressureAt callers wait for their events to
// be committed, but no longer than max. Background work in the same process
// calls it first, so that during a burst callbacks are acknowledged before
// journeys run: WeChat retries any callback not answered within 5 seconds,
// while a welcome a few seconds late is still a welcome.
func (ing *Ingestor) WaitCalm(ctx context.Context, max time.Duration) {
	ing.mu.Lock()
	calm := ing.calm
	ing.mu.Unlock()
	select {
	case <-calm:
		return
	default:
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-calm:
	case <-t.C:
	case <-ctx.Done():
	}
}

// Close stops accepting events after the ones already queued are committed.
func (ing *Ingestor) Close() {
	close(ing.done)
}

func (ing *Ingestor) loop() {
	for {
		var batch []*ingestReq
		select {
		case r := <-ing.in:
			batch = append(batch, r)
		case <-ing.done:
			for {
				select {
				case r := <-ing.in:
					r.result <- ingestResult{err: ErrClosed}
				default:
					return
				}
			}
		}
		n := len(batch[0].events)
	drain:
		for n < ing.cfg.MaxBatch {
			select {
			case r := <-ing.in:
				batch = append(batch, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		ing.commit(batch)
	}
}

func (ing *Ingestor) commit(batch []*ingestReq) {
	now := time.Now().UTC()
	results := make([]ingestResult, len(batch))
	var ids []int64
	err := ing.cfg.DB.Transaction(func(tx *gorm.DB) error {
		ids = ids[:0]
		var keys []string
		for _, r := range batch {
			for _, ev := range r.events {
				keys = append(keys, ev.DedupeKey)
			}
		}
		seen := make(map[string]bool, len(keys))
		for start := 0; start < len(keys); start += 500 {
			var existing []string
			if err := tx.Model(&model.Event{}).Where("dedupe_key IN ?", keys[start:min(start+500, len(keys))]).
				Pluck("dedupe_key", &existing).Error; err != nil {
				return fmt.Errorf("journey: look up dedupe keys: %w", err)
			}
			for _, k := range existing {
				seen[k] = true
			}
		}
		var fresh []*model.Event
		for i, r := range batch {
			results[i] = ingestResult{}
			for _, ev := range r.events {
				if seen[ev.DedupeKey] {
					results[i].duplicates++
					continue
				}
				seen[ev.DedupeKey] = true // a repeat within this batch is a duplicate too
				ev.ReceivedAt = now
				ev.MemberKey = ev.Member.Key()
				if ev.At.IsZero() {
					ev.At = now
				}
				fresh = append(fresh, ev)
				results[i].accepted++
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		// Ignoring conflicts covers another process storing the same key meanwhile.
		if err := model.InsertIgnore(tx).CreateInBatches(fresh, 200).Error; err != nil {
			return fmt.Errorf("journey: store events: %w", err)
		}
		for _, ev := range fresh {
			if ev.ID != 0 {
				ids = append(ids, ev.ID)
			}
		}
		return nil
	})
	for i, r := range batch {
		if err != nil {
			r.result <- ingestResult{err: err}
			continue
		}
		r.result <- results[i]
	}
	if err == nil && len(ids) > 0 && ing.cfg.Queue != nil {
		if _, qerr := ing.cfg.Queue.Enqueue(NewRouteEventsTask(ids)); qerr != nil {
			// The rows are committed; the sweeper will route them.
			ing.cfg.Logger.Warn("enqueue route task failed; the sweeper will route", "events", len(ids), "err", qerr)
		}
	}
}
