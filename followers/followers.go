// Package followers imports an Official Account's existing followers:
// the ones who followed before wejourney was connected, whom it knows
// nothing of (their subscription is unknown until then).
//
// A sync pages the account's follower list (user/get, 10,000 openids a
// page), asks for each hundred followers' details (user/info/batchget),
// resolves their tag ids to names once per run (tags/get), and stores one
// wechat.follower_imported event per follower through an EventStore (the
// journey.Ingestor). The worker routes those events like any other: it
// creates or finds the member by openid and unionid and marks them
// subscribed, with their tags, subscribe time and first QR scene (see
// events.Import). The import itself writes no member.
//
// Resuming: progress is one model.FollowerSync row per account. After a
// page's events are all stored, the row takes the cursor of the next page
// (and the count imported so far) in the same step, so a run that stops —
// killed, interrupted, out of quota — resumes at the page it was working
// on, with the same run id. Events are keyed
// "import:<appid>:<run id>:<openid>", so the page stored again stores
// nothing twice. A finished run, or Options.Restart, starts a new run.
//
// Quotas. We assume WeChat's documented daily quotas of an Official
// Account (公众号 → 开发 → 接口权限, which WeChat raises for large accounts
// and may change): user/get 500 calls a day (5,000,000 followers);
// user/info and user/info/batchget millions of calls a day; tags/get
// 1,000 a day. 25,000 followers take 3 user/get pages (+1 empty call that
// ends the list), 250 batchget calls and 1 tags/get: a small share of
// each. The import does not count against the quotas itself; it spreads
// its calls with a client-side rate limit (Config.Rate, default 50
// calls/s, well under WeChat's per-minute limits) and reacts to WeChat's
// answers: on 45009 (the day's quota of an API is spent) the run stops,
// its progress saved, with ErrDailyQuota saying to run it again tomorrow;
// on 45011 (the minute's quota) it waits a minute and retries; temporary
// errors (-1 system busy, network, 5xx) are retried with backoff a few
// times.
package followers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// Statuses of a model.FollowerSync.
const (
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// Default settings of Config.
const (
	DefaultRate          = 50 // API calls per second
	DefaultRetries       = 4  // retries of a temporary error
	DefaultBackoff       = time.Second
	DefaultMinuteWait    = time.Minute // after 45011
	DefaultMinuteRetries = 5
)

// ErrRunning is returned when a sync of the account is already running in
// this process.
var ErrRunning = errors.New("followers: a sync of this account is already running")

// ErrDailyQuota is returned when WeChat answers 45009: the account's daily
// quota of an API is spent. Progress is saved; the next run resumes.
var ErrDailyQuota = errors.New("followers: WeChat's daily API quota is spent (45009)")

// Client is the Official Account API the import calls: *wechat.Sender is one.
type Client interface {
	Followers(ctx context.Context, appid, nextOpenID string) (wechat.FollowerPage, error)
	UsersInfo(ctx context.Context, appid string, openids []string) ([]wechat.UserInfo, error)
	Tags(ctx context.Context, appid string) (map[int]string, error)
}

// EventStore stores events durably: *journey.Ingestor is one. Events
// repeating a stored DedupeKey are duplicates, not errors.
type EventStore interface {
	Ingest(ctx context.Context, events ...*model.Event) (accepted, duplicates int, err error)
}

// Limiter spaces API calls: *rate.Limiter is one.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Config configures a Syncer. DB, Client and Events are required.
type Config struct {
	DB     *gorm.DB
	Client Client
	Events EventStore
	// Rate is the most API calls per second (all accounts together).
	// Default DefaultRate.
	Rate float64
	// Limiter, if set, replaces the rate limiter Rate makes.
	Limiter Limiter
	// Retries is how many times a temporary error is retried, after
	// Backoff, doubling. Defaults DefaultRetries and DefaultBackoff.
	Retries int
	Backoff time.Duration
	// MinuteWait is the wait after 45011, retried up to MinuteRetries
	// times. Defaults DefaultMinuteWait and DefaultMinuteRetries.
	MinuteWait    time.Duration
	MinuteRetries int
	// Sleep waits d or until ctx ends (tests pass one that does not sleep).
	// Default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now stamps the events and the progress row. Default time.Now.
	Now func() time.Time
	// BaseContext is the context of syncs started with Start; Close
	// cancels them. Default context.Background().
	BaseContext context.Context
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Options are one run's choices.
type Options struct {
	// Restart starts a new run even when the last one stopped midway.
	Restart bool
	// Progress, if set, is called after every batch of followers stored:
	// done of total followers (done counts the pages finished before a
	// resume).
	Progress func(done, total int)
}

// Result is what a run did.
type Result struct {
	// Sync is the progress row as the run left it.
	Sync model.FollowerSync
	// Resumed is true when the run went on with an earlier run (same
	// RunID); ResumedFrom is the follower count it started from.
	Resumed     bool
	ResumedFrom int
	// Stored counts the events stored by this run, Duplicates the ones
	// stored before (a page stored again after a resume), Skipped the
	// followers who unfollowed between the list and their details.
	Stored, Duplicates, Skipped int
}

// Syncer imports followers. It is safe for concurrent use; at most one
// sync per account runs in it at a time.
type Syncer struct {
	cfg     Config
	limiter Limiter
	base    context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	running map[string]int // appid -> followers done, while a sync runs
}

// New returns a Syncer for cfg.
func New(cfg Config) *Syncer {
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MinuteWait <= 0 {
		cfg.MinuteWait = DefaultMinuteWait
	}
	if cfg.MinuteRetries <= 0 {
		cfg.MinuteRetries = DefaultMinuteRetries
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BaseContext == nil {
		cfg.BaseContext = context.Background()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Syncer{cfg: cfg, limiter: cfg.Limiter, running: map[string]int{}}
	if s.limiter == nil {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	s.base, s.cancel = context.WithCancel(cfg.BaseContext)
	return s
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// claim marks appid's sync as running here, or reports that it was.
func (s *Syncer) claim(appid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[appid]; ok {
		return false
	}
	s.running[appid] = -1
	return true
}

func (s *Syncer) release(appid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, appid)
}

func (s *Syncer) setDone(appid string, done int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running[appid] = done
}

// Running reports whether a sync of appid runs in this process.
func (s *Syncer) Running(appid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.running[appid]
	return ok
}

// Start runs a sync of appid in the background (until Close) and reports
// whether it started: false when one is already running here. The
// progress row says running when it returns.
func (s *Syncer) Start(appid string, restart bool) (bool, error) {
	if appid == "" {
		return false, errors.New("followers: no appid")
	}
	if !s.claim(appid) {
		return false, nil
	}
	row, resumed, err := s.begin(s.base, appid, restart)
	if err != nil {
		s.release(appid)
		return false, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.release(appid)
		res, err := s.work(s.base, row, resumed, Options{})
		if err != nil {
			s.cfg.Logger.Error("follower sync stopped", "appid", appid, "imported", res.Sync.Imported, "total", res.Sync.Total, "err", err)
			return
		}
		s.cfg.Logger.Info("follower sync done", "appid", appid, "imported", res.Sync.Imported, "total", res.Sync.Total,
			"stored", res.Stored, "duplicates", res.Duplicates, "skipped", res.Skipped)
	}()
	return true, nil
}

// Close cancels the syncs started with Start and waits for them; their
// progress is saved, and the next run resumes.
func (s *Syncer) Close() {
	s.cancel()
	s.wg.Wait()
}

// Status returns appid's progress row, and false when appid was never
// synced. While a sync runs in this process, Imported counts the followers
// stored so far, not only the finished pages.
func (s *Syncer) Status(ctx context.Context, appid string) (model.FollowerSync, bool, error) {
	var row model.FollowerSync
	err := s.cfg.DB.WithContext(ctx).Where("app_id = ?", appid).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return row, false, nil
	}
	if err != nil {
		return row, false, fmt.Errorf("followers: load sync of %s: %w", appid, err)
	}
	s.mu.Lock()
	done, ok := s.running[appid]
	s.mu.Unlock()
	if ok && done > row.Imported {
		row.Imported = done
	}
	return row, true, nil
}

// Sync imports appid's followers and returns when the run is done or
// stopped. A run the progress row says is running or failed resumes where
// it stopped, unless opts.Restart. It returns ErrRunning when a sync of
// appid already runs in this process. Two processes syncing one account
// at once store nothing twice (same run, same dedupe keys) but spend its
// API quota twice.
func (s *Syncer) Sync(ctx context.Context, appid string, opts Options) (Result, error) {
	if appid == "" {
		return Result{}, errors.New("followers: no appid")
	}
	if !s.claim(appid) {
		return Result{}, fmt.Errorf("%w: %s", ErrRunning, appid)
	}
	defer s.release(appid)
	row, resumed, err := s.begin(ctx, appid, opts.Restart)
	if err != nil {
		return Result{}, err
	}
	return s.work(ctx, row, resumed, opts)
}

// work runs the sync whose progress row begin returned.
func (s *Syncer) work(ctx context.Context, row model.FollowerSync, resumed bool, opts Options) (Result, error) {
	appid := row.AppID
	var res Result
	res.Resumed, res.ResumedFrom = resumed, row.Imported
	stop := func(err error) (Result, error) {
		row.Status, row.Error = StatusFailed, err.Error()
		if errors.Is(err, ErrDailyQuota) {
			row.Error = fmt.Sprintf("%v; progress is saved (%d of %d followers): run the sync again tomorrow, after the quota resets at midnight Beijing time, to resume", err, row.Imported, row.Total)
			err = &quotaError{msg: row.Error, err: err}
		} else if ctx.Err() != nil {
			row.Error = fmt.Sprintf("interrupted (%v) after %d of %d followers; run the sync again to resume", ctx.Err(), row.Imported, row.Total)
		}
		if serr := s.save(context.WithoutCancel(ctx), &row); serr != nil {
			err = errors.Join(err, serr)
		}
		res.Sync = row
		return res, err
	}

	var tags map[int]string
	if err := s.call(ctx, "tags/get", func(ctx context.Context) (err error) {
		tags, err = s.cfg.Client.Tags(ctx, appid)
		return err
	}); err != nil {
		return stop(err)
	}
	cursor := row.NextOpenID
	for {
		var page wechat.FollowerPage
		err := s.call(ctx, "user/get", func(ctx context.Context) (err error) {
			page, err = s.cfg.Client.Followers(ctx, appid, cursor)
			return err
		})
		if err != nil {
			if cursor != "" && errors.Is(err, channels.ErrUnreachable) {
				err = fmt.Errorf("%w (the saved cursor %s no longer follows the account: start a new run with --restart, or restart=true)", err, cursor)
			}
			return stop(err)
		}
		row.Total = page.Total
		if len(page.OpenIDs) == 0 {
			break
		}
		done := row.Imported
		for start := 0; start < len(page.OpenIDs); start += wechat.MaxUsersInfo {
			batch := page.OpenIDs[start:min(start+wechat.MaxUsersInfo, len(page.OpenIDs))]
			var infos []wechat.UserInfo
			if err := s.call(ctx, "user/info/batchget", func(ctx context.Context) (err error) {
				infos, err = s.cfg.Client.UsersInfo(ctx, appid, batch)
				return err
			}); err != nil {
				return stop(err)
			}
			evs := s.events(appid, row.RunID, infos, tags)
			res.Skipped += len(batch) - len(evs)
			if len(evs) > 0 {
				acc, dup, err := s.cfg.Events.Ingest(ctx, evs...)
				if err != nil {
					return stop(fmt.Errorf("followers: store events: %w", err))
				}
				res.Stored += acc
				res.Duplicates += dup
			}
			done += len(batch)
			s.setDone(appid, done)
			if opts.Progress != nil {
				opts.Progress(done, max(row.Total, done))
			}
		}
		// The page is stored: move the cursor past it.
		row.Imported += len(page.OpenIDs)
		row.NextOpenID = page.NextOpenID
		if err := s.save(ctx, &row); err != nil {
			return stop(err)
		}
		if page.NextOpenID == "" {
			break
		}
		cursor = page.NextOpenID
	}
	now := s.cfg.Now().UTC()
	row.Status, row.Error, row.NextOpenID, row.FinishedAt = StatusDone, "", "", &now
	if err := s.save(context.WithoutCancel(ctx), &row); err != nil {
		res.Sync = row
		return res, err
	}
	res.Sync = row
	return res, nil
}

// quotaError is a run's error after 45009: its message says what to do;
// it wraps the API's error, so errors.Is(err, ErrDailyQuota) and
// channels.ErrQuota hold.
type quotaError struct {
	msg string
	err error
}

func (e *quotaError) Error() string { return e.msg }

// Unwrap returns the API call's error.
func (e *quotaError) Unwrap() error { return e.err }

// begin loads or creates appid's progress row and marks it running. It
// resumes a running or failed run unless restart.
func (s *Syncer) begin(ctx context.Context, appid string, restart bool) (model.FollowerSync, bool, error) {
	var row model.FollowerSync
	err := s.cfg.DB.WithContext(ctx).Where("app_id = ?", appid).Take(&row).Error
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return row, false, fmt.Errorf("followers: load sync of %s: %w", appid, err)
	}
	found := err == nil
	resume := found && !restart && (row.Status == StatusRunning || row.Status == StatusFailed) && row.RunID != ""
	if !resume {
		row = model.FollowerSync{AppID: appid, RunID: newRunID(s.cfg.Now()), StartedAt: s.cfg.Now().UTC()}
	}
	row.Status, row.Error, row.FinishedAt = StatusRunning, "", nil
	if err := s.save(ctx, &row); err != nil {
		return row, false, err
	}
	return row, resume, nil
}

// save writes the progress row.
func (s *Syncer) save(ctx context.Context, row *model.FollowerSync) error {
	row.UpdatedAt = s.cfg.Now().UTC()
	if err := s.cfg.DB.WithContext(ctx).Save(row).Error; err != nil {
		return fmt.Errorf("followers: save progress of %s: %w", row.AppID, err)
	}
	return nil
}

// newRunID names a run: its start time and a random suffix (24 characters).
func newRunID(now time.Time) string {
	b := make([]byte, 4)
	rand.Read(b)
	return now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}

// events turns the followers' details into wechat.follower_imported
// events; users who no longer follow (subscribe 0) are left out.
func (s *Syncer) events(appid, runID string, infos []wechat.UserInfo, tags map[int]string) []*model.Event {
	now := s.cfg.Now().UTC()
	out := make([]*model.Event, 0, len(infos))
	for _, u := range infos {
		if u.Subscribe != 1 || u.OpenID == "" {
			continue
		}
		names := make([]string, 0, len(u.TagIDs))
		for _, id := range u.TagIDs {
			if n, ok := tags[id]; ok && n != "" {
				names = append(names, n)
			}
		}
		scene := u.QRSceneStr
		if scene == "" && u.QRScene != 0 {
			scene = strconv.Itoa(u.QRScene)
		}
		out = append(out, &model.Event{
			DedupeKey: "import:" + appid + ":" + runID + ":" + u.OpenID,
			Type:      events.WeChatFollowerImported,
			Source:    events.Import{}.Name(),
			Member:    model.MemberRef{AppID: appid, OpenID: u.OpenID, UnionID: u.UnionID},
			Props: map[string]any{
				"tags":            names,
				"subscribe_time":  u.SubscribeTime,
				"subscribe_scene": u.SubscribeScene,
				"scene":           scene,
				"remark":          u.Remark,
			},
			At: now,
		})
	}
	return out
}

// call makes one API call through the rate limiter, retrying what is worth
// retrying: 45011 after MinuteWait, temporary errors with backoff. 45009
// is ErrDailyQuota; other classified errors return at once.
func (s *Syncer) call(ctx context.Context, api string, f func(context.Context) error) error {
	busy, minute := 0, 0
	for {
		if err := s.limiter.Wait(ctx); err != nil {
			return fmt.Errorf("followers: %s: %w", api, err)
		}
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("followers: %s: %w", api, ctx.Err())
		}
		var ce *channels.Error
		coded := errors.As(err, &ce)
		var wait time.Duration
		switch {
		case coded && ce.Code == 45009:
			return fmt.Errorf("%w: %s: %w", ErrDailyQuota, api, err)
		case coded && ce.Code == 45011:
			if minute >= s.cfg.MinuteRetries {
				return fmt.Errorf("followers: %s: still over the minute quota after %d waits: %w", api, minute, err)
			}
			minute++
			wait = s.cfg.MinuteWait
			s.cfg.Logger.Warn("follower sync: over WeChat's minute quota, waiting", "api", api, "wait", wait)
		case errors.Is(err, channels.ErrPermanent), errors.Is(err, channels.ErrUnreachable), errors.Is(err, channels.ErrQuota),
			errors.Is(err, wechat.ErrSandbox), errors.Is(err, wechat.ErrUnknownAccount):
			return fmt.Errorf("followers: %s: %w", api, err)
		default:
			if busy >= s.cfg.Retries {
				return fmt.Errorf("followers: %s: failed %d times: %w", api, busy+1, err)
			}
			wait = s.cfg.Backoff << busy
			busy++
			s.cfg.Logger.Warn("follower sync: API call failed, retrying", "api", api, "wait", wait, "err", err)
		}
		if err := s.cfg.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("followers: %s: %w", api, err)
		}
	}
}
