package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/model"
)

// memberRoutes adds the member routes to the admin API group: marking
// and unmarking testers.
func (h *Handler) memberRoutes(api gin.IRoutes) {
	api.POST("/members/:id/tester", h.setTester)
	api.DELETE("/members/:id/tester", h.setTester)
}

// errMerged is returned by markTester for a member merged into another.
var errMerged = errors.New("merged")

// setTester marks the member a tester (POST /api/v1/members/{id}/tester)
// or no longer one (DELETE): it adds or removes the reserved tag
// model.TesterTag. 200 {"member_id", "tester", "tags"}; 404 for an unknown
// member, 409 for one merged into another (mark that one).
func (h *Handler) setTester(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		c.JSON(http.StatusBadRequest, gin.H{"error": "the member id is a number: " + c.Param("id")})
		return
	}
	on := c.Request.Method == http.MethodPost
	m, err := markTester(c.Request.Context(), h.cfg.DB, id, on, h.now())
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		c.JSON(http.StatusNotFound, gin.H{"error": fmt.Sprintf("no member %d", id)})
		return
	case errors.Is(err, errMerged):
		c.JSON(http.StatusConflict, gin.H{"error": fmt.Sprintf("member %d was merged into member %d: mark that one", id, *m.MergedInto)})
		return
	case err != nil:
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "database: " + err.Error()})
		return
	}
	h.log.Info("member tester mark", "member", id, "tester", on)
	tags := m.Tags
	if tags == nil {
		tags = []string{}
	}
	c.JSON(http.StatusOK, gin.H{"member_id": id, "tester": on, "tags": tags})
}

// markTester adds (on) or removes the tag model.TesterTag of member id at
// now, and returns the member's id, tags and merged_into. An unknown member
// is gorm.ErrRecordNotFound; one merged into another errMerged.
func markTester(ctx context.Context, db *gorm.DB, id int64, on bool, now time.Time) (model.Member, error) {
	var m model.Member
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate}).Select("id", "tags", "merged_into").First(&m, id).Error; err != nil {
			return err
		}
		if m.MergedInto != nil {
			return errMerged
		}
		if m.IsTester() == on {
			return nil
		}
		if on {
			m.Tags = append(m.Tags, model.TesterTag)
		} else {
			m.Tags = slices.DeleteFunc(m.Tags, func(t string) bool { return t == model.TesterTag })
		}
		// updated_at too: a segment trigger reading the tag sees the change.
		return tx.Model(&m).Select("tags", "updated_at").Updates(&model.Member{Tags: m.Tags, UpdatedAt: now}).Error
	})
	return m, err
}
