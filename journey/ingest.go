package journey

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/clock"
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
	// (see WaitCalm). Default 32: a burst keeps every connection waiting,
	// while at a steady 500 callbacks/s on PostgreSQL a slow commit alone
	// put 8 callers in wait, and every event routed then paused for calm
	// (follow → message p50 2.5 s instead of 25 ms).
	PressureAt int
	// EnqueueTimeout bounds one route-task enqueue. Enqueues happen off the
	// commit loop, so a slow or unreachable Redis never delays an
	// acknowledgement; a task not enqueued is left to the sweeper.
	// Default 250 ms.
	EnqueueTimeout time.Duration
	// EnqueueBackoff is how long enqueueing is skipped after an enqueue
	// failed (the sweeper routes what was skipped). Default 2 seconds.
	EnqueueBackoff time.Duration
	// Clock stamps received_at. Default clock.Real().
	Clock clock.Clock
}

// Ingestor durably stores events with group commit: concurrent callers'
// events share one transaction, so a callback is acknowledged after one
// commit however many arrive at once. When a shared transaction fails, its
// callers are stored again one by one, each in its own transaction, so an
// event that cannot be stored fails only its own caller.
type Ingestor struct {
	cfg      IngestorConfig
	in       chan *ingestReq
	done     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the commit loop has returned
	enqDone  chan struct{} // closed when the enqueuer has returned
	routeQ   chan routeReq // committed event ids waiting for their route task
	close    sync.Once

	mu          sync.Mutex
	pending     int           // callers inside Ingest
	calm        chan struct{} // closed once pending stayed below PressureAt for calmAfter
	calmClosed  bool
	pressureGen int // counts rises to PressureAt
}

type ingestReq struct {
	ctx    context.Context
	events []*model.Event
	result chan ingestResult
}

type ingestResult struct {
	accepted, duplicates int
	err                  error
}

// ErrClosed is returned by Ingest after Close.
var ErrClosed = errors.New("journey: ingestor closed")

// ErrConflict means an event reused the dedupe key of an event already
// stored (or of an earlier event of the same call) with a different
// PayloadHash: the sender reused an id for another payload. Ingest returns
// it wrapped in a *ConflictError.
var ErrConflict = errors.New("journey: dedupe key reused with a different payload")

// ConflictError is Ingest's error when some of its events conflict (see
// ErrConflict). Nothing of that call is stored.
type ConflictError struct {
	// Indexes are the positions, among the events passed to Ingest, of the
	// events that conflict, in increasing order.
	Indexes []int
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: events %v of the call", ErrConflict, e.Indexes)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// errRaced makes a group commit retry its callers one by one: another
// process stored some of the batch's keys after they were looked up, and
// only single-row inserts tell which.
var errRaced = errors.New("journey: dedupe keys stored concurrently")

// routeQueueLen bounds the committed batches waiting for their route task;
// beyond it, batches are left to the sweeper.
const routeQueueLen = 1024

// NewIngestor starts the ingestor's commit loop; Close stops it.
func NewIngestor(cfg IngestorConfig) *Ingestor {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PressureAt <= 0 {
		cfg.PressureAt = 32
	}
	if cfg.EnqueueTimeout <= 0 {
		cfg.EnqueueTimeout = 250 * time.Millisecond
	}
	if cfg.EnqueueBackoff <= 0 {
		cfg.EnqueueBackoff = 2 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	ing := &Ingestor{
		cfg: cfg, in: make(chan *ingestReq, 4096),
		done: make(chan struct{}), loopDone: make(chan struct{}), enqDone: make(chan struct{}),
		calm: make(chan struct{}), calmClosed: true,
	}
	close(ing.calm)
	if cfg.Queue != nil {
		ing.routeQ = make(chan routeReq, routeQueueLen)
		go ing.enqueueLoop()
	} else {
		close(ing.enqDone)
	}
	go ing.loop()
	return ing
}

// Ingest stores events (their ReceivedAt is set now) and reports how many
// were new and how many repeated an already stored DedupeKey. It returns after
// the commit. On error nothing of this call is stored; a *ConflictError
// says which events reused a stored key with another PayloadHash.
//
// Ingest makes every event storable first: a DedupeKey, Type, Source or
// member identity longer than its column is replaced by model.FitKey's
// stable stand-in, and props too large for a text column are shortened.
func (ing *Ingestor) Ingest(ctx context.Context, events ...*model.Event) (accepted, duplicates int, err error) {
	ing.track(+1)
	defer ing.track(-1)
	for _, ev := range events {
		fitEvent(ev)
	}
	req := &ingestReq{ctx: ctx, events: events, result: make(chan ingestResult, 1)}
	select {
	case <-ing.done:
		return 0, 0, ErrClosed
	default:
	}
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
	case <-ing.loopDone:
		select { // the loop may have answered just before it returned
		case r := <-req.result:
			return r.accepted, r.duplicates, r.err
		default:
			return 0, 0, ErrClosed
		}
	case <-ctx.Done():
		// The commit may still happen; the caller answers an error and the
		// sender retries, which the dedupe key makes harmless.
		return 0, 0, ctx.Err()
	}
}

// maxRefField caps each identity of an event's member reference: no real
// identity is longer, and the reference is stored as JSON in a text column.
const maxRefField = 1024

// fitEvent makes an event storable whatever its sender put in it (see Ingest).
func fitEvent(ev *model.Event) {
	ev.DedupeKey = model.FitKey(ev.DedupeKey, model.MaxDedupeKey)
	ev.Type = model.FitKey(ev.Type, model.MaxEventType)
	ev.Source = model.FitKey(ev.Source, model.MaxEventSource)
	for _, f := range []*string{&ev.Member.AppID, &ev.Member.OpenID, &ev.Member.UnionID, &ev.Member.ExternalUserID,
		&ev.Member.Phone, &ev.Member.Email, &ev.Member.UserID, &ev.Member.MPAppID, &ev.Member.MPOpenID} {
		*f = model.FitKey(*f, maxRefField)
	}
	ev.MemberKey = model.FitKey(ev.Member.Key(), model.MaxMemberKey)
	if b, err := json.Marshal(ev.Props); err != nil || len(b) > model.MaxTextBytes {
		ev.Props = fitProps(ev.Props)
	}
}

// maxPropString is how long a string prop stays when an event's props are
// too large to store.
const maxPropString = 1024

// fitProps returns props that encode as JSON within model.MaxTextBytes:
// strings are cut to maxPropString characters and values JSON cannot
// encode (NaN, infinities) become null; if that is still too large, the
// props are replaced by {"props_truncated": true}.
func fitProps(props map[string]any) map[string]any {
	var fit func(v any) any
	fit = func(v any) any {
		switch v := v.(type) {
		case string:
			if utf8.RuneCountInString(v) > maxPropString {
				return string([]rune(v)[:maxPropString]) + "…"
			}
			return v
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil
			}
			return v
		case float32:
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil
			}
			return v
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, x := range v {
				out[k] = fit(x)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, x := range v {
				out[i] = fit(x)
			}
			return out
		}
		return v
	}
	out, _ := fit(props).(map[string]any)
	if b, err := json.Marshal(out); err != nil || len(b) > model.MaxTextBytes {
		return map[string]any{"props_truncated": true}
	}
	return out
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

// Waiting returns how many callers are inside Ingest, waiting for their
// events to be committed.
func (ing *Ingestor) Waiting() int {
	ing.mu.Lock()
	defer ing.mu.Unlock()
	return ing.pending
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

// Close stops accepting events and returns once the ones already queued are
// committed and their route tasks handed to the queue (or left to the
// sweeper).
func (ing *Ingestor) Close() {
	ing.close.Do(func() { close(ing.done) })
	<-ing.loopDone
	<-ing.enqDone
}

func (ing *Ingestor) loop() {
	defer func() {
		if ing.routeQ != nil {
			close(ing.routeQ)
		}
		close(ing.loopDone)
	}()
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

// commit stores a batch in one transaction. If that fails for any reason
// but an unreachable database, each caller is stored again in its own
// transaction, so only callers whose own events cannot be stored fail.
func (ing *Ingestor) commit(batch []*ingestReq) {
	results, _, err := ing.store(ing.cfg.DB, batch, false)
	if err == nil {
		for i, r := range batch {
			r.result <- results[i]
		}
		ing.route(batch)
		return
	}
	if unavailable(err) || (len(batch) == 1 && !errors.Is(err, errRaced)) {
		for _, r := range batch {
			r.result <- ingestResult{err: err}
		}
		return
	}
	if !errors.Is(err, errRaced) {
		ing.cfg.Logger.Warn("group commit failed; storing its callers one by one", "callers", len(batch), "err", err)
	}
	var stored []*ingestReq
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.result <- ingestResult{err: r.ctx.Err()} // the caller has given up
			continue
		}
		res, _, err := ing.store(ing.cfg.DB.WithContext(r.ctx), []*ingestReq{r}, true)
		if err != nil {
			ing.cfg.Logger.Warn("storing events failed", "events", len(r.events), "first_type", r.events[0].Type, "err", err)
			r.result <- ingestResult{err: err}
			continue
		}
		r.result <- res[0]
		stored = append(stored, r)
	}
	ing.route(stored)
}

// unavailable reports whether err says the database could not be reached,
// when retrying callers one by one would only repeat the failure.
func unavailable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn)
}

// storedKey is a stored event's dedupe key and payload fingerprint.
type storedKey struct {
	DedupeKey   string
	PayloadHash string
}

// lookupKeys returns the stored payload hash of each of keys that is stored.
func lookupKeys(tx *gorm.DB, keys []string) (map[string]string, error) {
	seen := make(map[string]string, len(keys))
	for start := 0; start < len(keys); start += 500 {
		var rows []storedKey
		if err := tx.Model(&model.Event{}).Select("dedupe_key", "COALESCE(payload_hash, '') AS payload_hash").
			Where("dedupe_key IN ?", keys[start:min(start+500, len(keys))]).Find(&rows).Error; err != nil {
			return nil, fmt.Errorf("journey: look up dedupe keys: %w", err)
		}
		for _, r := range rows {
			seen[r.DedupeKey] = r.PayloadHash
		}
	}
	return seen, nil
}

// conflicts reports whether an event with payload hash h repeats a key
// stored with payload hash stored: both are known and they differ.
func conflicts(stored, h string) bool {
	return stored != "" && h != "" && stored != h
}

// store commits reqs in one transaction and returns each caller's result
// and the ids of the events stored. A caller whose events conflict gets a
// *ConflictError and stores nothing; the others are unaffected. When
// perRow is false, rows are inserted in batches, and a row another process
// stored meanwhile fails the whole transaction with errRaced; when true
// (one caller at a time), rows are inserted one by one and such a row
// counts as a duplicate, or as a conflict if its payload differs.
func (ing *Ingestor) store(db *gorm.DB, reqs []*ingestReq, perRow bool) ([]ingestResult, []int64, error) {
	now := ing.cfg.Clock.Now().UTC()
	results := make([]ingestResult, len(reqs))
	var ids []int64
	err := db.Transaction(func(tx *gorm.DB) error {
		ids = ids[:0]
		var keys []string
		for _, r := range reqs {
			for _, ev := range r.events {
				keys = append(keys, ev.DedupeKey)
			}
		}
		seen, err := lookupKeys(tx, keys)
		if err != nil {
			return err
		}
		var fresh []*model.Event
		for i, r := range reqs {
			results[i] = ingestResult{}
			var (
				mine     []*model.Event
				own      = map[string]string{} // this caller's new keys
				conflict []int
			)
			for j, ev := range r.events {
				h, ok := seen[ev.DedupeKey]
				if !ok {
					h, ok = own[ev.DedupeKey] // a repeat within the call is a duplicate too
				}
				if ok {
					if conflicts(h, ev.PayloadHash) {
						conflict = append(conflict, j)
					}
					results[i].duplicates++
					continue
				}
				own[ev.DedupeKey] = ev.PayloadHash
				mine = append(mine, ev)
			}
			if conflict != nil {
				results[i] = ingestResult{err: &ConflictError{Indexes: conflict}}
				continue
			}
			for k, h := range own {
				seen[k] = h
			}
			for _, ev := range mine {
				ev.ID = 0 // set by an attempt that rolled back
				ev.ReceivedAt = now
				if ev.At.IsZero() {
					ev.At = now
				}
			}
			results[i].accepted = len(mine)
			fresh = append(fresh, mine...)
		}
		if len(fresh) == 0 {
			return nil
		}
		if !perRow {
			// Ignoring conflicts covers another process storing the same key meanwhile.
			res := model.InsertIgnore(tx).CreateInBatches(fresh, 200)
			if res.Error != nil {
				return fmt.Errorf("journey: store events: %w", res.Error)
			}
			if res.RowsAffected != int64(len(fresh)) {
				return errRaced
			}
			for _, ev := range fresh {
				ids = append(ids, ev.ID)
			}
			return nil
		}
		isFresh := make(map[*model.Event]bool, len(fresh))
		for _, ev := range fresh {
			isFresh[ev] = true
		}
		var conflict []int
		for j, ev := range reqs[0].events {
			if !isFresh[ev] {
				continue
			}
			res := model.InsertIgnore(tx).Create(ev)
			if res.Error != nil {
				return fmt.Errorf("journey: store event: %w", res.Error)
			}
			if res.RowsAffected == 1 {
				ids = append(ids, ev.ID)
				continue
			}
			ev.ID = 0
			results[0].accepted--
			results[0].duplicates++
			winner, err := lookupKeys(tx, []string{ev.DedupeKey})
			if err != nil {
				return err
			}
			if conflicts(winner[ev.DedupeKey], ev.PayloadHash) {
				conflict = append(conflict, j)
			}
		}
		if conflict != nil {
			return &ConflictError{Indexes: conflict}
		}
		return nil
	})
	var ce *ConflictError
	if perRow && errors.As(err, &ce) {
		for _, ev := range reqs[0].events {
			ev.ID = 0
		}
		return []ingestResult{{err: ce}}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return results, ids, nil
}

// routeReq is one route task to enqueue.
type routeReq struct {
	ids   []int64
	queue string
}

// route hands the route tasks of the events reqs stored (those with an id)
// to the enqueuer without waiting, one task per queue (EventQueue): when
// it is behind, the sweeper routes them.
func (ing *Ingestor) route(reqs []*ingestReq) {
	if ing.routeQ == nil {
		return
	}
	byQueue := map[string][]int64{}
	for _, r := range reqs {
		for _, ev := range r.events {
			if ev.ID != 0 {
				q := EventQueue(ev)
				byQueue[q] = append(byQueue[q], ev.ID)
			}
		}
	}
	for _, q := range queueNames {
		if ids := byQueue[q]; len(ids) > 0 {
			select {
			case ing.routeQ <- routeReq{ids: ids, queue: q}:
			default:
			}
		}
	}
}

// enqueueLog is how often failed enqueues are logged.
const enqueueLog = 10 * time.Second

// enqueueLoop enqueues route tasks, waiting at most EnqueueTimeout for each
// (the Redis client may not honour a context deadline, so the wait is
// bounded here). After a failure it skips enqueueing for EnqueueBackoff:
// the rows are committed and the sweeper routes them. Failures are logged
// at most every enqueueLog.
func (ing *Ingestor) enqueueLoop() {
	defer close(ing.enqDone)
	var (
		skipUntil, lastLog time.Time
		failed, skipped    int // since the last log line
		down               bool
		inflight           chan error // an enqueue that outlived its wait
	)
	enqueue := func(req routeReq) error {
		if inflight != nil {
			select {
			case <-inflight:
				inflight = nil
			default:
				return errors.New("journey: the previous enqueue has not returned yet")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), ing.cfg.EnqueueTimeout)
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, err := ing.cfg.Queue.EnqueueContext(ctx, NewRouteEventsTask(req.ids, req.queue))
			errc <- err
		}()
		t := time.NewTimer(ing.cfg.EnqueueTimeout)
		defer t.Stop()
		select {
		case err := <-errc:
			return err
		case <-t.C:
			inflight = errc
			return fmt.Errorf("journey: enqueue did not return within %v", ing.cfg.EnqueueTimeout)
		}
	}
	for req := range ing.routeQ {
		if time.Now().Before(skipUntil) {
			skipped += len(req.ids)
			continue
		}
		err := enqueue(req)
		if err == nil {
			if down {
				ing.cfg.Logger.Info("enqueueing route tasks works again; the sweeper routes the events skipped meanwhile",
					"failed_enqueues", failed, "skipped_events", skipped)
				down, failed, skipped = false, 0, 0
			}
			continue
		}
		down = true
		failed++
		skipped += len(req.ids)
		skipUntil = time.Now().Add(ing.cfg.EnqueueBackoff)
		if time.Since(lastLog) >= enqueueLog {
			ing.cfg.Logger.Warn("enqueue route task failed; the sweeper will route the stored events",
				"failed_enqueues", failed, "skipped_events", skipped, "err", err)
			lastLog = time.Now()
			failed, skipped = 0, 0
		}
	}
}
