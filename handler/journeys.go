package handler

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/journey"
)

// JourneyLifecycle publishes, pauses, resumes and archives journeys:
// *journey.Engine is one. Its errors wrap journey.ErrInvalid (a refused
// definition), journey.ErrUnknownJourney and journey.ErrTransition.
type JourneyLifecycle interface {
	PublishSource(ctx context.Context, key, name string, src []byte, origin string) (journey.Status, error)
	Pause(ctx context.Context, key string) (journey.Status, error)
	Resume(ctx context.Context, key string) (journey.Status, error)
	Archive(ctx context.Context, key string) (journey.Status, error)
}

// journeyRoutes adds the lifecycle routes to the admin API group.
func (h *Handler) journeyRoutes(api gin.IRoutes) {
	if h.cfg.Journeys == nil {
		return
	}
	api.POST("/journeys/:key/publish", h.publishJourney)
	for action, call := range map[string]func(context.Context, string) (journey.Status, error){
		"pause":   h.cfg.Journeys.Pause,
		"resume":  h.cfg.Journeys.Resume,
		"archive": h.cfg.Journeys.Archive,
	} {
		api.POST("/journeys/:key/"+action, func(c *gin.Context) {
			st, err := call(c.Request.Context(), c.Param("key"))
			h.journeyAnswer(c, action, st, err)
		})
	}
}

// publishJourney serves POST /api/v1/journeys/{key}/publish: the body is
// the journey's YAML, whose key must be {key}. It answers 200 with the
// journey's status ("published": false when the live version already has
// this source), or 400 {"error", "problems": [...]} with the engine's
// messages, one per problem.
func (h *Handler) publishJourney(c *gin.Context) {
	key := c.Param("key")
	src, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			c.JSON(http.StatusRequestEntityTooLarge, gin.H{"error": "the journey is larger than 1 MiB"})
			return
		}
		c.JSON(http.StatusBadRequest, gin.H{"error": "reading the body: " + err.Error()})
		return
	}
	if len(strings.TrimSpace(string(src))) == 0 {
		c.JSON(http.StatusBadRequest, gin.H{"error": "the body is the journey's YAML; it is empty"})
		return
	}
	st, err := h.cfg.Journeys.PublishSource(c.Request.Context(), key, key+".yaml", src, journey.OriginAPI)
	h.journeyAnswer(c, "publish", st, err)
}

// journeyAnswer answers a lifecycle call: 200 with the status, 400 with
// the problems of a refused definition, 404 for an unknown key, 409 for a
// transition the journey's status does not allow.
func (h *Handler) journeyAnswer(c *gin.Context, action string, st journey.Status, err error) {
	defer h.audit(c, "journey."+action, c.Param("key"), gin.H{"version": st.Version, "journey_status": st.Status})
	switch {
	case err == nil:
		c.JSON(http.StatusOK, st)
	case errors.Is(err, journey.ErrInvalid):
		c.JSON(http.StatusBadRequest, gin.H{"error": journey.ErrInvalid.Error(), "problems": invalidProblems(err)})
	case errors.Is(err, journey.ErrUnknownJourney):
		c.JSON(http.StatusNotFound, gin.H{"error": "no journey with key " + c.Param("key")})
	case errors.Is(err, journey.ErrTransition):
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, journey.ErrTransition.Error()+": "); ok {
			msg = rest
		}
		c.JSON(http.StatusConflict, gin.H{"error": msg})
	default:
		h.log.Error("journey "+action+" failed", "journey", c.Param("key"), "err", err)
		c.JSON(http.StatusInternalServerError, gin.H{"error": "database error"})
	}
}

// invalidProblems are the problems of a refused definition (an error
// wrapping journey.ErrInvalid), one a line as the engine wrote them.
func invalidProblems(err error) []string {
	var problems []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), journey.ErrInvalid.Error()+": ")
		if line != "" && line != journey.ErrInvalid.Error()+":" {
			problems = append(problems, line)
		}
	}
	return problems
}
