package wechat

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/channels"
)

// Window kinds of the customer-service allowance.
const (
	// WindowMessage opens when the member sends the account a message:
	// by default 5 messages within 48 hours.
	WindowMessage = "m"
	// WindowEvent opens when the member follows, scans a QR code or clicks
	// a click or scan-push menu: by default 3 messages within 1 minute.
	WindowEvent = "e"
)

// AllowanceConfig says how many customer-service messages each interaction
// allows and for how long. Zero fields take WeChat's current rules.
type AllowanceConfig struct {
	// Message is the allowance after a message from the member. Default
	// 5 within 48 h.
	Message channels.Rate
	// Event is the allowance after a follow, a QR scan or a menu click.
	// Default 3 within 1 minute.
	Event channels.Rate
}

func (c AllowanceConfig) withDefaults() AllowanceConfig {
	if c.Message.N <= 0 || c.Message.Per <= 0 {
		c.Message = channels.Rate{N: 5, Per: 48 * time.Hour}
	}
	if c.Event.N <= 0 || c.Event.Per <= 0 {
		c.Event = channels.Rate{N: 3, Per: time.Minute}
	}
	return c
}

// Allowance tracks, per member and Official Account, how many
// customer-service messages WeChat still takes: each interaction opens a
// window of its kind (a newer one of the same kind starts it afresh), and
// a send spends from the open window that closes first. It lives in Redis,
// shared by every worker, one small hash per member that expires with its
// last window. Times are the caller's (the event's time when opening, the
// engine's clock when spending), so a simulated clock moves it; Redis's
// expiry only cleans up.
//
// A member with no record (never seen interacting, or Redis lost it) is
// unknown: sends are attempted and WeChat's answer (45015, 45047) closes
// the allowance until the next interaction.
type Allowance struct {
	rdb redis.UniversalClient
	cfg AllowanceConfig
}

// NewAllowance returns the allowance kept in rdb.
func NewAllowance(rdb redis.UniversalClient, cfg AllowanceConfig) *Allowance {
	return &Allowance{rdb: rdb, cfg: cfg.withDefaults()}
}

// Config returns the allowance's rules.
func (a *Allowance) Config() AllowanceConfig { return a.cfg }

func allowanceKey(appid, openid string) string {
	return "wejourney:cs:" + appid + ":" + openid
}

// openScript opens a window of kind ARGV[1] started at ARGV[2] (ms), until
// ARGV[3] (ms), allowing ARGV[4] messages, unless one of that kind started
// at or after it (routing an event twice opens its window once). ARGV[5]
// is the hash's time to live in seconds.
var openScript = redis.NewScript(`
local k = ARGV[1]
local started = tonumber(redis.call('HGET', KEYS[1], k .. 's') or '0')
if started >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], k .. 's', ARGV[2], k .. 'u', ARGV[3], k .. 'l', ARGV[4])
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return 1
`)

// spendScript spends one message of the open window (until > ARGV[1])
// with messages left that closes first. It returns the window's kind, ""
// when none is open, or "?" when the member has no record.
var spendScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return '?' end
local now = tonumber(ARGV[1])
local best, bestUntil = '', 0
for _, k in ipairs({'e', 'm'}) do
  local u = tonumber(redis.call('HGET', KEYS[1], k .. 'u') or '0')
  local l = tonumber(redis.call('HGET', KEYS[1], k .. 'l') or '0')
  if u > now and l > 0 and (best == '' or u < bestUntil) then best, bestUntil = k, u end
end
if best ~= '' then redis.call('HINCRBY', KEYS[1], best .. 'l', -1) end
return best
`)

// Open records that the member interacted at at, opening a window of kind
// (WindowMessage or WindowEvent).
func (a *Allowance) Open(ctx context.Context, appid, openid, kind string, at time.Time) error {
	r := a.cfg.Event
	if kind == WindowMessage {
		r = a.cfg.Message
	}
	until := at.Add(r.Per)
	ttl := int64(max(time.Until(until), time.Minute)/time.Second) + 60
	err := openScript.Run(ctx, a.rdb, []string{allowanceKey(appid, openid)},
		kind, at.UnixMilli(), until.UnixMilli(), r.N, ttl).Err()
	if err != nil {
		return fmt.Errorf("wechat: open customer-service allowance: %w", err)
	}
	return nil
}

// Window is one interaction that opens an allowance window (OpenAll).
type Window struct {
	AppID, OpenID, Kind string
	At                  time.Time
}

// OpenAll opens the windows of several interactions in one round trip to
// Redis (see Open).
func (a *Allowance) OpenAll(ctx context.Context, ws []Window) error {
	if len(ws) == 0 {
		return nil
	}
	pipe := a.rdb.Pipeline()
	for _, w := range ws {
		r := a.cfg.Event
		if w.Kind == WindowMessage {
			r = a.cfg.Message
		}
		until := w.At.Add(r.Per)
		ttl := int64(max(time.Until(until), time.Minute)/time.Second) + 60
		openScript.EvalSha(ctx, pipe, []string{allowanceKey(w.AppID, w.OpenID)}, w.Kind, w.At.UnixMilli(), until.UnixMilli(), r.N, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return fmt.Errorf("wechat: open customer-service allowances: %w", err)
		}
		for _, w := range ws { // the script was not loaded yet: one by one, which loads it
			if err := a.Open(ctx, w.AppID, w.OpenID, w.Kind, w.At); err != nil {
				return err
			}
		}
	}
	return nil
}

// Spend takes one message of the member's allowance at now. It returns the
// window spent from (for Refund), and ok false when the member has a record
// and no message left: WeChat would refuse, do not call. A member with no
// record is ok with kind "".
func (a *Allowance) Spend(ctx context.Context, appid, openid string, now time.Time) (kind string, ok bool, err error) {
	res, err := spendScript.Run(ctx, a.rdb, []string{allowanceKey(appid, openid)}, now.UnixMilli()).Text()
	if err != nil {
		return "", true, fmt.Errorf("wechat: spend customer-service allowance: %w", err)
	}
	switch res {
	case "?":
		return "", true, nil
	case "":
		return "", false, nil
	}
	return res, true, nil
}

// Refund gives back a message Spend took from window kind, when WeChat
// refused the message for another reason (it did not count).
func (a *Allowance) Refund(ctx context.Context, appid, openid, kind string) {
	if kind == "" {
		return
	}
	a.rdb.HIncrBy(ctx, allowanceKey(appid, openid), kind+"l", 1)
}

// Close records WeChat's word that the member's allowance is spent or its
// window closed (45015, 45047) at now: no send is attempted until the
// member interacts again.
func (a *Allowance) Close(ctx context.Context, appid, openid string, now time.Time) {
	key := allowanceKey(appid, openid)
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	pipe := a.rdb.TxPipeline()
	for _, k := range []string{WindowEvent, WindowMessage} {
		pipe.HSetNX(ctx, key, k+"s", ms)
		pipe.HSetNX(ctx, key, k+"u", ms)
		pipe.HSet(ctx, key, k+"l", 0)
	}
	pipe.Expire(ctx, key, a.cfg.Message.Per+time.Minute)
	if _, err := pipe.Exec(ctx); err != nil {
		return // the next send is attempted, and WeChat answers again
	}
}

// describe says what the allowance allows, for delivery errors.
func (a *Allowance) describe() string {
	return fmt.Sprintf("%d within %s after a follow, scan or menu click; %d within %s after a message",
		a.cfg.Event.N, a.cfg.Event.Per, a.cfg.Message.N, a.cfg.Message.Per)
}
