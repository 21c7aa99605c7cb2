package wecom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/clock"
)

// Paths of the APIs the Sender calls.
const (
	sendWelcomePath    = "/cgi-bin/externalcontact/send_welcome_msg"
	messageSendPath    = "/cgi-bin/message/send"
	markTagPath        = "/cgi-bin/externalcontact/mark_tag"
	addMsgTemplatePath = "/cgi-bin/externalcontact/add_msg_template"
)

// Extra fields (Message.Extra, a send step's `extra:`) the WeCom channels
// read.
const (
	// ExtraWelcomeCode is the welcome_code of the contact-added event (the
	// engine copies it from the trigger event).
	ExtraWelcomeCode = "welcome_code"
	// ExtraUserID is the rep (WeCom userid) the member added (the engine
	// copies it from the trigger event; a step's extra may set it).
	ExtraUserID = "user_id"
	// ExtraApp is the WeCom app, "corpid/agentid", that sends.
	ExtraApp = "wecom_app"
	// ExtraToUser overrides the addressee of wecom.text ("rep1|rep2" or
	// "@all" as WeCom's touser takes it).
	ExtraToUser = "to_user"
	// ExtraAddTags and ExtraRemoveTags are comma-separated corp tag ids
	// for wecom.mark_tag.
	ExtraAddTags    = "add_tags"
	ExtraRemoveTags = "remove_tags"
	// ExtraImageMediaID attaches an image (a media_id from media/upload).
	ExtraImageMediaID = "image_media_id"
	// ExtraImagePicURL attaches an image by URL (pic_url) when no media id
	// is given.
	ExtraImagePicURL = "image_pic_url"
	// Link attachment: url is required, the others optional.
	ExtraLinkURL    = "link_url"
	ExtraLinkTitle  = "link_title"
	ExtraLinkPicURL = "link_picurl"
	ExtraLinkDesc   = "link_desc"
	// Mini-program attachment: appid, page, title and pic_media_id are all
	// required by WeCom.
	ExtraMiniprogramAppID      = "miniprogram_appid"
	ExtraMiniprogramPage       = "miniprogram_page"
	ExtraMiniprogramTitle      = "miniprogram_title"
	ExtraMiniprogramPicMediaID = "miniprogram_pic_media_id"
)

// WeCom errcodes the Sender treats specially.
const (
	// CodeWelcomeUsed (41051, "externaluser has started chatting"): the
	// welcome_code was used already, by this or another app. Unreachable.
	CodeWelcomeUsed = 41051
	// CodeWelcomeExpired (41050): treated like 41051 (the code's 20 s are
	// over). WeCom's public docs do not list a distinct code for an expired
	// welcome_code; this one is handled defensively.
	CodeWelcomeExpired = 41050
)

// GroupMessagesPerMonth is how many customer group messages
// (add_msg_template) WeCom lets one customer receive from a corp in a
// calendar month.
const GroupMessagesPerMonth = 4

// API names of the sending APIs: the last part of the Limiter's keys
// ("wecom:<app>:<api>") and the keys of SenderConfig.Rates.
const (
	APIWelcome      = "send_welcome_msg"
	APIAppMessage   = "message_send"
	APIMarkTag      = "mark_tag"
	APIGroupMessage = "add_msg_template"
)

// APIs lists the sending APIs' names.
var APIs = []string{APIWelcome, APIAppMessage, APIMarkTag, APIGroupMessage}

// Rates the Sender asks of its Limiter, per app and API. WeCom limits
// calls per corp and API by the minute and hour (10,000 a minute is the
// figure usually cited; not verified here) and answers 45009/45033 beyond
// them: these rates are wejourney's own, well below, to spread the load.
var (
	// RateWelcome: send_welcome_msg must go out within 20 s of the add, so
	// its allowance is large (150/s).
	RateWelcome = channels.Rate{N: 150, Per: time.Second}
	// RateAppMessage: message/send, 30/s.
	RateAppMessage = channels.Rate{N: 30, Per: time.Second}
	// RateMarkTag: externalcontact/mark_tag, 50/s.
	RateMarkTag = channels.Rate{N: 50, Per: time.Second}
	// RateGroupMessage: externalcontact/add_msg_template, 10/s.
	RateGroupMessage = channels.Rate{N: 10, Per: time.Second}
)

// ErrNoApp is wrapped (with channels.ErrPermanent) when a message names no
// WeCom app and no default is configured.
var ErrNoApp = errors.New("wecom: no WeCom app: set WEJOURNEY_WECOM_CORPID and WEJOURNEY_WECOM_AGENTID, " +
	"or add a WeCom app in the admin and name it in the step's extra.wecom_app")

// SenderConfig configures a Sender.
type SenderConfig struct {
	// Client calls WeCom. Required.
	Client *Client
	// DefaultApp ("corpid/agentid") sends messages whose Extra names no
	// wecom_app; "" means such messages fail with ErrNoApp.
	DefaultApp string
	// Limiter spends a call of each API per app ("wecom:<app>:<api>");
	// nil: no limit.
	Limiter channels.Limiter
	// Rates overrides the default rate (RateWelcome, ...) of an API, by
	// its name (APIWelcome, ...).
	Rates map[string]channels.Rate
	// Redis counts the group messages each customer received this month;
	// nil: no counting (WeCom refuses the fifth itself).
	Redis redis.UniversalClient
	// Clock tells the month and the time to the next quota reset. Nil:
	// the wall clock.
	Clock clock.Clock
	// Logger receives sandbox sends. Nil: slog.Default().
	Logger *slog.Logger
	// Holds keeps the APIs whose daily quota (45009, 45035) is spent, for
	// every process: their sends wait for midnight without calling WeCom.
	// Nil: each send calls, and WeCom answers again.
	Holds *channels.Holds
}

// Sender sends on the WeCom channels: wecom.welcome, wecom.text,
// wecom.mark_tag and wecom.group_message. It is a channels.Provider and is
// safe for concurrent use.
type Sender struct {
	cfg SenderConfig
}

// NewSender returns a Sender for cfg. It panics if cfg.Client is nil.
func NewSender(cfg SenderConfig) *Sender {
	if cfg.Client == nil {
		panic("wecom: NewSender: SenderConfig.Client is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sender{cfg: cfg}
}

// Channels implements channels.Provider.
func (s *Sender) Channels() map[string]channels.Capabilities {
	return map[string]channels.Capabilities{
		channels.WeComWelcome: {Address: channels.ByExternalUserID, Urgent: true, Requires: []string{"text"}},
		// The addressee is the rep (Extra user_id / to_user), which the
		// recipient does not hold: no address is recorded.
		channels.WeComText:         {Requires: []string{"text"}},
		channels.WeComMarkTag:      {Address: channels.ByExternalUserID},
		channels.WeComGroupMessage: {Address: channels.ByExternalUserID, Requires: []string{"text"}},
	}
}

// Send implements channels.Sender.
func (s *Sender) Send(ctx context.Context, msg channels.Message) (channels.Result, error) {
	app := msg.Extra[ExtraApp]
	if app == "" {
		app = s.cfg.DefaultApp
	}
	if app == "" {
		return channels.Result{}, fmt.Errorf("%s: %w: %w", msg.Channel, ErrNoApp, channels.ErrPermanent)
	}
	hold := "wecom:" + app + ":" + apiOf(msg.Channel)
	if s.cfg.Holds != nil {
		now := s.cfg.Clock.Now()
		if h, held := s.cfg.Holds.Held(ctx, hold, now); held {
			return channels.Result{}, &channels.Error{Class: channels.ErrQuota, Code: 45009, RetryAfter: h.Until.Sub(now),
				Msg: fmt.Sprintf("daily quota of %s spent: held until %s Beijing time (WeCom not called)", apiOf(msg.Channel), h.Until.In(channels.ChinaTime).Format("2006-01-02 15:04"))}
		}
	}
	var (
		res channels.Result
		err error
	)
	switch msg.Channel {
	case channels.WeComWelcome:
		res, err = s.welcome(ctx, app, msg)
	case channels.WeComText:
		res, err = s.text(ctx, app, msg)
	case channels.WeComMarkTag:
		res, err = s.markTag(ctx, app, msg)
	case channels.WeComGroupMessage:
		res, err = s.groupMessage(ctx, app, msg)
	default:
		return channels.Result{}, fmt.Errorf("wecom: channel %q: %w", msg.Channel, channels.ErrPermanent)
	}
	if errors.Is(err, ErrSandbox) {
		s.cfg.Logger.Info("wecom: app has no secret; message logged, not sent", "channel", msg.Channel, "app", app,
			"delivery", msg.DeliveryID)
		return channels.Result{Sandbox: true}, nil
	}
	return res, s.refine(ctx, hold, err)
}

// apiOf names the API a channel's messages go through.
func apiOf(channel string) string {
	switch channel {
	case channels.WeComWelcome:
		return APIWelcome
	case channels.WeComMarkTag:
		return APIMarkTag
	case channels.WeComGroupMessage:
		return APIGroupMessage
	}
	return APIAppMessage
}

// refine adjusts the classes Classify cannot know: an unknown app is a
// configuration error, and a daily quota (45009, 45035) lasts until
// midnight in China, holding the API (hold) for every process.
func (s *Sender) refine(ctx context.Context, hold string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUnknownAccount) && !errors.Is(err, channels.ErrPermanent) {
		return fmt.Errorf("%w (add the WeCom app in the admin, or set WEJOURNEY_WECOM_CORPID): %w", err, channels.ErrPermanent)
	}
	var ce *channels.Error
	if errors.As(err, &ce) && (ce.Code == 45009 || ce.Code == 45035) {
		now := s.cfg.Clock.Now()
		ce.RetryAfter = channels.NextQuotaReset(now).Sub(now)
		if s.cfg.Holds != nil {
			if herr := s.cfg.Holds.Hold(ctx, hold, now.Add(ce.RetryAfter), now, ce.Msg); herr != nil {
				s.cfg.Logger.Warn("recording a spent WeCom quota failed", "api", hold, "err", herr)
			}
		}
	}
	return err
}

// take spends one call of api for app: its rate from Config.Rates, else r.
func (s *Sender) take(ctx context.Context, app, api string, r channels.Rate) error {
	if s.cfg.Limiter == nil {
		return nil
	}
	if o, ok := s.cfg.Rates[api]; ok {
		r = o
	}
	return s.cfg.Limiter.Take(ctx, "wecom:"+app+":"+api, r)
}

// unreachable is an ErrUnreachable *channels.Error.
func unreachable(code int, msg string) error {
	return &channels.Error{Class: channels.ErrUnreachable, Code: code, Msg: msg}
}

// permanent is an ErrPermanent *channels.Error for a bad message.
func permanent(msg string) error {
	return &channels.Error{Class: channels.ErrPermanent, Msg: msg}
}

// attachments builds WeCom's attachments list (send_welcome_msg,
// add_msg_template) from extra: an image, a link and a mini-program, in
// that order, each when its fields are set.
func attachments(extra map[string]string) ([]map[string]any, error) {
	var out []map[string]any
	if id, pic := extra[ExtraImageMediaID], extra[ExtraImagePicURL]; id != "" || pic != "" {
		img := map[string]any{}
		if id != "" {
			img["media_id"] = id
		} else {
			img["pic_url"] = pic
		}
		out = append(out, map[string]any{"msgtype": "image", "image": img})
	}
	if u := extra[ExtraLinkURL]; u != "" {
		title := extra[ExtraLinkTitle]
		if title == "" {
			return nil, permanent("link attachment needs extra.link_title")
		}
		link := map[string]any{"title": title, "url": u}
		if v := extra[ExtraLinkPicURL]; v != "" {
			link["picurl"] = v
		}
		if v := extra[ExtraLinkDesc]; v != "" {
			link["desc"] = v
		}
		out = append(out, map[string]any{"msgtype": "link", "link": link})
	} else if extra[ExtraLinkTitle] != "" {
		return nil, permanent("link attachment needs extra.link_url")
	}
	mp := map[string]string{"appid": extra[ExtraMiniprogramAppID], "page": extra[ExtraMiniprogramPage],
		"title": extra[ExtraMiniprogramTitle], "pic_media_id": extra[ExtraMiniprogramPicMediaID]}
	set := 0
	for _, v := range mp {
		if v != "" {
			set++
		}
	}
	switch set {
	case 0:
	case len(mp):
		out = append(out, map[string]any{"msgtype": "miniprogram", "miniprogram": mp})
	default:
		return nil, permanent("miniprogram attachment needs extra.miniprogram_appid, miniprogram_page, miniprogram_title and miniprogram_pic_media_id")
	}
	return out, nil
}

// welcome answers a contact add with its welcome_code (send_welcome_msg).
func (s *Sender) welcome(ctx context.Context, app string, msg channels.Message) (channels.Result, error) {
	code := msg.Extra[ExtraWelcomeCode]
	if code == "" {
		return channels.Result{}, unreachable(0, "no welcome code: the member did not just add a rep")
	}
	att, err := attachments(msg.Extra)
	if err != nil {
		return channels.Result{}, err
	}
	body := map[string]any{"welcome_code": code}
	if msg.Text != "" {
		body["text"] = map[string]string{"content": msg.Text}
	}
	if len(att) > 0 {
		body["attachments"] = att
	}
	if err := s.take(ctx, app, APIWelcome, RateWelcome); err != nil {
		return channels.Result{}, err
	}
	err = s.cfg.Client.Call(ctx, app, sendWelcomePath, nil, body, nil)
	var ce *channels.Error
	if errors.As(err, &ce) {
		switch ce.Code {
		case CodeWelcomeUsed:
			return channels.Result{}, unreachable(ce.Code, "welcome code already used (another app sent a welcome, or it was sent before): "+ce.Msg)
		case CodeWelcomeExpired:
			return channels.Result{}, unreachable(ce.Code, "welcome code expired (WeCom takes it within 20 s of the add): "+ce.Msg)
		}
	}
	return channels.Result{}, err
}

// agentID is the agentid of app "corpid/agentid".
func agentID(app string) (int64, error) {
	_, a, _ := strings.Cut(app, "/")
	id, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, permanent(fmt.Sprintf("app %q: the agentid is not a number", app))
	}
	return id, nil
}

// text sends an app message to the rep (message/send).
func (s *Sender) text(ctx context.Context, app string, msg channels.Message) (channels.Result, error) {
	to := msg.Extra[ExtraToUser]
	if to == "" {
		to = msg.Extra[ExtraUserID]
	}
	if to == "" {
		return channels.Result{}, unreachable(0, "no rep to write to: the trigger event has no user_id and the step no extra.to_user")
	}
	agent, err := agentID(app)
	if err != nil {
		return channels.Result{}, err
	}
	body := map[string]any{"touser": to, "msgtype": "text", "agentid": agent, "text": map[string]string{"content": msg.Text}}
	if err := s.take(ctx, app, APIAppMessage, RateAppMessage); err != nil {
		return channels.Result{}, err
	}
	var ans struct {
		InvalidUser string `json:"invaliduser"`
		MsgID       string `json:"msgid"`
	}
	if err := s.cfg.Client.Call(ctx, app, messageSendPath, nil, body, &ans); err != nil {
		return channels.Result{}, err
	}
	if ans.InvalidUser != "" {
		// WeCom accepts the call and names the users it could not reach
		// (not in the app's visible range, left the corp).
		if ans.InvalidUser == to || !strings.Contains(to, "|") {
			return channels.Result{}, unreachable(0, "invaliduser "+ans.InvalidUser+": the rep is not reachable by this app")
		}
	}
	return channels.Result{ProviderID: ans.MsgID}, nil
}

// splitTags splits comma-separated tag ids.
func splitTags(s string) []string {
	out := []string{}
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// markTag marks corp tags on the member's contact (mark_tag).
func (s *Sender) markTag(ctx context.Context, app string, msg channels.Message) (channels.Result, error) {
	if msg.To.ExternalUserID == "" {
		return channels.Result{}, unreachable(0, "the member has no WeCom external_userid")
	}
	rep := msg.Extra[ExtraUserID]
	if rep == "" {
		return channels.Result{}, unreachable(0, "no rep: mark_tag needs the rep who has the contact (the event's user_id or extra.user_id)")
	}
	add, remove := splitTags(msg.Extra[ExtraAddTags]), splitTags(msg.Extra[ExtraRemoveTags])
	if len(add) == 0 && len(remove) == 0 {
		return channels.Result{}, permanent("mark_tag needs extra.add_tags or extra.remove_tags (comma-separated tag ids)")
	}
	body := map[string]any{"userid": rep, "external_userid": msg.To.ExternalUserID}
	if len(add) > 0 {
		body["add_tag"] = add
	}
	if len(remove) > 0 {
		body["remove_tag"] = remove
	}
	if err := s.take(ctx, app, APIMarkTag, RateMarkTag); err != nil {
		return channels.Result{}, err
	}
	return channels.Result{}, s.cfg.Client.Call(ctx, app, markTagPath, nil, body, nil)
}

// GroupCountKey is the Redis key counting the group messages
// externalUserID received from corp in month (Asia/Shanghai, "200601").
func GroupCountKey(corp, externalUserID, month string) string {
	return "wejourney:wecom:group_msgs:" + corp + ":" + month + ":" + externalUserID
}

// groupMessage creates a group-send task the rep confirms
// (add_msg_template), counting the customer's monthly allowance.
func (s *Sender) groupMessage(ctx context.Context, app string, msg channels.Message) (channels.Result, error) {
	ext := msg.To.ExternalUserID
	if ext == "" {
		return channels.Result{}, unreachable(0, "the member has no WeCom external_userid")
	}
	att, err := attachments(msg.Extra)
	if err != nil {
		return channels.Result{}, err
	}
	body := map[string]any{"chat_type": "single", "external_userid": []string{ext}}
	if rep := msg.Extra[ExtraUserID]; rep != "" {
		body["sender"] = rep
	}
	if msg.Text != "" {
		body["text"] = map[string]string{"content": msg.Text}
	}
	if len(att) > 0 {
		body["attachments"] = att
	}
	if err := s.take(ctx, app, APIGroupMessage, RateGroupMessage); err != nil {
		return channels.Result{}, err
	}
	release, err := s.countGroupMessage(ctx, app, ext)
	if err != nil {
		return channels.Result{}, err
	}
	var ans struct {
		FailList []string `json:"fail_list"`
		MsgID    string   `json:"msgid"`
	}
	if err := s.cfg.Client.Call(ctx, app, addMsgTemplatePath, nil, body, &ans); err != nil {
		release()
		return channels.Result{}, err
	}
	if len(ans.FailList) > 0 {
		release()
		return channels.Result{}, unreachable(0, "WeCom refused the customer (fail_list "+strings.Join(ans.FailList, ",")+
			"): not the rep's contact, or over WeCom's monthly limit")
	}
	return channels.Result{ProviderID: ans.MsgID}, nil
}

// countGroupMessage spends one of the customer's monthly group messages,
// or returns ErrUnreachable when none is left. release gives it back (the
// call failed). Without Redis nothing is counted.
func (s *Sender) countGroupMessage(ctx context.Context, app, ext string) (release func(), err error) {
	rdb := s.cfg.Redis
	if rdb == nil {
		return func() {}, nil
	}
	now := s.cfg.Clock.Now().In(channels.ChinaTime)
	corp, _, _ := strings.Cut(app, "/")
	key := GroupCountKey(corp, ext, now.Format("200601"))
	n, err := rdb.Incr(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("wecom: counting group messages: %w", err)
	}
	if n == 1 {
		// Kept past the month's end (plus a day for clock skew).
		end := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, channels.ChinaTime)
		rdb.Expire(ctx, key, end.Sub(now)+24*time.Hour)
	}
	release = func() { rdb.Decr(context.WithoutCancel(ctx), key) }
	if n > GroupMessagesPerMonth {
		release()
		return nil, unreachable(0, fmt.Sprintf("monthly limit of %d group messages for this customer", GroupMessagesPerMonth))
	}
	return release, nil
}
