package handler

import (
	"context"
	"crypto/subtle"
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// Hints logged with refused WeCom callbacks: what an operator should check.
const (
	hintWeComToken  = "check WEJOURNEY_WECOM_TOKEN (or the app's token in the admin page) matches the Token in 企业微信 管理后台 → 应用管理 → the app → 接收消息 (or 客户联系 → API)"
	hintWeComAESKey = "check WEJOURNEY_WECOM_AES_KEY (or the app's key in the admin page) matches the EncodingAESKey set with that Token"
	hintWeComApp    = "check the callback URL's corpid/agentid and WEJOURNEY_WECOM_CORPID / WEJOURNEY_WECOM_AGENTID"
)

// weCom serves GET/POST /wechat/work/{corpid}/{agentid}: the URL check and
// the callbacks of one WeCom app (app messages and events, external
// contacts, customer groups).
//
// WeCom always encrypts. The URL check's msg_signature,
// SHA1(sort(token, timestamp, nonce, echostr)), is checked in constant
// time, echostr decrypted with the app's EncodingAESKey and answered in
// plain text. A callback's timestamp is checked before its body is read;
// its msg_signature over <Encrypt> before anything is decrypted; then that
// it was encrypted for this corp. As with the Official Account, nothing is
// written before the outcome is known: 200 "success" only once the events
// are committed, 503 when they could not be (WeCom retries), 4xx for
// callbacks no retry can fix, each refusal counted and logged
// (rate-limited) with a hint.
func (h *Handler) weCom(c *gin.Context) {
	start := time.Now()
	appid := c.Param("corpid") + "/" + c.Param("agentid")
	acct, ref := h.weComAccount(c.Request.Context(), appid)
	if ref != nil {
		h.refuseWeCom(c, appid, ref)
		return
	}
	q := c.Request.URL.Query()
	if ref := h.verifyWeComQuery(q); ref != nil {
		h.refuseWeCom(c, appid, ref)
		return
	}
	if c.Request.Method == http.MethodGet {
		// base64 has no spaces: a '+' some proxy did not escape reads as
		// one, and is put back.
		echostr := strings.ReplaceAll(q.Get("echostr"), " ", "+")
		if echostr == "" {
			h.refuseWeCom(c, appid, malformed("URL check without echostr"))
			return
		}
		plain, ref := decryptWeCom(acct, q, echostr)
		if ref != nil {
			h.refuseWeCom(c, appid, ref)
			return
		}
		h.metrics.callbacks.WithLabelValues(weComCallbacks.label, "url_check").Inc()
		c.Data(http.StatusOK, "text/plain; charset=utf-8", plain)
		return
	}
	body, ref := h.readBody(c)
	if ref != nil {
		h.refuseWeCom(c, appid, ref)
		return
	}
	var env message.EncryptedXMLMsg
	if err := xml.Unmarshal(body, &env); err != nil || env.EncryptedMsg == "" {
		h.refuseWeCom(c, appid, malformed("WeCom callback without <Encrypt>"))
		return
	}
	raw, ref := decryptWeCom(acct, q, env.EncryptedMsg)
	if ref != nil {
		h.refuseWeCom(c, appid, ref)
		return
	}
	var msg events.WeComCallback
	if err := xml.Unmarshal(raw, &msg); err != nil {
		h.refuseWeCom(c, appid, malformed("callback is not XML"))
		return
	}
	evs, err := events.NormalizeWeCom(appid, &msg, h.now())
	if err != nil {
		h.refuseWeCom(c, appid, malformed(err.Error()))
		return
	}
	if len(evs) == 0 {
		// A callback that names no member (a tag change, a batch job's
		// result): nothing for a journey, and nothing for WeCom to retry.
		h.metrics.callbacks.WithLabelValues(weComCallbacks.label, "ignored").Inc()
		c.String(http.StatusOK, "success")
		return
	}
	h.storeCallback(c, weComCallbacks, appid, start, evs)
}

// weComAccount looks up the WeCom app ("corpid/agentid") the callback URL
// names.
func (h *Handler) weComAccount(ctx context.Context, appid string) (model.Account, *refusal) {
	unknown := &refusal{http.StatusNotFound, "unknown_account", "unknown corpid/agentid", hintWeComApp}
	acct, err := h.cfg.Accounts.Get(ctx, appid)
	switch {
	case errors.Is(err, model.ErrUnknownAccount):
		return model.Account{}, unknown
	case err != nil:
		return model.Account{}, &refusal{http.StatusServiceUnavailable, "lookup_failed",
			"account lookup failed: " + err.Error(), "the database is unavailable; WeCom retries"}
	case acct.Kind != model.AccountWeCom:
		return model.Account{}, unknown
	case acct.AESKey == "":
		return model.Account{}, forbidden("undecryptable", "the WeCom app has no EncodingAESKey", hintWeComAESKey)
	}
	return acct, nil
}

// verifyWeComQuery checks that the query carries msg_signature, timestamp
// and nonce, and that the timestamp is within MaxTimestampSkew of now. The
// signature itself covers the encrypted payload and is checked with it.
func (h *Handler) verifyWeComQuery(q url.Values) *refusal {
	if q.Get("msg_signature") == "" || q.Get("timestamp") == "" || q.Get("nonce") == "" {
		return forbidden("bad_msg_signature", "no msg_signature, timestamp or nonce in the query",
			"not a WeCom callback, or a proxy drops the query string")
	}
	return h.checkTimestamp(weComCallbacks, q.Get("timestamp"))
}

// decryptWeCom checks msg_signature, SHA1(sort(token, timestamp, nonce,
// encrypted)), in constant time, then decrypts encrypted (the URL check's
// echostr or a callback's <Encrypt>) with the app's EncodingAESKey — the
// Official Account's AES-256-CBC scheme, silenceper's util.AESDecryptMsg —
// and checks it was encrypted for the app's corpid. It returns the
// plaintext.
func decryptWeCom(acct model.Account, q url.Values, encrypted string) ([]byte, *refusal) {
	corpid, _, _ := strings.Cut(acct.AppID, "/")
	want := util.Signature(acct.Token, q.Get("timestamp"), q.Get("nonce"), encrypted)
	if !equalSignature(q.Get("msg_signature"), want) {
		return nil, forbidden("bad_msg_signature", "msg_signature mismatch",
			"forged or altered on the way, or "+hintWeComToken)
	}
	plain, receiveID, err := decryptOA(encrypted, acct.AESKey)
	if err != nil {
		return nil, forbidden("undecryptable", "cannot decrypt", hintWeComAESKey)
	}
	if subtle.ConstantTimeCompare([]byte(receiveID), []byte(corpid)) != 1 {
		return nil, forbidden("undecryptable", "encrypted for another corp", hintWeComApp)
	}
	return plain, nil
}

// refuseWeCom answers a refused WeCom callback (refuseCallback).
func (h *Handler) refuseWeCom(c *gin.Context, appid string, r *refusal) {
	h.refuseCallback(c, weComCallbacks, appid, r)
}
