package journey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

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
}

// Ingestor durably stores events with group commit: concurrent callers'
// events share one transaction, so a callback is acknowledged after one
// commit however many arrive at once.
type Ingestor struct {
	cfg  IngestorConfig
	in   chan *ingestReq
	done chan struct{}
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
	ing := &Ingestor{cfg: cfg, in: make(chan *ingestReq, 4096), done: make(chan struct{})}
	go ing.loop()
	return ing
}

// Ingest stores events (their ReceivedAt is set now) and reports how many
// were new and how many repeated an already stored DedupeKey. It returns after
// the commit. On error nothing of this call is stored.
func (ing *Ingestor) Ingest(ctx context.Context, events ...*model.Event) (accepted, duplicates int, err error) {
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
		for i, r := range batch {
			results[i] = ingestResult{}
			for _, ev := range r.events {
				ev.ReceivedAt = now
				if ev.At.IsZero() {
					ev.At = now
				}
				res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "dedupe_key"}}, DoNothing: true}).Create(ev)
				if res.Error != nil {
					return fmt.Errorf("journey: store event: %w", res.Error)
				}
				if res.RowsAffected == 0 {
					results[i].duplicates++
					continue
				}
				results[i].accepted++
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
