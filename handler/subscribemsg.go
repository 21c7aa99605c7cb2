package handler

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// SubscribeLinkConfig configures Official Account 一次性订阅消息 links:
// POST /api/v1/subscribe-links makes them, GET
// /wechat/oa/{appid}/subscribemsg receives the member WeChat sends back.
type SubscribeLinkConfig struct {
	// Secret signs each link's reserved parameter: the same in every
	// process (the settings row subscribe_link_secret). Required.
	Secret []byte
	// PublicURL is the base of the redirect_url handed to WeChat
	// (WEJOURNEY_PUBLIC_URL); "" uses the scheme and host the link was
	// requested on.
	PublicURL string
	// DefaultAppID is the Official Account a link request without appid
	// is for.
	DefaultAppID string
}

// SubscribeConfirmURL is WeChat's 一次性订阅消息 authorisation page.
const SubscribeConfirmURL = "https://mp.weixin.qq.com/mp/subscribemsg"

// Limits of subscribe links.
const (
	maxSubscribeScene    = 10000 // WeChat's scene is 0 to 10000
	maxSubscribeRedirect = 1024
	subscribeNonceBytes  = 8
	subscribeMACBytes    = 24 // reserved is at most 128 characters of a-zA-Z0-9: 16 + 48 hex
	subscribeMACContext  = "wejourney subscribemsg v1\x00"
)

// subscribeLinksOn reports whether subscribe links are configured.
func (h *Handler) subscribeLinksOn() bool {
	return h.cfg.SubscribeLinks != nil && len(h.cfg.SubscribeLinks.Secret) > 0
}

// subscribeMAC is the MAC that binds a link's account, template, scene and
// redirect to its nonce.
func subscribeMAC(key []byte, appid, templateID string, scene int, redirect, nonce string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(subscribeMACContext))
	for _, p := range []string{appid, templateID, strconv.Itoa(scene), redirect, nonce} {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)[:subscribeMACBytes]
}

// signSubscribeReserved returns a link's reserved parameter: a random
// nonce and the MAC, in hex (WeChat takes a-zA-Z0-9, at most 128).
func signSubscribeReserved(key []byte, appid, templateID string, scene int, redirect string) (string, error) {
	b := make([]byte, subscribeNonceBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	nonce := hex.EncodeToString(b)
	return nonce + hex.EncodeToString(subscribeMAC(key, appid, templateID, scene, redirect, nonce)), nil
}

// verifySubscribeReserved checks reserved against what WeChat sent back
// (in constant time) and returns its nonce.
func verifySubscribeReserved(key []byte, reserved, appid, templateID string, scene int, redirect string) (string, bool) {
	if len(reserved) != 2*(subscribeNonceBytes+subscribeMACBytes) {
		return "", false
	}
	nonce := reserved[:2*subscribeNonceBytes]
	got, err := hex.DecodeString(reserved[2*subscribeNonceBytes:])
	if err != nil {
		return "", false
	}
	if _, err := hex.DecodeString(nonce); err != nil {
		return "", false
	}
	return nonce, hmac.Equal(got, subscribeMAC(key, appid, templateID, scene, redirect, nonce))
}

// subscribeLinkRequest is the body of POST /api/v1/subscribe-links.
type subscribeLinkRequest struct {
	AppID      string `json:"appid"`
	TemplateID string `json:"template_id"`
	Scene      *int   `json:"scene"`
	Redirect   string `json:"redirect"`
}

// createSubscribeLink serves POST /api/v1/subscribe-links: {appid?,
// template_id, scene, redirect} → {"url": "<WeChat's authorisation page>"}.
func (h *Handler) createSubscribeLink(c *gin.Context) {
	if !h.subscribeLinksOn() {
		c.JSON(http.StatusNotFound, gin.H{"error": "subscribe links are not configured"})
		return
	}
	if err := checkJSONContentType(c.GetHeader("Content-Type")); err != nil {
		c.JSON(http.StatusUnsupportedMediaType, gin.H{"error": err.Error()})
		return
	}
	body, ok := readBody(c, MaxBody)
	if !ok {
		return
	}
	var in subscribeLinkRequest
	if err := json.Unmarshal(body, &in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "body is not JSON: " + err.Error()})
		return
	}
	cfg := h.cfg.SubscribeLinks
	if in.AppID == "" {
		in.AppID = cfg.DefaultAppID
	}
	if err := checkSubscribeLink(in); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	acct, err := h.cfg.Accounts.Get(c.Request.Context(), in.AppID)
	switch {
	case errors.Is(err, model.ErrUnknownAccount) || err == nil && acct.Kind != model.AccountWeChatOA:
		c.JSON(http.StatusBadRequest, gin.H{"error": fmt.Sprintf("appid %q is not a connected Official Account", in.AppID)})
		return
	case err != nil:
		h.log.Error("subscribe link: account lookup failed", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database error; try again"})
		return
	}
	reserved, err := signSubscribeReserved(cfg.Secret, in.AppID, in.TemplateID, *in.Scene, in.Redirect)
	if err != nil {
		c.JSON(http.StatusInternalServerError, gin.H{"error": "could not sign the link"})
		return
	}
	base := strings.TrimRight(cfg.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if c.Request.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + c.Request.Host
	}
	back := base + "/wechat/oa/" + url.PathEscape(in.AppID) + "/subscribemsg?" + url.Values{"r": {in.Redirect}}.Encode()
	link := SubscribeConfirmURL + "?action=get_confirm" +
		"&appid=" + url.QueryEscape(in.AppID) +
		"&scene=" + strconv.Itoa(*in.Scene) +
		"&template_id=" + url.QueryEscape(in.TemplateID) +
		"&redirect_url=" + url.QueryEscape(back) +
		"&reserved=" + reserved +
		"#wechat_redirect"
	c.JSON(http.StatusOK, gin.H{"url": link})
}

// checkSubscribeLink checks a link request's fields.
func checkSubscribeLink(in subscribeLinkRequest) error {
	switch {
	case in.AppID == "" || !model.Fits(in.AppID, model.MaxAppID):
		return errors.New("appid: the Official Account's appid (default: the default account)")
	case in.TemplateID == "" || len(in.TemplateID) > maxTemplateID || hasControl(in.TemplateID) || !utf8.ValidString(in.TemplateID):
		return fmt.Errorf("template_id: the 一次性订阅消息 template id is required (at most %d characters)", maxTemplateID)
	case in.Scene == nil || *in.Scene < 0 || *in.Scene > maxSubscribeScene:
		return fmt.Errorf("scene: a number from 0 to %d is required", maxSubscribeScene)
	}
	u, err := url.Parse(in.Redirect)
	if in.Redirect == "" || len(in.Redirect) > maxSubscribeRedirect || hasControl(in.Redirect) || err != nil ||
		(u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("redirect: the http(s) page the member lands on afterwards is required (at most %d characters)", maxSubscribeRedirect)
	}
	return nil
}

// subscribeMsgReturn serves GET /wechat/oa/{appid}/subscribemsg, where
// WeChat sends the member back from the authorisation page with openid,
// template_id, action (confirm or cancel), scene and reserved. A reserved
// that was not signed for this appid, template, scene and redirect is
// refused (400) and nothing is stored. On confirm the authorisation is
// stored as a wechat.subscribe_message_authorized event (once per member,
// template and link) before the member is sent (302) to the brand's
// redirect; when it cannot be stored the member gets a 503 page. On
// cancel nothing is stored.
func (h *Handler) subscribeMsgReturn(c *gin.Context) {
	if !h.subscribeLinksOn() {
		c.String(http.StatusNotFound, "subscribe links are not configured")
		return
	}
	appid := c.Param("appid")
	q := c.Request.URL.Query()
	redirect, templateID, reserved := q.Get("r"), q.Get("template_id"), q.Get("reserved")
	scene, err := strconv.Atoi(q.Get("scene"))
	if err != nil {
		c.String(http.StatusBadRequest, "this link is not valid")
		return
	}
	nonce, ok := verifySubscribeReserved(h.cfg.SubscribeLinks.Secret, reserved, appid, templateID, scene, redirect)
	if !ok {
		if ok, suppressed := h.logs.allow("subscribemsg_forged"); ok {
			h.log.Warn("subscribemsg return refused: reserved does not match", "appid", logAppID(appid),
				"remote", c.Request.RemoteAddr, "suppressed", suppressed)
		}
		c.String(http.StatusBadRequest, "this link is not valid")
		return
	}
	if q.Get("action") != "confirm" {
		c.Redirect(http.StatusFound, redirect)
		return
	}
	openid := q.Get("openid")
	if openid == "" || !model.Fits(openid, model.MaxOpenID) || hasControl(openid) {
		c.String(http.StatusBadRequest, "WeChat did not name the member")
		return
	}
	dedupe := fmt.Sprintf("wx:%s:once:%s:%s:%s", appid, openid, templateID, nonce)
	ev := events.OnceAuthorized(appid, openid, templateID, scene, dedupe, h.now())
	if err := h.storeAuthorization(c.Request.Context(), ev); err != nil {
		if ok, suppressed := h.logs.allow("subscribemsg_store_failed"); ok {
			h.log.Error("storing a subscribe authorisation failed; answered 503", "appid", logAppID(appid), "err", err, "suppressed", suppressed)
		}
		c.Header("Retry-After", "5")
		c.Data(http.StatusServiceUnavailable, "text/html; charset=utf-8",
			[]byte("<!doctype html><meta charset=utf-8><title>请稍后再试</title><p>服务暂时不可用，请稍后刷新重试。 / Please try again in a moment.</p>"))
		return
	}
	c.Redirect(http.StatusFound, redirect)
}

// storeAuthorization stores ev through the Ingestor and counts it.
func (h *Handler) storeAuthorization(ctx context.Context, ev *model.Event) error {
	accepted, _, err := h.cfg.Ingestor.Ingest(ctx, ev)
	if err != nil {
		return err
	}
	if accepted > 0 {
		h.metrics.events.WithLabelValues(journey.EventLabel(ev.Type)).Add(float64(accepted))
	}
	return nil
}
