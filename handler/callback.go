package handler

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// callbackSource is what tells the Official Account's callbacks and WeCom's
// apart in metrics and logs; the rest of answering them is shared.
type callbackSource struct {
	label       string // the metrics source label, also the refusal log's prefix
	limitPrefix string // put before each log rate-limit kind
	appKey      string // the log attribute naming the account
	platform    string // the sender, in refusal hints: "not a <platform> callback"
	storeFailed string // the log message of a callback that could not be stored
}

var (
	// oaCallbacks are the Official Account's (/wechat/oa/{appid}).
	oaCallbacks = callbackSource{label: "wechat", limitPrefix: "", appKey: "appid", platform: "WeChat",
		storeFailed: "storing callback failed; answered 503 so that WeChat retries it"}
	// weComCallbacks are a WeCom app's (/wechat/work/{corpid}/{agentid}),
	// rate-limited apart from the Official Account's.
	weComCallbacks = callbackSource{label: "wecom", limitPrefix: "wecom:", appKey: "app", platform: "WeCom",
		storeFailed: "storing WeCom callback failed; answered 503 so that WeCom retries it"}
)

// checkTimestamp checks that a callback's timestamp is a number within
// MaxTimestampSkew of now.
func (h *Handler) checkTimestamp(src callbackSource, ts string) *refusal {
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return forbidden("stale_timestamp", "timestamp is not a number", "not a "+src.platform+" callback")
	}
	off := h.now().Unix() - t
	if off < 0 {
		off = -off
	}
	if off > int64(MaxTimestampSkew/time.Second) {
		return forbidden("stale_timestamp", fmt.Sprintf("timestamp %ds off", off), hintClock)
	}
	return nil
}

// storeCallback stores the events of one callback received at start and
// answers it: 200 "success" once they are committed (wejourney never
// replies passively: journeys answer through the API), 503 when they could
// not be, so that the platform retries (logged, rate-limited). It counts
// the callback's outcome ("stored", or "duplicate" when none was new), the
// new events and the time to answer.
func (h *Handler) storeCallback(c *gin.Context, src callbackSource, appid string, start time.Time, evs []*model.Event) {
	accepted, dup, err := h.cfg.Ingestor.Ingest(c.Request.Context(), evs...)
	if err != nil {
		h.metrics.callbacks.WithLabelValues(src.label, "store_failed").Inc()
		if ok, suppressed := h.logs.allow(src.limitPrefix + "store_failed"); ok {
			h.log.Error(src.storeFailed, src.appKey, logAppID(appid), "err", err, "suppressed", suppressed)
		}
		c.String(http.StatusServiceUnavailable, "try again")
		return
	}
	outcome := "stored"
	if accepted == 0 && dup > 0 {
		outcome = "duplicate"
	}
	if accepted > 0 {
		// The events of one callback share a type.
		h.metrics.events.WithLabelValues(journey.EventLabel(evs[0].Type)).Add(float64(accepted))
	}
	h.metrics.callbacks.WithLabelValues(src.label, outcome).Inc()
	h.metrics.ackTime.Observe(time.Since(start).Seconds())
	c.String(http.StatusOK, "success")
}

// refuseCallback answers a refused callback and counts it under src; it
// logs it at warn, rate-limited per outcome, with what to check. It never
// logs the token or the body.
func (h *Handler) refuseCallback(c *gin.Context, src callbackSource, appid string, r *refusal) {
	h.metrics.callbacks.WithLabelValues(src.label, r.outcome).Inc()
	if ok, suppressed := h.logs.allow(src.limitPrefix + r.outcome); ok {
		h.log.Warn(src.label+" callback refused", src.appKey, logAppID(appid), "status", r.status,
			"reason", r.reason, "hint", r.hint, "remote", c.Request.RemoteAddr, "suppressed", suppressed)
	}
	body := r.reason
	if r.status == http.StatusServiceUnavailable {
		body = "try again"
	}
	c.String(r.status, body)
}
