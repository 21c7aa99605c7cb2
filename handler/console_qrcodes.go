package handler

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/internal/redact"
)

// qrcodeRoutes adds the QR codes page, its forms and the images to the
// console.
func (h *Handler) qrcodeRoutes(console gin.IRoutes) {
	console.GET("/qrcodes", h.qrcodesPage)
	console.POST("/qrcodes", h.createQRForm)
	console.POST("/contact-ways", h.createContactWayForm)
	console.GET("/qrcodes/:id/png", h.qrPNGPage)
	console.GET("/contact-ways/:id/png", h.contactWayPNGPage)
}

// qrcodesPage serves GET /admin/qrcodes.
func (h *Handler) qrcodesPage(c *gin.Context) {
	data := map[string]any{}
	if d := c.Query("done"); d == "qr_created" || d == "way_created" {
		data["Done"] = h.cfg.Admin.catalog.T(h.cfg.Admin.lang(c), "qrcodes_done_"+d, nil)
	}
	h.renderQRCodes(c, http.StatusOK, data)
}

// renderQRCodes writes the QR codes page: the codes and the contact-me
// links, each list with its counts in one grouped query (codes.Service).
func (h *Handler) renderQRCodes(c *gin.Context, status int, data map[string]any) {
	a := h.cfg.Admin
	data["Nav"] = "qrcodes"
	data["CanOperate"] = allowed(currentUser(c).Role, http.MethodPost, "/admin/qrcodes")
	if h.cfg.Codes == nil {
		data["NoCodes"] = true
		a.render(c, status, "qrcodes.html", data)
		return
	}
	ctx := c.Request.Context()
	qrs, err := h.cfg.Codes.ListQR(ctx, "")
	if err != nil {
		h.log.Error("QR codes page: codes", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	ways, err := h.cfg.Codes.ListContactWays(ctx, "")
	if err != nil {
		h.log.Error("QR codes page: contact-me links", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	data["QRCodes"], data["Ways"] = qrs, ways
	a.render(c, status, "qrcodes.html", data)
}

// codeFormError renders the page with the words for a refused create.
func (h *Handler) codeFormError(c *gin.Context, err error) {
	a, l := h.cfg.Admin, h.cfg.Admin.lang(c)
	status, id := http.StatusBadGateway, "qrcodes_err_upstream"
	switch {
	case errors.Is(err, codes.ErrInvalid):
		status, id = http.StatusBadRequest, "qrcodes_err_invalid"
	case errors.Is(err, codes.ErrConflict):
		status, id = http.StatusConflict, "qrcodes_err_conflict"
	case errors.Is(err, codes.ErrUpstream):
	default:
		h.log.Error("QR codes page: create", "err", err)
		status, id = http.StatusInternalServerError, "qrcodes_err_internal"
	}
	msg := a.catalog.T(l, id, nil)
	if status != http.StatusInternalServerError {
		msg += " (" + redact.String(err.Error()) + ")"
	}
	h.renderQRCodes(c, status, map[string]any{"Error": msg})
}

// createQRForm serves POST /admin/qrcodes (label, scene, channel,
// permanent): a QR code of the default Official Account, as POST
// /api/v1/qrcodes; audited.
func (h *Handler) createQRForm(c *gin.Context) {
	if h.cfg.Codes == nil {
		c.Status(http.StatusNotFound)
		return
	}
	req := codes.QRRequest{Label: strings.TrimSpace(c.PostForm("label")), Scene: strings.TrimSpace(c.PostForm("scene")),
		Channel: strings.TrimSpace(c.PostForm("channel")), Permanent: c.PostForm("kind") == "permanent"}
	if req.Scene == "" {
		req.Scene = sceneOf(req.Label)
	}
	code, err := h.cfg.Codes.CreateQR(c.Request.Context(), req)
	if err != nil {
		h.codeFormError(c, err)
		return
	}
	h.audit(c, AuditQRCodeCreate, code.Scene, gin.H{"id": code.ID, "label": code.Label, "kind": code.Kind, "appid": code.AppID})
	c.Redirect(http.StatusSeeOther, "/admin/qrcodes?done=qr_created")
}

// sceneOf makes a scene from a label: its letters, digits, '_' and '-',
// lower-cased, other characters dropped; "" when none is left (the
// service then refuses it, asking for a scene).
func sceneOf(label string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(label) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('_')
		}
	}
	return strings.Trim(b.String(), "_")
}

// createContactWayForm serves POST /admin/contact-ways (label, state,
// users: space or comma separated userids): a contact-me link of the
// default WeCom app, as POST /api/v1/contact-ways; audited.
func (h *Handler) createContactWayForm(c *gin.Context) {
	if h.cfg.Codes == nil {
		c.Status(http.StatusNotFound)
		return
	}
	req := codes.ContactWayRequest{Label: strings.TrimSpace(c.PostForm("label")), State: strings.TrimSpace(c.PostForm("state")),
		Channel: strings.TrimSpace(c.PostForm("channel")),
		Users:   strings.FieldsFunc(c.PostForm("users"), func(r rune) bool { return r == ',' || r == ' ' || r == '，' })}
	if req.State == "" {
		req.State = sceneOf(req.Label)
	}
	way, err := h.cfg.Codes.CreateContactWay(c.Request.Context(), req)
	if err != nil {
		h.codeFormError(c, err)
		return
	}
	h.audit(c, AuditContactWayCreate, way.State, gin.H{"id": way.ID, "label": way.Label, "app": way.AppID})
	c.Redirect(http.StatusSeeOther, "/admin/qrcodes?done=way_created")
}

// qrPNGPage serves GET /admin/qrcodes/{id}/png: the code's image, to
// download.
func (h *Handler) qrPNGPage(c *gin.Context) {
	h.pngPage(c, "qrcode-", func(id int64) ([]byte, error) { return h.cfg.Codes.QRPNG(c.Request.Context(), id) })
}

// contactWayPNGPage serves GET /admin/contact-ways/{id}/png.
func (h *Handler) contactWayPNGPage(c *gin.Context) {
	h.pngPage(c, "contact-me-", func(id int64) ([]byte, error) { return h.cfg.Codes.ContactWayPNG(c.Request.Context(), id) })
}

func (h *Handler) pngPage(c *gin.Context, name string, png func(int64) ([]byte, error)) {
	a := h.cfg.Admin
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || h.cfg.Codes == nil {
		a.renderError(c, http.StatusNotFound, "qrcodes_err_not_found")
		return
	}
	img, err := png(id)
	switch {
	case errors.Is(err, codes.ErrNotFound):
		a.renderError(c, http.StatusNotFound, "qrcodes_err_not_found")
	case err != nil:
		h.log.Error("QR codes page: image", "id", id, "err", err)
		a.renderError(c, http.StatusBadGateway, "qrcodes_err_image")
	default:
		c.Header("Content-Disposition", `attachment; filename="`+name+strconv.FormatInt(id, 10)+`.png"`)
		c.Data(http.StatusOK, "image/png", img)
	}
}
