package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/channels/email"
	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// EmailTokens verifies the signed tokens of the email channel's tracking
// and unsubscribe links: *email.Tokens is one. A forged, altered or
// malformed token is an error.
type EmailTokens interface {
	Verify(token string) (email.Claims, error)
}

// maxUnsubscribeBody bounds the body of POST /u/{token}: a form of one
// field.
const maxUnsubscribeBody = 16 << 10

// pixelGIF is a transparent 1×1 GIF.
var pixelGIF = []byte{
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
}

// emailToken verifies the route's token and that it is of kind; it
// answers 404 and reports false otherwise (as when no email tokens are
// configured). A bad token is never a 500.
func (h *Handler) emailToken(c *gin.Context, kind email.Kind) (email.Claims, bool) {
	if h.cfg.EmailTokens == nil {
		c.String(http.StatusNotFound, "not found")
		return email.Claims{}, false
	}
	cl, err := h.cfg.EmailTokens.Verify(c.Param("token"))
	if err != nil || cl.Kind != kind {
		c.String(http.StatusNotFound, "not found")
		return email.Claims{}, false
	}
	return cl, true
}

// emailOpen serves GET /t/o/{token}: the open pixel. It records one
// email.opened per delivery (later loads are duplicates) and always
// answers the GIF: a mail client retries nothing.
func (h *Handler) emailOpen(c *gin.Context) {
	cl, ok := h.emailToken(c, email.Open)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if err := h.emailEvent(ctx, cl, events.EmailOpened, fmt.Sprintf("email:o:%d", cl.DeliveryID), nil); err != nil {
		h.logEmail("recording an email open failed", err)
	}
	c.Header("Cache-Control", "no-store, private")
	c.Data(http.StatusOK, "image/gif", pixelGIF)
}

// emailClick serves GET /t/c/{token}: 302 to the link's original URL. It
// records one email.clicked (prop url) per delivery and URL. The member
// goes on to the link even when the event could not be stored.
func (h *Handler) emailClick(c *gin.Context) {
	cl, ok := h.emailToken(c, email.Click)
	if !ok {
		return
	}
	if u, err := url.Parse(cl.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.String(http.StatusNotFound, "not found") // signed, so never: the sender tracks http(s) links only
		return
	}
	sum := sha256.Sum256([]byte(cl.URL))
	key := fmt.Sprintf("email:c:%d:%s", cl.DeliveryID, hex.EncodeToString(sum[:16]))
	if err := h.emailEvent(c.Request.Context(), cl, events.EmailClicked, key, map[string]any{"url": cl.URL}); err != nil {
		h.logEmail("recording an email click failed", err)
	}
	c.Header("Cache-Control", "no-store, private")
	c.Header("Referrer-Policy", "no-referrer")
	c.Redirect(http.StatusFound, cl.URL)
}

// unsubscribePage serves GET /u/{token}: a page that asks to confirm, with
// a form posting back. A GET changes nothing: mail scanners follow links.
func (h *Handler) unsubscribePage(c *gin.Context) {
	cl, ok := h.emailToken(c, email.Unsubscribe)
	if !ok {
		return
	}
	h.renderUnsubscribe(c, http.StatusOK, unsubscribeView{Address: h.maskedAddress(c.Request.Context(), cl)})
}

// unsubscribe serves POST /u/{token}: the page's form, or a mail client's
// RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click), which
// gets a plain 200. Either records email.unsubscribed (one per delivery),
// which puts the member on the email opt-out list when it is routed.
func (h *Handler) unsubscribe(c *gin.Context) {
	cl, ok := h.emailToken(c, email.Unsubscribe)
	if !ok {
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxUnsubscribeBody)
	oneClick := c.PostForm("List-Unsubscribe") == "One-Click"
	err := h.emailEvent(c.Request.Context(), cl, events.EmailUnsubscribed, fmt.Sprintf("email:u:%d", cl.DeliveryID), nil)
	switch {
	case errors.Is(err, errNoEmailMember):
		c.String(http.StatusNotFound, "not found")
	case err != nil:
		h.logEmail("recording an unsubscribe failed", err)
		if oneClick {
			c.String(http.StatusServiceUnavailable, "try again later")
			return
		}
		h.renderUnsubscribe(c, http.StatusServiceUnavailable, unsubscribeView{Failed: true})
	case oneClick:
		c.String(http.StatusOK, "unsubscribed")
	default:
		h.renderUnsubscribe(c, http.StatusOK, unsubscribeView{Done: true})
	}
}

// errNoEmailMember: a token whose delivery and member are both gone.
var errNoEmailMember = errors.New("the email's member is not known")

// emailEvent stores one event of the email source for the member cl names.
func (h *Handler) emailEvent(ctx context.Context, cl email.Claims, typ, dedupe string, props map[string]any) error {
	ref, d, err := h.emailMember(ctx, cl)
	if err != nil {
		return err
	}
	if props == nil {
		props = map[string]any{}
	}
	props["delivery_id"] = cl.DeliveryID
	if d != nil {
		props["journey_id"] = d.JourneyID
	}
	ev := &model.Event{DedupeKey: dedupe, Type: typ, Source: events.Email{}.Name(), Member: ref, Props: props, At: h.now().UTC()}
	if _, _, err := h.cfg.Ingestor.Ingest(ctx, ev); err != nil {
		return fmt.Errorf("store %s: %w", typ, err)
	}
	if ev.ID != 0 {
		h.metrics.events.WithLabelValues(journey.EventLabel(typ)).Inc()
	}
	return nil
}

// identityOrder is the order a member's identities are preferred in, to
// name them in an event.
var identityOrder = []string{model.IdentityOpenID, model.IdentityMPOpenID, model.IdentityUnionID,
	model.IdentityExternalUserID, model.IdentityUserID, model.IdentityEmail, model.IdentityPhone}

// emailMember returns how to name the member an email token was made for,
// and the delivery when it is still recorded. The delivery's address names
// them when it is one of the member's identities; otherwise one of the
// member's own identities does (so an address shared by two members never
// picks the wrong one); a member merged away since is named by the
// delivery's address, which moved with the merge.
func (h *Handler) emailMember(ctx context.Context, cl email.Claims) (model.MemberRef, *model.Delivery, error) {
	db := h.cfg.DB.WithContext(ctx)
	var ds []model.Delivery
	if err := db.Where("id = ? AND member_id = ?", cl.DeliveryID, cl.MemberID).Limit(1).Find(&ds).Error; err != nil {
		return model.MemberRef{}, nil, fmt.Errorf("load delivery: %w", err)
	}
	var d *model.Delivery
	if len(ds) == 1 {
		d = &ds[0]
	}
	var ids []model.MemberIdentity
	if err := db.Where("member_id = ?", cl.MemberID).Find(&ids).Error; err != nil {
		return model.MemberRef{}, nil, fmt.Errorf("load identities: %w", err)
	}
	if d != nil && d.To != "" {
		for _, id := range ids {
			if id.Kind == model.IdentityEmail && id.Value == strings.ToLower(d.To) {
				return model.MemberRef{Email: d.To}, d, nil
			}
		}
	}
	for _, kind := range identityOrder {
		for _, id := range ids {
			if id.Kind == kind {
				if ref, ok := refOf(id); ok {
					return ref, d, nil
				}
			}
		}
	}
	if d != nil && d.To != "" {
		return model.MemberRef{Email: d.To}, d, nil
	}
	return model.MemberRef{}, nil, errNoEmailMember
}

// refOf is the member reference that names identity id.
func refOf(id model.MemberIdentity) (model.MemberRef, bool) {
	switch id.Kind {
	case model.IdentityOpenID, model.IdentityMPOpenID:
		app, openid, ok := strings.Cut(id.Value, "/")
		if !ok || openid == "" {
			return model.MemberRef{}, false
		}
		if id.Kind == model.IdentityOpenID {
			return model.MemberRef{AppID: app, OpenID: openid}, true
		}
		return model.MemberRef{MPAppID: app, MPOpenID: openid}, true
	case model.IdentityUnionID:
		return model.MemberRef{UnionID: id.Value}, true
	case model.IdentityExternalUserID:
		return model.MemberRef{ExternalUserID: id.Value}, true
	case model.IdentityUserID:
		return model.MemberRef{UserID: id.Value}, true
	case model.IdentityEmail:
		return model.MemberRef{Email: id.Value}, true
	case model.IdentityPhone:
		return model.MemberRef{Phone: id.Value}, true
	}
	return model.MemberRef{}, false
}

// maskedAddress is the delivery's address with most of its local part
// hidden ("l***@example.com"), or "" when it is not known.
func (h *Handler) maskedAddress(ctx context.Context, cl email.Claims) string {
	var d model.Delivery
	if err := h.cfg.DB.WithContext(ctx).Where("id = ? AND member_id = ?", cl.DeliveryID, cl.MemberID).
		Limit(1).Find(&d).Error; err != nil {
		return ""
	}
	local, domain, ok := strings.Cut(d.To, "@")
	if !ok || local == "" {
		return ""
	}
	r := []rune(local)
	return string(r[0]) + "***@" + domain
}

func (h *Handler) logEmail(msg string, err error) {
	if ok, suppressed := h.logs.allow("email-tracking"); ok {
		h.log.Error(msg, "err", err, "suppressed", suppressed)
	}
}

// unsubscribeView is what the unsubscribe page shows.
type unsubscribeView struct {
	Address string // masked
	Done    bool
	Failed  bool
}

func (h *Handler) renderUnsubscribe(c *gin.Context, status int, v unsubscribeView) {
	c.Header("Cache-Control", "no-store, private")
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	c.Header("X-Frame-Options", "DENY")
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := unsubscribeTmpl.Execute(c.Writer, v); err != nil {
		h.log.Error("rendering the unsubscribe page failed", "err", err)
	}
}

var unsubscribeTmpl = template.Must(template.New("unsubscribe").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>退订邮件 · Unsubscribe</title>
<style>body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222;line-height:1.6}
.en{color:#666;font-size:.9rem}button{font-size:1rem;padding:.5rem 1.5rem;margin-top:1rem;cursor:pointer}</style></head><body>
{{if .Done}}
<h1>已退订</h1>
<p>您将不再收到我们的营销邮件。验证码、订单通知等交易类邮件仍会照常发送。</p>
<p class="en">You are unsubscribed: you will get no more marketing email from us. Transactional email (codes, receipts) still arrives.</p>
{{else if .Failed}}
<h1>暂时无法退订</h1>
<p>请稍后再试。</p>
<p class="en">We could not record your unsubscription just now. Please try again in a moment.</p>
<form method="post"><button type="submit">重试 · Try again</button></form>
{{else}}
<h1>退订邮件</h1>
<p>确认后，{{if .Address}}<strong>{{.Address}}</strong> {{end}}将不再收到我们的营销邮件（验证码、订单通知等交易类邮件仍会发送）。</p>
<p class="en">Confirm, and {{if .Address}}<strong>{{.Address}}</strong>{{else}}this address{{end}} will get no more marketing email from us (transactional email such as codes and receipts still arrives).</p>
<form method="post"><input type="hidden" name="confirm" value="1"><button type="submit">确认退订 · Unsubscribe</button></form>
{{end}}
</body></html>
`))
