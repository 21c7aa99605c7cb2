package handler

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/internal/redact"
)

// CodeService makes and lists QR codes and contact-me links: *codes.Service
// is one. Its errors wrap codes.ErrInvalid (400), codes.ErrConflict (409),
// codes.ErrNotFound (404) or codes.ErrUpstream (502, with the platform's
// errcode when it answered one).
type CodeService interface {
	CreateQR(ctx context.Context, req codes.QRRequest) (codes.QRCode, error)
	ListQR(ctx context.Context, appid string) ([]codes.QRCode, error)
	GetQR(ctx context.Context, id int64) (codes.QRCode, error)
	QRPNG(ctx context.Context, id int64) ([]byte, error)
	CreateContactWay(ctx context.Context, req codes.ContactWayRequest) (codes.ContactWay, error)
	ListContactWays(ctx context.Context, app string) ([]codes.ContactWay, error)
	GetContactWay(ctx context.Context, id int64) (codes.ContactWay, error)
	ContactWayPNG(ctx context.Context, id int64) ([]byte, error)
}

// codeRoutes adds the QR code and contact-me routes to the admin API group.
func (h *Handler) codeRoutes(api gin.IRoutes) {
	if h.cfg.Codes == nil {
		return
	}
	api.POST("/qrcodes", h.createQR)
	api.GET("/qrcodes", h.listQR)
	api.GET("/qrcodes/:id", h.getQR)
	api.GET("/qrcodes/:id/png", h.qrPNG)
	api.POST("/contact-ways", h.createContactWay)
	api.GET("/contact-ways", h.listContactWays)
	api.GET("/contact-ways/:id", h.getContactWay)
	api.GET("/contact-ways/:id/png", h.contactWayPNG)
}

// codeError answers err with its status: 400, 409, 404, 502 (with
// "errcode" when the platform answered one) or 500.
func (h *Handler) codeError(c *gin.Context, err error) {
	msg := redact.String(err.Error())
	switch {
	case errors.Is(err, codes.ErrInvalid):
		c.JSON(http.StatusBadRequest, gin.H{"error": msg})
	case errors.Is(err, codes.ErrConflict):
		c.JSON(http.StatusConflict, gin.H{"error": msg})
	case errors.Is(err, codes.ErrNotFound):
		c.JSON(http.StatusNotFound, gin.H{"error": msg})
	case errors.Is(err, codes.ErrUpstream):
		body := gin.H{"error": msg}
		var ce *channels.Error
		if errors.As(err, &ce) {
			body["errcode"] = ce.Code
			body["errmsg"] = ce.Msg
		}
		c.JSON(http.StatusBadGateway, body)
	default:
		h.log.Error("codes API", "path", c.FullPath(), "err", err)
		c.JSON(http.StatusInternalServerError, gin.H{"error": "internal error: see the server log"})
	}
}

// codeID reads the :id parameter, answering 404 when it is not a number.
func (h *Handler) codeID(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		c.JSON(http.StatusNotFound, gin.H{"error": "no such id: " + strconv.Quote(c.Param("id"))})
		return 0, false
	}
	return id, true
}

// bindJSON decodes the request body into v, answering 400 when it cannot.
func bindJSON(c *gin.Context, v any) bool {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBody)
	if err := c.ShouldBindJSON(v); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "invalid JSON body: " + err.Error()})
		return false
	}
	return true
}

func (h *Handler) createQR(c *gin.Context) {
	var req codes.QRRequest
	if !bindJSON(c, &req) {
		return
	}
	code, err := h.cfg.Codes.CreateQR(c.Request.Context(), req)
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, code)
}

func (h *Handler) listQR(c *gin.Context) {
	list, err := h.cfg.Codes.ListQR(c.Request.Context(), c.Query("appid"))
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"qrcodes": list})
}

func (h *Handler) getQR(c *gin.Context) {
	id, ok := h.codeID(c)
	if !ok {
		return
	}
	code, err := h.cfg.Codes.GetQR(c.Request.Context(), id)
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.JSON(http.StatusOK, code)
}

func (h *Handler) qrPNG(c *gin.Context) {
	id, ok := h.codeID(c)
	if !ok {
		return
	}
	img, err := h.cfg.Codes.QRPNG(c.Request.Context(), id)
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.Data(http.StatusOK, "image/png", img)
}

func (h *Handler) createContactWay(c *gin.Context) {
	var req codes.ContactWayRequest
	if !bindJSON(c, &req) {
		return
	}
	way, err := h.cfg.Codes.CreateContactWay(c.Request.Context(), req)
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, way)
}

func (h *Handler) listContactWays(c *gin.Context) {
	list, err := h.cfg.Codes.ListContactWays(c.Request.Context(), c.Query("app"))
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"contact_ways": list})
}

func (h *Handler) getContactWay(c *gin.Context) {
	id, ok := h.codeID(c)
	if !ok {
		return
	}
	way, err := h.cfg.Codes.GetContactWay(c.Request.Context(), id)
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.JSON(http.StatusOK, way)
}

func (h *Handler) contactWayPNG(c *gin.Context) {
	id, ok := h.codeID(c)
	if !ok {
		return
	}
	img, err := h.cfg.Codes.ContactWayPNG(c.Request.Context(), id)
	if err != nil {
		h.codeError(c, err)
		return
	}
	c.Data(http.StatusOK, "image/png", img)
}
