package handler

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// MaxTimestampSkew is how far a callback's timestamp may be from this
// server's clock; an older (or later) callback is refused as a replay.
const MaxTimestampSkew = 5 * time.Minute

// Hints logged with refused callbacks: what an operator should check.
const (
	hintToken    = "check WEJOURNEY_WECHAT_TOKEN matches the token in 公众平台 → 基本配置"
	hintClock    = "a replay, or this server's clock is wrong"
	hintSafeMode = "choose 安全模式 in the platform or unset WEJOURNEY_WECHAT_AES_KEY"
	hintAESKey   = "check WEJOURNEY_WECHAT_AES_KEY matches the EncodingAESKey in 公众平台 → 基本配置"
	hintAppID    = "check the callback URL and WEJOURNEY_WECHAT_APPID"
)

// refusal is a callback answered with something other than 200: its status,
// its metric outcome (a fixed set, also the log rate-limit kind), what went
// wrong and what to check.
type refusal struct {
	status  int
	outcome string
	reason  string
	hint    string
}

func forbidden(outcome, reason, hint string) *refusal {
	return &refusal{http.StatusForbidden, outcome, reason, hint}
}

func malformed(reason string) *refusal {
	return &refusal{http.StatusBadRequest, "malformed", reason, "not a callback WeChat sends; check what posts to this URL"}
}

// officialAccount serves GET/POST /wechat/oa/{appid}: the URL check, and
// plaintext and safe-mode callbacks.
//
// The query signature and timestamp are checked before the body is read;
// bodies are read a bounded number at a time. Nothing is written before the
// outcome is known: 200 "success" only once the normalized event is
// committed, 503 when it could not be (WeChat retries), 4xx for callbacks no
// retry can fix. Every refusal is counted and logged (rate-limited) with a
// hint.
func (h *Handler) officialAccount(c *gin.Context) {
	start := time.Now()
	appid := c.Param("appid")
	acct, ref := h.account(c.Request.Context(), appid)
	if ref != nil {
		h.refuse(c, appid, ref)
		return
	}
	q := c.Request.URL.Query()
	if ref := h.verifyQuery(acct, q); ref != nil {
		h.refuse(c, appid, ref)
		return
	}
	if c.Request.Method == http.MethodGet {
		// The URL check WeChat sends when the callback URL is saved; it is
		// never encrypted.
		echostr := q.Get("echostr")
		if echostr == "" {
			h.refuse(c, appid, malformed("URL check without echostr"))
			return
		}
		h.metrics.callbacks.WithLabelValues(oaCallbacks.label, "url_check").Inc()
		c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(echostr))
		return
	}
	safe := acct.AESKey != ""
	switch encrypted := q.Get("encrypt_type") == "aes"; {
	case safe && !encrypted:
		h.refuse(c, appid, forbidden("plaintext_refused", "plaintext callback to a safe-mode account", hintSafeMode))
		return
	case safe && q.Get("msg_signature") == "":
		h.refuse(c, appid, forbidden("bad_msg_signature", "encrypted callback without msg_signature", "not sent by WeChat"))
		return
	case !safe && encrypted:
		h.refuse(c, appid, forbidden("undecryptable", "encrypted callback to an account without an AES key",
			"set WEJOURNEY_WECHAT_AES_KEY to the EncodingAESKey in 公众平台 → 基本配置, or choose 明文模式 there"))
		return
	}
	body, ref := h.readBody(c)
	if ref != nil {
		h.refuse(c, appid, ref)
		return
	}
	raw := body
	if safe {
		if raw, ref = decryptCallback(acct, q, body); ref != nil {
			h.refuse(c, appid, ref)
			return
		}
	}
	var msg message.MixMessage
	if err := xml.Unmarshal(raw, &msg); err != nil {
		h.refuse(c, appid, malformed("callback is not XML"))
		return
	}
	evs, err := events.NormalizeOACallback(appid, raw, &msg, h.now())
	if err != nil {
		h.refuse(c, appid, malformed(err.Error()))
		return
	}
	h.storeCallback(c, oaCallbacks, appid, start, evs)
}

// account looks up the Official Account the callback URL names.
func (h *Handler) account(ctx context.Context, appid string) (model.Account, *refusal) {
	// Accounts.Get answers an appid that cannot be one without a query.
	unknown := &refusal{http.StatusNotFound, "unknown_account", "unknown appid", hintAppID}
	acct, err := h.cfg.Accounts.Get(ctx, appid)
	switch {
	case errors.Is(err, model.ErrUnknownAccount):
		return model.Account{}, unknown
	case err != nil:
		return model.Account{}, &refusal{http.StatusServiceUnavailable, "lookup_failed",
			"account lookup failed: " + err.Error(), "the database is unavailable; WeChat retries"}
	case acct.Kind != model.AccountWeChatOA:
		return model.Account{}, &refusal{http.StatusNotFound, "unknown_account", "appid is not an Official Account", hintAppID}
	}
	return acct, nil
}

// verifyQuery checks the query signature, SHA1(sort(token, timestamp,
// nonce)), in constant time, then that the timestamp is within
// MaxTimestampSkew of now.
func (h *Handler) verifyQuery(acct model.Account, q url.Values) *refusal {
	sig, ts, nonce := q.Get("signature"), q.Get("timestamp"), q.Get("nonce")
	if sig == "" || ts == "" || nonce == "" {
		return forbidden("bad_signature", "no signature, timestamp or nonce in the query",
			"not a WeChat callback, or a proxy drops the query string")
	}
	if !equalSignature(sig, util.Signature(acct.Token, ts, nonce)) {
		return forbidden("bad_signature", "signature mismatch", hintToken)
	}
	return h.checkTimestamp(oaCallbacks, ts)
}

// equalSignature compares two hex SHA1 signatures in constant time.
func equalSignature(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// readBody reads the request body, at most MaxBody bytes, holding one of the
// Config.MaxConcurrentBodies slots while it reads.
func (h *Handler) readBody(c *gin.Context) ([]byte, *refusal) {
	tooLarge := &refusal{http.StatusRequestEntityTooLarge, "too_large",
		fmt.Sprintf("body over %d bytes", MaxBody), "not a callback WeChat sends"}
	if c.Request.ContentLength > MaxBody {
		return nil, tooLarge
	}
	if !h.acquireBody(c.Request.Context()) {
		return nil, &refusal{http.StatusServiceUnavailable, "busy",
			"too many callback bodies being read", "a burst or a slow sender; WeChat retries"}
	}
	defer func() { <-h.bodies }()
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, tooLarge
		}
		return nil, malformed("unreadable body")
	}
	return body, nil
}

// acquireBody takes a body slot, waiting up to h.bodyWait for one.
func (h *Handler) acquireBody(ctx context.Context) bool {
	select {
	case h.bodies <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(h.bodyWait)
	defer t.Stop()
	select {
	case h.bodies <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// decryptCallback checks a safe-mode body's msg_signature,
// SHA1(sort(token, timestamp, nonce, Encrypt)), in constant time, decrypts
// it with silenceper's routine and checks it was encrypted for this appid.
// It returns the callback XML.
func decryptCallback(acct model.Account, q url.Values, body []byte) ([]byte, *refusal) {
	var env message.EncryptedXMLMsg
	if err := xml.Unmarshal(body, &env); err != nil || env.EncryptedMsg == "" {
		return nil, malformed("safe-mode callback without <Encrypt>")
	}
	want := util.Signature(acct.Token, q.Get("timestamp"), q.Get("nonce"), env.EncryptedMsg)
	if !equalSignature(q.Get("msg_signature"), want) {
		return nil, forbidden("bad_msg_signature", "msg_signature mismatch",
			"the body is not the one WeChat signed: forged or altered on the way")
	}
	raw, appid, err := decryptOA(env.EncryptedMsg, acct.AESKey)
	if err != nil {
		return nil, forbidden("undecryptable", "cannot decrypt", hintAESKey)
	}
	if subtle.ConstantTimeCompare([]byte(appid), []byte(acct.AppID)) != 1 {
		return nil, forbidden("undecryptable", "encrypted for another appid", hintAppID)
	}
	return raw, nil
}

// decryptOA decrypts a safe-mode <Encrypt> with the account's
// EncodingAESKey, as silenceper's util.DecryptMsg does, returning the XML
// and the appid it was encrypted for.
func decryptOA(encrypted, encodingAESKey string) (xmlMsg []byte, appid string, err error) {
	if len(encodingAESKey) != 43 {
		return nil, "", errors.New("EncodingAESKey is not 43 characters")
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, "", errors.New("EncodingAESKey does not decode to 32 bytes")
	}
	ciphertext, err := base64.StdEncoding.DecodeString(encrypted)
	if err != nil {
		return nil, "", fmt.Errorf("encrypted message is not base64: %w", err)
	}
	_, xmlMsg, id, err := util.AESDecryptMsg(ciphertext, key)
	if err != nil {
		return nil, "", fmt.Errorf("decrypt: %w", err)
	}
	return xmlMsg, string(id), nil
}

// refuse answers a refused Official Account callback (refuseCallback).
func (h *Handler) refuse(c *gin.Context, appid string, r *refusal) {
	h.refuseCallback(c, oaCallbacks, appid, r)
}

// logAppID bounds what a caller-chosen appid puts into a log line.
func logAppID(appid string) string {
	if len(appid) > 64 {
		return appid[:64] + "…"
	}
	return appid
}
