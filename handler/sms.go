package handler

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/channels/sms"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// maxUplinkBatch bounds the replies of one uplink push.
const maxUplinkBatch = 1000

// smsReply is one member's SMS reply as a provider pushes it, normalised.
type smsReply struct {
	phone, text, sign, seq, dest string
	at                           time.Time
	atGiven                      bool
}

// smsUplinkOn checks the uplink routes' token: none configured, the routes
// do not exist (404); a wrong one is refused (403). Neither provider signs
// its pushes, so the token in the configured URL is their only proof.
func (h *Handler) smsUplinkOn(c *gin.Context) bool {
	want := h.cfg.SMSUplinkToken
	if want == "" {
		c.JSON(http.StatusNotFound, gin.H{"error": "SMS replies are not configured: set WEJOURNEY_SMS_UPLINK_TOKEN"})
		return false
	}
	if subtle.ConstantTimeCompare([]byte(c.Query("token")), []byte(want)) != 1 {
		c.JSON(http.StatusForbidden, gin.H{"error": "bad token"})
		return false
	}
	return true
}

// aliyunUplink serves POST /sms/aliyun/uplink: Alibaba Cloud's SmsUp HTTP
// batch push, a JSON array of {phone_number, send_time, content,
// sign_name, dest_code, sequence_id}. It answers {"code":0} once every
// reply is stored, 503 otherwise (Aliyun pushes again).
func (h *Handler) aliyunUplink(c *gin.Context) {
	if !h.smsUplinkOn(c) {
		return
	}
	type item struct {
		PhoneNumber string          `json:"phone_number"`
		SendTime    string          `json:"send_time"`
		Content     string          `json:"content"`
		SignName    string          `json:"sign_name"`
		DestCode    string          `json:"dest_code"`
		SequenceID  json.RawMessage `json:"sequence_id"`
	}
	var items []item
	if !readUplink(c, &items) {
		return
	}
	replies := make([]smsReply, 0, len(items))
	for _, it := range items {
		r := smsReply{phone: it.PhoneNumber, text: it.Content, sign: it.SignName, dest: it.DestCode,
			seq: strings.Trim(string(it.SequenceID), `"`)}
		for _, layout := range []string{"2006-01-02 15:04:05", "20060102150405"} {
			if t, err := time.ParseInLocation(layout, it.SendTime, chinaTime); err == nil { // Aliyun's time is UTC+8
				r.at, r.atGiven = t.UTC(), true
				break
			}
		}
		replies = append(replies, r)
	}
	if h.storeReplies(c, "aliyun", replies) {
		c.JSON(http.StatusOK, gin.H{"code": 0, "msg": "成功"})
	}
}

// tencentUplink serves POST /sms/tencent/uplink: Tencent Cloud's SMS
// reply callback, one {mobile, nationcode, text, sign, time, extend} or an
// array of them. It answers {"result":0,"errmsg":"OK"} once every reply
// is stored, 503 otherwise.
func (h *Handler) tencentUplink(c *gin.Context) {
	if !h.smsUplinkOn(c) {
		return
	}
	type item struct {
		Mobile     string          `json:"mobile"`
		NationCode string          `json:"nationcode"`
		Text       string          `json:"text"`
		Sign       string          `json:"sign"`
		Time       json.RawMessage `json:"time"`
		Extend     string          `json:"extend"`
	}
	var items []item
	if !readUplink(c, &items) {
		return
	}
	replies := make([]smsReply, 0, len(items))
	for _, it := range items {
		phone := it.Mobile
		if cc := strings.TrimPrefix(it.NationCode, "+"); cc != "" && !strings.HasPrefix(phone, "+") {
			phone = "+" + cc + phone
		}
		r := smsReply{phone: phone, text: it.Text, sign: it.Sign, dest: it.Extend}
		if sec, err := strconv.ParseInt(strings.Trim(string(it.Time), `"`), 10, 64); err == nil && sec > 0 {
			r.at, r.atGiven = time.Unix(sec, 0).UTC(), true
		}
		replies = append(replies, r)
	}
	if h.storeReplies(c, "tencent", replies) {
		c.JSON(http.StatusOK, gin.H{"result": 0, "errmsg": "OK"})
	}
}

// readUplink reads a JSON array (or one object) of at most maxUplinkBatch
// items into out. It answers 413/400 itself and returns false when it
// cannot.
func readUplink[T any](c *gin.Context, out *[]T) bool {
	body, ok := readBody(c, MaxBody)
	if !ok {
		return false
	}
	body = bytes.TrimSpace(body)
	var err error
	if len(body) > 0 && body[0] == '{' {
		var one T
		err = json.Unmarshal(body, &one)
		*out = []T{one}
	} else {
		err = json.Unmarshal(body, out)
	}
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "body is not the provider's JSON: " + err.Error()})
		return false
	}
	if len(*out) > maxUplinkBatch {
		c.JSON(http.StatusBadRequest, gin.H{"error": fmt.Sprintf("at most %d replies at once", maxUplinkBatch)})
		return false
	}
	return true
}

// memberPhone is how an uplink names the member: the 11-digit national
// number for mainland China (as brands store it), E.164 otherwise.
func memberPhone(e164 string) string {
	if strings.HasPrefix(e164, "+86") {
		return sms.Mainland(e164)
	}
	return e164
}

// storeReplies ingests each reply as an sms.received event of the member
// with its phone, deduplicated on the provider's sequence id or on
// (phone, time, text). Replies without a usable phone are skipped (and
// logged). It answers 503 itself and returns false when storing failed.
func (h *Handler) storeReplies(c *gin.Context, provider string, replies []smsReply) bool {
	now := h.now().UTC()
	var evs []*model.Event
	for _, r := range replies {
		phone, ok := sms.E164(r.phone)
		text := r.text
		if !ok || !utf8.ValidString(text) {
			if logOK, suppressed := h.logs.allow("sms_uplink"); logOK {
				h.log.Warn("sms uplink: a reply without a phone number skipped", "provider", provider, "suppressed", suppressed)
			}
			continue
		}
		at := now
		if r.atGiven && !r.at.After(now.Add(maxAheadOfNow)) && !r.at.Before(earliestAt()) {
			at = r.at
		}
		props := map[string]any{"text": text, "phone": phone, "provider": provider}
		if r.sign != "" {
			props["sign"] = r.sign
		}
		if r.dest != "" {
			props["dest_code"] = r.dest
		}
		fp := sha256.Sum256([]byte(phone + "\x00" + at.Format(time.RFC3339) + "\x00" + text))
		ev := &model.Event{Type: events.SMSReceived, Source: events.SMS{}.Name(), At: at, Props: props,
			Member: model.MemberRef{Phone: memberPhone(phone)}, PayloadHash: hex.EncodeToString(fp[:])}
		if r.seq != "" && r.seq != "null" {
			ev.DedupeKey = "sms:" + provider + ":seq:" + r.seq
		} else {
			ev.DedupeKey = "sms:" + provider + ":" + hex.EncodeToString(fp[:16])
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return true
	}
	_, _, err := h.cfg.Ingestor.Ingest(c.Request.Context(), evs...)
	var conflict *journey.ConflictError
	if errors.As(err, &conflict) {
		// The same sequence id with another text: the first one stands.
		err = nil
	}
	if err != nil {
		h.log.Error("storing SMS replies failed", "provider", provider, "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "could not store the replies; push them again"})
		return false
	}
	for _, ev := range evs {
		if ev.ID != 0 {
			h.metrics.events.WithLabelValues(journey.EventLabel(ev.Type)).Inc()
		}
	}
	return true
}
