package handler

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/channels"
)

// ChannelSender sends one message on the channel it names (msg.Channel),
// answering channels.ErrNoSender for a channel nobody serves:
// *channels.Registry is one.
type ChannelSender interface {
	Send(ctx context.Context, msg channels.Message) (channels.Result, error)
}

// testSendTimeout bounds one test send.
const testSendTimeout = 30 * time.Second

// channelRoutes adds the test-send route to the admin API group.
func (h *Handler) channelRoutes(api gin.IRoutes) {
	if h.cfg.Senders == nil {
		return
	}
	api.POST("/channels/:channel/test", h.testSend)
}

// testSend sends one message on a channel outside any journey (POST
// /api/v1/channels/{channel}/test, body channels.TestRequest) and answers
// the provider's word: 200 {"channel", "ok": true, "provider_id",
// "sandbox"}, or 422 {"channel", "ok": false, "class", "code", "error"}.
// An unknown or unserved channel is 404, a body without "to" 400.
func (h *Handler) testSend(c *gin.Context) {
	channel := c.Param("channel")
	if !channels.Known(channel) {
		c.JSON(http.StatusNotFound, gin.H{"error": "unknown channel " + channel})
		return
	}
	var req channels.TestRequest
	if !bindJSON(c, &req) {
		return
	}
	msg, err := req.Message(channel)
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), testSendTimeout)
	defer cancel()
	defer h.audit(c, AuditChannelTest, channel, gin.H{"to": msg.To})
	res, err := h.cfg.Senders.Send(ctx, msg)
	switch {
	case errors.Is(err, channels.ErrNoSender):
		c.JSON(http.StatusNotFound, gin.H{"error": "channel " + channel + " has no sender (" + channels.Setup(channel) + ")"})
	case err != nil:
		f := channels.Describe(err)
		h.log.Info("test send failed", "channel", channel, "class", f.Class, "code", f.Code, "err", f.Error)
		c.JSON(http.StatusUnprocessableEntity, gin.H{"channel": channel, "ok": false, "class": f.Class, "code": f.Code, "error": f.Error})
	default:
		c.JSON(http.StatusOK, gin.H{"channel": channel, "ok": true, "provider_id": res.ProviderID, "sandbox": res.Sandbox})
	}
}
