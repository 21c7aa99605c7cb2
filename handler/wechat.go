package handler

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/officialaccount"
	oaconfig "github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/officialaccount/message"

	"github.com/wejourney/wejourney/model"
)

type oaKey struct{ appid, token, aes string }

// oaCache holds one silenceper OfficialAccount per appid and credentials,
// used only for its callback server (signature, AES, XML).
type oaCache struct {
	mu  sync.Mutex
	m   map[oaKey]*officialaccount.OfficialAccount
	mem cache.Cache
}

func (o *oaCache) get(a model.Account) *officialaccount.OfficialAccount {
	k := oaKey{a.AppID, a.Token, a.AESKey}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[oaKey]*officialaccount.OfficialAccount{}
		o.mem = cache.NewMemory()
	}
	oa := o.m[k]
	if oa == nil {
		oa = officialaccount.NewOfficialAccount(&oaconfig.Config{AppID: a.AppID, Token: a.Token, EncodingAESKey: a.AESKey, Cache: o.mem})
		o.m[k] = oa
	}
	return oa
}

// officialAccount serves GET/POST /wechat/oa/{appid}: the URL check, and
// plaintext and safe-mode callbacks. It answers "success" only after the
// normalized event is committed.
func (h *Handler) officialAccount(c *gin.Context) {
	start := time.Now()
	appid := c.Param("appid")
	acct, err := h.cfg.Accounts.Get(c.Request.Context(), appid)
	if err != nil || acct.Kind != model.AccountWeChatOA {
		h.metrics.callbacks.WithLabelValues("wechat", "unknown_account").Inc()
		if err != nil && !errors.Is(err, model.ErrUnknownAccount) {
			c.String(http.StatusServiceUnavailable, "account lookup failed")
			return
		}
		c.String(http.StatusNotFound, "unknown appid")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.metrics.callbacks.WithLabelValues("wechat", "too_large").Inc()
			c.String(http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		c.String(http.StatusBadRequest, "unreadable body")
		return
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	srv := h.oa.get(acct).GetServer(c.Request, c.Writer)
	if !srv.Validate() {
		h.metrics.callbacks.WithLabelValues("wechat", "bad_signature").Inc()
		c.String(http.StatusForbidden, "bad signature")
		return
	}
	if c.Request.Method == http.MethodGet {
		if _, ok := c.GetQuery("echostr"); !ok {
			c.String(http.StatusBadRequest, "missing echostr")
			return
		}
		if err := srv.Serve(); err != nil {
			c.String(http.StatusForbidden, "bad signature")
		}
		return
	}
	var (
		ingestErr error
		handled   bool
	)
	srv.SetMessageHandler(func(msg *message.MixMessage) *message.Reply {
		handled = true
		ev, err := normalizeOA(appid, msg)
		if err != nil {
			ingestErr = err
			return nil
		}
		_, dup, err := h.cfg.Ingestor.Ingest(c.Request.Context(), ev)
		if err != nil {
			ingestErr = fmt.Errorf("%w: %w", errStore, err)
			return nil
		}
		outcome := "stored"
		if dup > 0 {
			outcome = "duplicate"
		} else {
			h.metrics.events.WithLabelValues(ev.Type).Inc()
		}
		h.metrics.callbacks.WithLabelValues("wechat", outcome).Inc()
		return nil
	})
	if err := srv.Serve(); err != nil {
		h.metrics.callbacks.WithLabelValues("wechat", "malformed").Inc()
		status := http.StatusBadRequest
		if strings.Contains(err.Error(), "签名") {
			status = http.StatusForbidden
		}
		c.String(status, "bad request")
		return
	}
	switch {
	case errors.Is(ingestErr, errStore):
		h.log.Error("storing callback failed; WeChat will retry", "appid", appid, "err", ingestErr)
		h.metrics.callbacks.WithLabelValues("wechat", "store_failed").Inc()
		c.String(http.StatusServiceUnavailable, "try again")
		return
	case ingestErr != nil:
		h.metrics.callbacks.WithLabelValues("wechat", "malformed").Inc()
		c.String(http.StatusBadRequest, ingestErr.Error())
		return
	case !handled:
		c.String(http.StatusBadRequest, "no message")
		return
	}
	h.metrics.ackTime.Observe(time.Since(start).Seconds())
	// wejourney never replies passively (journeys answer through the API),
	// so there is nothing for srv.Send to encrypt.
	if !c.Writer.Written() {
		// silenceper answers "success" itself in plaintext mode only.
		c.String(http.StatusOK, "success")
	}
}

var errStore = errors.New("store event")

// normalizeOA turns an Official Account callback into one normalized event.
func normalizeOA(appid string, msg *message.MixMessage) (*model.Event, error) {
	from := string(msg.FromUserName)
	if from == "" || msg.MsgType == "" {
		return nil, errors.New("callback without FromUserName or MsgType")
	}
	ev := &model.Event{
		Source: "wechat",
		Member: model.MemberRef{AppID: appid, OpenID: from},
		Props:  map[string]any{},
		At:     time.Unix(msg.CreateTime, 0).UTC(),
	}
	if msg.CreateTime == 0 {
		ev.At = time.Now().UTC()
	}
	if msg.MsgType == message.MsgTypeEvent {
		key := msg.EventKey
		switch msg.Event {
		case message.EventSubscribe:
			ev.Type = "wechat.subscribe"
			if scene, ok := strings.CutPrefix(key, "qrscene_"); ok {
				ev.Props["scene"] = scene
			}
			if msg.Ticket != "" {
				ev.Props["ticket"] = msg.Ticket
			}
		case message.EventUnsubscribe:
			ev.Type = "wechat.unsubscribe"
		case message.EventScan:
			ev.Type = "wechat.scan"
			ev.Props["scene"] = key
			if msg.Ticket != "" {
				ev.Props["ticket"] = msg.Ticket
			}
		case message.EventClick:
			ev.Type = "wechat.menu_click"
			ev.Props["key"] = key
		case message.EventView:
			ev.Type = "wechat.menu_view"
			ev.Props["url"] = key
		case message.EventLocation:
			ev.Type = "wechat.location"
			ev.Props["latitude"] = parseFloat(msg.Latitude)
			ev.Props["longitude"] = parseFloat(msg.Longitude)
			ev.Props["precision"] = parseFloat(msg.Precision)
		case message.EventTemplateSendJobFinish:
			ev.Type = "wechat.template_sent"
			ev.Props["status"] = msg.Status
			ev.Props["msg_id"] = msg.TemplateMsgID
		default:
			ev.Type = "wechat." + strings.ToLower(string(msg.Event))
			if key != "" {
				ev.Props["key"] = key
			}
		}
		ev.DedupeKey = fmt.Sprintf("wx:%s:ev:%s:%d:%s:%s:%d", appid, from, msg.CreateTime, msg.Event, key, msg.TemplateMsgID)
		return ev, nil
	}
	ev.Type = "wechat.message"
	ev.Props["msg_type"] = string(msg.MsgType)
	ev.Props["msg_id"] = msg.MsgID
	switch msg.MsgType {
	case message.MsgTypeText:
		ev.Props["text"] = msg.Content
	case message.MsgTypeLocation:
		ev.Props["latitude"], ev.Props["longitude"], ev.Props["label"] = msg.LocationX, msg.LocationY, msg.Label
	case message.MsgTypeImage:
		ev.Props["pic_url"] = msg.PicURL
	case message.MsgTypeLink:
		ev.Props["url"] = msg.URL
	}
	if msg.MsgID != 0 {
		ev.DedupeKey = fmt.Sprintf("wx:%s:msg:%d", appid, msg.MsgID)
	} else {
		ev.DedupeKey = fmt.Sprintf("wx:%s:msg:%s:%d:%s", appid, from, msg.CreateTime, msg.MsgType)
	}
	return ev, nil
}

func parseFloat(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}
