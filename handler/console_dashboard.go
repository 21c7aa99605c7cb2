package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/model"
)

// dashboardFollows is one row of the dashboard's follows: a scene's
// follows and unfollows today and in the last 7 days (China dates). An
// unfollow counts under the scene the member first followed from.
type dashboardFollows struct {
	Scene                                                    string
	FollowsToday, UnfollowsToday, FollowsWeek, UnfollowsWeek int64
}

// dashboardJourney is one journey's entries today and in the last 7 days.
type dashboardJourney struct {
	ID                int64
	Key, Name, Status string
	Today, Week       int64
}

// dashboardChannel is one channel's messages sent (sent or sandbox) and
// failed (failed or unknown) today and in the last 7 days.
type dashboardChannel struct {
	Channel                                      string
	SentToday, FailedToday, SentWeek, FailedWeek int64
}

// dashboardFailure is one failure reason of the last 7 days, in words.
type dashboardFailure struct {
	Channel string
	Code    int
	Words   string
	N       int64
}

// dashboardEvent is one recent event.
type dashboardEvent struct {
	ID     int64
	At     time.Time
	Type   string
	Member string
	Scene  string
}

// dashboardRecentDeliveries is how many deliveries the dashboard lists.
const dashboardRecentDeliveries = 10

// tomorrow is the start of the China day after the one that starts at
// today: the upper end of the dashboard's ranges.
func tomorrow(today time.Time) time.Time { return today.Add(24 * time.Hour) }

// dashboardDays is the dashboard's day boundaries: the start of today and
// of the last 7 days (today included), China dates, in UTC.
func dashboardDays(now time.Time) (today, week time.Time) {
	l := now.In(chinaTime)
	today = time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, chinaTime)
	return today.UTC(), today.AddDate(0, 0, -6).UTC()
}

// dashboard serves /admin/: today and the last 7 days at a glance: follows
// by scene, journeys entered, messages by channel, the top failure reasons
// in words, the recent events and deliveries. One query a block.
func (a *Admin) dashboard(c *gin.Context) {
	ctx, l := c.Request.Context(), a.lang(c)
	today, week := dashboardDays(a.cfg.Now())
	data := map[string]any{"Nav": "dashboard", "Sandbox": a.cfg.Sandbox, "Today": today, "Week": week}
	// The blocks are read side by side: on PostgreSQL and MySQL each
	// takes a connection of its own (SQLite's one connection serves them in
	// turn).
	var (
		follows    []dashboardFollows
		journeys   []dashboardJourney
		chans      []dashboardChannel
		failures   []dashboardFailure
		events     []dashboardEvent
		deliveries []DeliveryRow
	)
	errs := make([]error, 6)
	var wg sync.WaitGroup
	for i, read := range []func() error{
		func() (err error) { follows, err = a.dashboardFollows(ctx, today, week); return err },
		func() (err error) { journeys, err = a.dashboardJourneys(ctx, today, week); return err },
		func() (err error) { chans, err = a.dashboardChannels(ctx, today, week); return err },
		func() (err error) { failures, err = a.dashboardFailures(ctx, l, today, week); return err },
		func() (err error) { events, err = a.dashboardEvents(ctx); return err },
		func() (err error) { deliveries, err = a.deliveries(c, dashboardRecentDeliveries); return err },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = read()
		}()
	}
	wg.Wait()
	data["Follows"], data["Journeys"], data["Channels"] = follows, journeys, chans
	data["Failures"], data["Events"], data["Deliveries"] = failures, events, deliveries
	err := errors.Join(errs...)
	if err != nil {
		a.log.Error("reading the dashboard", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	a.render(c, http.StatusOK, "admin.html", data)
}

// dashboardFollows counts follows and unfollows by scene, from the
// follows' partial index (idx_events_follows): the types are literals, in
// the index's own words (SQLite uses a partial index only for a query
// whose WHERE repeats the index's), and the time range has both ends
// (SQLite then prefers the range to a scan in GROUP BY order).
func (a *Admin) dashboardFollows(ctx context.Context, today, week time.Time) ([]dashboardFollows, error) {
	var rows []struct {
		Scene string
		Type  string
		Today int64
		Week  int64
	}
	err := a.cfg.DB.WithContext(ctx).Table("events AS e").
		Select("CASE WHEN e.type = 'wechat.subscribe' THEN e.scene "+
			"ELSE COALESCE((SELECT m.first_scene FROM members AS m WHERE m.id = e.member_id), '') END AS scene, e.type AS type, "+
			"SUM(CASE WHEN e.at >= ? THEN 1 ELSE 0 END) AS today, COUNT(*) AS week", today).
		Where("(e.type = 'wechat.subscribe' OR e.type = 'wechat.unsubscribe') AND e.at >= ? AND e.at < ?", week, tomorrow(today)).
		Group("1, 2").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("count follows: %w", err)
	}
	by := map[string]*dashboardFollows{}
	var out []*dashboardFollows
	for _, r := range rows {
		f := by[r.Scene]
		if f == nil {
			f = &dashboardFollows{Scene: r.Scene}
			by[r.Scene] = f
			out = append(out, f)
		}
		if r.Type == "wechat.subscribe" {
			f.FollowsToday, f.FollowsWeek = r.Today, r.Week
		} else {
			f.UnfollowsToday, f.UnfollowsWeek = r.Today, r.Week
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].FollowsWeek != out[j].FollowsWeek {
			return out[i].FollowsWeek > out[j].FollowsWeek
		}
		return out[i].Scene < out[j].Scene
	})
	res := make([]dashboardFollows, len(out))
	for i, f := range out {
		res[i] = *f
	}
	return res, nil
}

// dashboardJourneys counts the entries of every journey not archived,
// today and in the last 7 days, by entry day (idx_enrollments_stats).
func (a *Admin) dashboardJourneys(ctx context.Context, today, week time.Time) ([]dashboardJourney, error) {
	db := a.cfg.DB.WithContext(ctx)
	var js []model.Journey
	if err := db.Select("id", "key", "name", "status").Where("status <> ?", model.JourneyArchived).Order("id").Find(&js).Error; err != nil {
		return nil, fmt.Errorf("list journeys: %w", err)
	}
	if len(js) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(js))
	for i, j := range js {
		ids[i] = j.ID
	}
	var counts []struct {
		JourneyID int64
		Today     int64
		Week      int64
	}
	if err := db.Model(&model.Enrollment{}).
		Select("journey_id, SUM(CASE WHEN entered_day >= ? THEN 1 ELSE 0 END) AS today, COUNT(*) AS week", model.EntryDay(today)).
		Where("journey_id IN ? AND status IN ? AND entered_day >= ?", ids, enrollmentStatuses, model.EntryDay(week)).
		Group("journey_id").Scan(&counts).Error; err != nil {
		return nil, fmt.Errorf("count entries: %w", err)
	}
	by := map[int64]int{}
	out := make([]dashboardJourney, len(js))
	for i, j := range js {
		out[i] = dashboardJourney{ID: j.ID, Key: j.Key, Name: j.Name, Status: j.Status}
		by[j.ID] = i
	}
	for _, ct := range counts {
		if i, ok := by[ct.JourneyID]; ok {
			out[i].Today, out[i].Week = ct.Today, ct.Week
		}
	}
	return out, nil
}

// enrollmentStatuses are every enrollment status: the entries' count names
// them all, so that it reads idx_enrollments_stats (journey_id, status,
// entered_day) as a range a status.
var enrollmentStatuses = []string{model.EnrollmentActive, model.EnrollmentCompleted, model.EnrollmentGoal,
	model.EnrollmentExited, model.EnrollmentFailed}

// dashboardChannels counts the messages of the last 7 days by channel
// and status (idx_deliveries_created, a range with both ends).
func (a *Admin) dashboardChannels(ctx context.Context, today, week time.Time) ([]dashboardChannel, error) {
	var rows []struct {
		Channel string
		Status  string
		Today   int64
		Week    int64
	}
	if err := a.cfg.DB.WithContext(ctx).Model(&model.Delivery{}).
		Select("channel, status, SUM(CASE WHEN created_at >= ? THEN 1 ELSE 0 END) AS today, COUNT(*) AS week", today).
		Where("created_at >= ? AND created_at < ?", week, tomorrow(today)).Group("channel, status").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	by := map[string]*dashboardChannel{}
	var names []string
	for _, r := range rows {
		ch := by[r.Channel]
		if ch == nil {
			ch = &dashboardChannel{Channel: r.Channel}
			by[r.Channel] = ch
			names = append(names, r.Channel)
		}
		switch r.Status {
		case model.DeliverySent, model.DeliverySandbox:
			ch.SentToday += r.Today
			ch.SentWeek += r.Week
		case model.DeliveryFailed, model.DeliveryUnknown:
			ch.FailedToday += r.Today
			ch.FailedWeek += r.Week
		}
	}
	sort.Strings(names)
	out := make([]dashboardChannel, len(names))
	for i, n := range names {
		out[i] = *by[n]
	}
	return out, nil
}

// dashboardFailureReasons is how many failure reasons the dashboard lists.
const dashboardFailureReasons = 10

// dashboardFailures groups the failed deliveries of the last 7 days by
// channel and error code, most frequent first, in words.
func (a *Admin) dashboardFailures(ctx context.Context, lang string, today, week time.Time) ([]dashboardFailure, error) {
	var rows []struct {
		Channel   string
		ErrorCode int
		N         int64
		Sample    string
	}
	if err := a.cfg.DB.WithContext(ctx).Model(&model.Delivery{}).
		Select("channel, error_code, COUNT(*) AS n, MAX(error) AS sample").
		Where("status = ? AND created_at >= ? AND created_at < ?", model.DeliveryFailed, week, tomorrow(today)).
		Group("channel, error_code").Order("n DESC, channel, error_code").Limit(dashboardFailureReasons).
		Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("count failures: %w", err)
	}
	out := make([]dashboardFailure, len(rows))
	for i, r := range rows {
		out[i] = dashboardFailure{Channel: r.Channel, Code: r.ErrorCode, N: r.N,
			Words: a.reasonWords(lang, r.Channel, r.ErrorCode, r.Sample)}
	}
	return out, nil
}

// dashboardEventCount is how many recent events the dashboard lists.
const dashboardEventCount = 20

// dashboardEvents reads the last events received, newest first.
func (a *Admin) dashboardEvents(ctx context.Context) ([]dashboardEvent, error) {
	var es []model.Event
	if err := a.cfg.DB.WithContext(ctx).Select("id", "type", "member_key", "scene", "at").
		Order("id DESC").Limit(dashboardEventCount).Find(&es).Error; err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	out := make([]dashboardEvent, len(es))
	for i, e := range es {
		out[i] = dashboardEvent{ID: e.ID, At: e.At, Type: e.Type, Member: e.MemberKey, Scene: e.Scene}
	}
	return out, nil
}
