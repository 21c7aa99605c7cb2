package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// JourneyTester parses journeys and walks them for one member, sending
// only to a tester when asked to: *journey.Engine is one.
type JourneyTester interface {
	Parse(name string, src []byte) (*journey.Compiled, error)
	TestRun(ctx context.Context, c *journey.Compiled, version int, m *model.Member, opts journey.TestRunOptions) (*journey.TestRun, error)
}

// testRunRequest is the body of POST /api/v1/journeys/{key}/test.
type testRunRequest struct {
	// MemberID or Member (any one identity) names the member.
	MemberID int64 `json:"member_id"`
	Member   struct {
		OpenID         string `json:"openid"`
		UnionID        string `json:"unionid"`
		ExternalUserID string `json:"external_userid"`
		Phone          string `json:"phone"`
		Email          string `json:"email"`
	} `json:"member"`
	// Event enters the member; Events happen while the member waits.
	Event  *testRunEvent  `json:"event"`
	Events []testRunEvent `json:"events"`
	// YAML tests this source (a draft) instead of the published version.
	YAML string `json:"yaml"`
	// Send delivers the rendered messages to the member for real; the
	// member must be a tester (model.TesterTag), else 403.
	Send bool `json:"send"`
}

type testRunEvent struct {
	Type  string         `json:"type"`
	Props map[string]any `json:"props"`
	At    time.Time      `json:"at"`
}

func (e testRunEvent) model() *model.Event {
	props := e.Props
	if props == nil {
		props = map[string]any{}
	}
	return &model.Event{Type: e.Type, Props: props, At: e.At}
}

// journeyTestRoutes adds the test-run route to the admin API group.
func (h *Handler) journeyTestRoutes(api gin.IRoutes) {
	if h.cfg.TestRuns == nil {
		return
	}
	api.POST("/journeys/:key/test", h.testJourney)
}

// testJourney walks the journey for one member and answers the path and
// each rendered message (journey.TestRun); nothing is written. With "send":
// true the messages are delivered to the member, a tester (403 for anyone
// else), and each step answers what its channel said.
func (h *Handler) testJourney(c *gin.Context) {
	var req testRunRequest
	if err := c.ShouldBindJSON(&req); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "want JSON: {\"member_id\": 1} or {\"member\": {\"openid\": …}}, \"event\": {\"type\": …, \"props\": {…}}, \"events\": […]: " + err.Error()})
		return
	}
	key := c.Param("key")
	run, m, status, err := h.runTest(c.Request.Context(), key, req)
	if err != nil {
		c.JSON(status, gin.H{"error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, run)
	h.audit(c, AuditJourneyTest, key, gin.H{"member_id": m.ID, "draft": req.YAML != ""})
}

// errTestNotTester is a test run asked to send to a member who is not a
// tester (it wraps journey.ErrNotTester).
type errTestNotTester struct {
	err    error
	member int64
}

func (e *errTestNotTester) Error() string {
	return fmt.Sprintf("%v; mark them as a tester with POST /api/v1/members/%d/tester, or test without \"send\"", e.err, e.member)
}

func (e *errTestNotTester) Unwrap() error { return e.err }

// runTest walks journey key for the member req names (its published
// version, or req.YAML), as POST /api/v1/journeys/{key}/test and the
// console's test page do. On failure it returns the HTTP status that
// answers the error.
func (h *Handler) runTest(ctx context.Context, key string, req testRunRequest) (*journey.TestRun, *model.Member, int, error) {
	db := h.cfg.DB.WithContext(ctx)
	src, version := req.YAML, 0
	if src == "" {
		var j model.Journey
		err := db.Where(&model.Journey{Key: key}).First(&j).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			return nil, nil, http.StatusNotFound, fmt.Errorf("no journey %q", key)
		case err != nil:
			return nil, nil, http.StatusServiceUnavailable, fmt.Errorf("database: %w", err)
		}
		var v model.JourneyVersion
		if err := db.First(&v, j.CurrentVersionID).Error; err != nil {
			return nil, nil, http.StatusServiceUnavailable, fmt.Errorf("database: %w", err)
		}
		src, version = v.Source, v.Version
	}
	compiled, err := h.cfg.TestRuns.Parse(key+".yaml", []byte(src))
	if err != nil {
		return nil, nil, http.StatusBadRequest, err
	}
	if req.YAML != "" && compiled.Def.Key != key {
		return nil, nil, http.StatusBadRequest, fmt.Errorf("the YAML is journey %q, not %q", compiled.Def.Key, key)
	}
	m, err := h.testMember(db, req)
	if err != nil {
		return nil, nil, http.StatusNotFound, err
	}
	opts := journey.TestRunOptions{Send: req.Send}
	if req.Event != nil {
		opts.Event = req.Event.model()
	}
	for _, e := range req.Events {
		opts.Later = append(opts.Later, e.model())
	}
	if req.Send {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, testSendTimeout)
		defer cancel()
	}
	run, err := h.cfg.TestRuns.TestRun(ctx, compiled, version, m, opts)
	if errors.Is(err, journey.ErrNotTester) {
		return nil, m, http.StatusForbidden, &errTestNotTester{err, m.ID}
	}
	if err != nil {
		return nil, m, http.StatusServiceUnavailable, err
	}
	return run, m, http.StatusOK, nil
}

// journeyByKey loads the journey key names; when there is none (404) or
// the database fails (503) it answers and reports false.
func journeyByKey(c *gin.Context, db *gorm.DB, key string) (model.Journey, bool) {
	var j model.Journey
	err := db.Where(&model.Journey{Key: key}).First(&j).Error
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		c.JSON(http.StatusNotFound, gin.H{"error": fmt.Sprintf("no journey %q", key)})
		return j, false
	case err != nil:
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database: " + err.Error()})
		return j, false
	}
	return j, true
}

// testMember finds the member a test run names.
func (h *Handler) testMember(db *gorm.DB, req testRunRequest) (*model.Member, error) {
	var m model.Member
	q := db
	switch r := req.Member; {
	case req.MemberID != 0:
		q = q.Where("id = ?", req.MemberID)
	case r.OpenID != "":
		q = q.Where("open_id = ?", r.OpenID)
	case r.UnionID != "":
		q = q.Where("union_id = ?", r.UnionID)
	case r.ExternalUserID != "":
		q = q.Where("external_user_id = ?", r.ExternalUserID)
	case r.Phone != "":
		q = q.Where("phone = ?", r.Phone)
	case r.Email != "":
		q = q.Where("email = ?", r.Email)
	default:
		return nil, errors.New("name the member: member_id, or member with openid, unionid, external_userid, phone or email")
	}
	if err := q.First(&m).Error; err != nil {
		return nil, fmt.Errorf("no such member: %w", err)
	}
	return &m, nil
}
