package handler

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// AuditDeliveryRetry is the audit action of a delivery retried by hand
// from the console's Deliveries page.
const AuditDeliveryRetry = "delivery.retry"

// DeliveryRetrier sends a failed delivery again where that is safe: the
// journey engine (*journey.Engine) is one. Config.Journeys serves it when
// it has the method.
type DeliveryRetrier interface {
	RetryDelivery(ctx context.Context, id int64) (model.Delivery, error)
}

// retrierOf is the DeliveryRetrier of a JourneyLifecycle, or nil.
func retrierOf(j JourneyLifecycle) DeliveryRetrier {
	r, _ := j.(DeliveryRetrier)
	return r
}

// deliveriesPageSize is how many deliveries the Deliveries page shows at
// once.
const deliveriesPageSize = 50

// deliveryFilter is the Deliveries page's query: ?channel= &status=
// &journey= (key) &member= (openid or member id) &from= &to= (China time,
// a date or a datetime-local value) &before= (id, the keyset of "older").
type deliveryFilter struct {
	Channel, Status, Journey, Member, From, To string
	Before                                     int64
}

// values is the filter as a query string's values (without before).
func (f deliveryFilter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"channel": f.Channel, "status": f.Status, "journey": f.Journey,
		"member": f.Member, "from": f.From, "to": f.To} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// consoleTime reads a China time as a form writes it: "2026-11-24",
// "2026-11-24T08:00" or "2026-11-24 08:00:05". A date alone is its
// midnight; with end, a date alone is the next midnight (to is inclusive).
func consoleTime(s string, end bool) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, chinaTime); err == nil {
			return t, nil
		}
	}
	t, err := time.ParseInLocation("2006-01-02", s, chinaTime)
	if err != nil {
		return time.Time{}, err
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// deliveryView is one row of the Deliveries page.
type deliveryView struct {
	ID         int64
	At         time.Time
	Journey    string
	JourneyKey string
	Step       string
	MemberID   int64
	To         string
	Channel    string
	Status     string
	// Answer is the channel's answer in words (failures), or "".
	Answer string
	// Raw is the recorded error (secrets masked), shown beside the words.
	Raw string
	// Fallback says what the step did instead, or "".
	Fallback string
	// Retry: the delivery may be retried by hand (and the user may).
	Retry bool
}

// deliveryErrors are the messages of a refused retry (?error=).
var deliveryErrors = map[string]string{"refused": "deliveries_retry_refused", "no_delivery": "deliveries_no_delivery"}

// deliveriesPage serves GET /admin/deliveries.
func (a *Admin) deliveriesPage(r DeliveryRetrier) gin.HandlerFunc {
	return func(c *gin.Context) {
		l := a.lang(c)
		data := map[string]any{"Nav": "deliveries", "Channels": consoleChannels, "Statuses": deliveryStatuses}
		switch d, st := c.Query("done"), c.Query("st"); {
		case d == "sent":
			data["Done"] = a.catalog.T(l, "deliveries_retried_sent", nil)
		case d == "status" && slices.Contains(deliveryStatuses, st):
			data["Done"] = a.catalog.T(l, "deliveries_retried_status", map[string]any{"Status": a.catalog.T(l, "deliveries_status_"+st, nil)})
		}
		if id, ok := deliveryErrors[c.Query("error")]; ok {
			data["Error"] = a.catalog.T(l, id, nil)
		}
		a.renderDeliveries(c, r, data)
	}
}

func (a *Admin) renderDeliveries(c *gin.Context, r DeliveryRetrier, data map[string]any) {
	l := a.lang(c)
	f := deliveryFilter{Channel: c.Query("channel"), Status: c.Query("status"), Journey: strings.TrimSpace(c.Query("journey")),
		Member: strings.TrimSpace(c.Query("member")), From: c.Query("from"), To: c.Query("to")}
	f.Before, _ = strconv.ParseInt(c.Query("before"), 10, 64)
	data["Filter"] = f
	rows, err := a.listDeliveryViews(c.Request.Context(), f, l)
	if errors.Is(err, errBadTime) {
		data["Error"] = a.catalog.T(l, "deliveries_bad_time", nil)
		err, rows = nil, nil
	}
	if err != nil {
		a.log.Error("listing deliveries", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	canRetry := r != nil && allowed(currentUser(c).Role, http.MethodPost, "/admin/deliveries/:id/retry")
	for i := range rows {
		rows[i].Retry = rows[i].Retry && canRetry
	}
	data["Rows"] = rows
	if len(rows) == deliveriesPageSize {
		v := f.values()
		v.Set("before", strconv.FormatInt(rows[len(rows)-1].ID, 10))
		data["Older"] = "/admin/deliveries?" + v.Encode()
	}
	back := f.values()
	if f.Before > 0 {
		back.Set("before", strconv.FormatInt(f.Before, 10))
	}
	data["Back"] = "/admin/deliveries?" + back.Encode()
	if f.Before > 0 {
		data["Newest"] = "/admin/deliveries?" + f.values().Encode()
	}
	a.render(c, http.StatusOK, "deliveries.html", data)
}

// errBadTime is a from or to the page cannot read.
var errBadTime = errors.New("bad time")

// errNoMatch is a filter that names no journey or member: nothing matches.
var errNoMatch = errors.New("no match")

// deliveryQuery is the filter as a query on deliveries, newest first.
func (a *Admin) deliveryQuery(ctx context.Context, f deliveryFilter) (*gorm.DB, error) {
	db := a.cfg.DB.WithContext(ctx)
	q := db.Model(&model.Delivery{})
	if f.Channel != "" {
		q = q.Where("channel = ?", f.Channel)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.Journey != "" {
		var ids []int64
		if err := db.Model(&model.Journey{}).Where(&model.Journey{Key: f.Journey}).Pluck("id", &ids).Error; err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, errNoMatch
		}
		q = q.Where("journey_id = ?", ids[0])
	}
	if f.Member != "" {
		ids, err := a.memberIDs(db, f.Member)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, errNoMatch
		}
		q = q.Where("member_id IN ?", ids)
	}
	if f.From != "" {
		t, err := consoleTime(f.From, false)
		if err != nil {
			return nil, errBadTime
		}
		q = q.Where("created_at >= ?", t.UTC())
	}
	if f.To != "" {
		t, err := consoleTime(f.To, true)
		if err != nil {
			return nil, errBadTime
		}
		q = q.Where("created_at < ?", t.UTC())
	}
	if f.Before > 0 {
		q = q.Where("id < ?", f.Before)
	}
	return q.Order("id DESC"), nil
}

// memberIDs are the members a filter's member names: by member id, or by
// an identity from member_identities' primary key: an openid of one of the
// accounts (or "appid/openid"), a unionid, an external_userid, a phone or
// an email.
func (a *Admin) memberIDs(db *gorm.DB, v string) ([]int64, error) {
	var ids []int64
	if id, err := strconv.ParseInt(v, 10, 64); err == nil && id > 0 {
		ids = append(ids, id)
	}
	var appids []string
	if err := db.Model(&model.Account{}).Limit(200).Pluck("app_id", &appids).Error; err != nil {
		return nil, err
	}
	openids := []string{v}
	for _, app := range appids {
		openids = append(openids, app+"/"+v)
	}
	var found []int64
	if err := db.Model(&model.MemberIdentity{}).
		Where("(kind = ? AND value IN ?) OR (kind IN ? AND value = ?)", model.IdentityOpenID, openids,
			[]string{model.IdentityUnionID, model.IdentityExternalUserID, model.IdentityPhone, model.IdentityEmail}, v).
		Limit(50).Pluck("member_id", &found).Error; err != nil {
		return nil, err
	}
	return append(ids, found...), nil
}

// listDeliveryViews reads one page of deliveries and what the page shows
// beside them: the journeys, the steps and what the steps did, and for the
// failures that may be retried, their enrollments. One query each.
func (a *Admin) listDeliveryViews(ctx context.Context, f deliveryFilter, lang string) ([]deliveryView, error) {
	q, err := a.deliveryQuery(ctx, f)
	if errors.Is(err, errNoMatch) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ds []model.Delivery
	if err := q.Select("id", "step_visit_id", "channel", "enrollment_id", "journey_id", "member_id", "to", "status",
		"error_code", "error", "created_at").Limit(deliveriesPageSize).Find(&ds).Error; err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, nil
	}
	db := a.cfg.DB.WithContext(ctx)
	journeyIDs, visitIDs, retryEnr := map[int64]bool{}, map[int64]bool{}, map[int64]bool{}
	for _, d := range ds {
		journeyIDs[d.JourneyID], visitIDs[d.StepVisitID] = true, true
		if d.Status == model.DeliveryFailed && channels.Reason(d.Channel, d.ErrorCode, d.Error).Retryable() {
			retryEnr[d.EnrollmentID] = true
		}
	}
	var js []model.Journey
	if err := db.Select("id", "key", "name", "status").Where("id IN ?", keys(journeyIDs)).Find(&js).Error; err != nil {
		return nil, err
	}
	journeys := map[int64]model.Journey{}
	for _, j := range js {
		journeys[j.ID] = j
	}
	var vs []model.StepVisit
	if err := db.Select("id", "enrollment_id", "seq", "step_id", "status", "outcome").Where("id IN ?", keys(visitIDs)).Find(&vs).Error; err != nil {
		return nil, err
	}
	visits := map[int64]model.StepVisit{}
	for _, v := range vs {
		visits[v.ID] = v
	}
	enrs, lastSeq := map[int64]model.Enrollment{}, map[int64]int{}
	if len(retryEnr) > 0 {
		ids := keys(retryEnr)
		var es []model.Enrollment
		if err := db.Select("id", "journey_id", "member_id", "status", "step_id", "end_reason").Where("id IN ?", ids).Find(&es).Error; err != nil {
			return nil, err
		}
		for _, e := range es {
			enrs[e.ID] = e
		}
		var seqs []struct {
			EnrollmentID int64
			Last         int
		}
		if err := db.Model(&model.StepVisit{}).Select("enrollment_id, MAX(seq) AS last").Where("enrollment_id IN ?", ids).
			Group("enrollment_id").Scan(&seqs).Error; err != nil {
			return nil, err
		}
		for _, s := range seqs {
			lastSeq[s.EnrollmentID] = s.Last
		}
	}
	rows := make([]deliveryView, 0, len(ds))
	for _, d := range ds {
		j, v := journeys[d.JourneyID], visits[d.StepVisitID]
		row := deliveryView{ID: d.ID, At: d.CreatedAt, Journey: j.Name, JourneyKey: j.Key, Step: v.StepID, MemberID: d.MemberID,
			To: d.To, Channel: d.Channel, Status: d.Status}
		row.Answer, row.Raw = a.answer(lang, d)
		row.Fallback = a.fallback(lang, d, v)
		if enr, ok := enrs[d.EnrollmentID]; ok {
			row.Retry = journey.RetrySafe(journey.RetryState{Delivery: d, Visit: v, Enrollment: enr,
				LastSeq: lastSeq[d.EnrollmentID], JourneyStatus: j.Status}) == nil
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// keys returns a set's members.
func keys(set map[int64]bool) []int64 {
	out := make([]int64, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}

// answer is a delivery's channel answer in words in lang, and the raw
// error (secrets masked) when the words do not already say it all: ""
// for a delivery that went out.
func (a *Admin) answer(lang string, d model.Delivery) (words, raw string) {
	switch d.Status {
	case model.DeliveryFailed, model.DeliveryHeld, model.DeliveryUnknown:
	default:
		return "", ""
	}
	raw = redact.String(d.Error)
	if d.Status == model.DeliveryUnknown && d.Error == "" {
		return a.catalog.T(lang, "deliveries_reason_status_unknown", nil), ""
	}
	return a.reasonWords(lang, d.Channel, d.ErrorCode, d.Error), raw
}

// reasonWords is a recorded failure in words in lang; an unknown one is
// its raw error (secrets masked).
func (a *Admin) reasonWords(lang, channel string, code int, text string) string {
	f := channels.Reason(channel, code, text)
	if f.Key == "" {
		return redact.String(text)
	}
	return a.catalog.T(lang, "deliveries_reason_"+f.Key, map[string]any{"Code": code})
}

// fallback says what the step did when d's channel could not reach the
// member: another channel sent (the visit's outcome "fallback:CHANNEL") or
// another step taken ("fallback:STEP").
func (a *Admin) fallback(lang string, d model.Delivery, v model.StepVisit) string {
	to, ok := strings.CutPrefix(v.Outcome, "fallback:")
	if !ok || to == d.Channel {
		return ""
	}
	for _, ch := range consoleChannels {
		if ch == to {
			name := a.catalog.T(lang, "deliveries_channel_"+strings.ReplaceAll(ch, ".", "_"), nil)
			return a.catalog.T(lang, "deliveries_fallback_sent", map[string]any{"Channel": name})
		}
	}
	return a.catalog.T(lang, "deliveries_fallback_step", map[string]any{"Step": to})
}

// consoleChannels are the channels the console names, for filters.
var consoleChannels = []string{channels.WeChatText, channels.WeChatNews, channels.WeChatImage, channels.WeChatMiniprogramPage,
	channels.WeChatTemplate, channels.WeChatSubscribe, channels.WeComWelcome, channels.WeComText, channels.WeComMarkTag,
	channels.WeComGroupMessage, channels.SMS, channels.Email, channels.Webhook}

// deliveryStatuses are the delivery statuses, for filters.
var deliveryStatuses = []string{model.DeliverySent, model.DeliveryFailed, model.DeliveryHeld, model.DeliverySending,
	model.DeliveryUnknown, model.DeliverySandbox}

// retryDelivery serves POST /admin/deliveries/:id/retry: the delivery is
// sent again where that is safe (checked again by the engine), audited,
// and the page comes back with the outcome.
func (a *Admin) retryDelivery(r DeliveryRetrier) gin.HandlerFunc {
	return func(c *gin.Context) {
		back := "/admin/deliveries"
		if ref := c.PostForm("back"); strings.HasPrefix(ref, "/admin/deliveries") && !strings.HasPrefix(ref, "//") {
			back = ref
		}
		sep := "?"
		if strings.Contains(back, "?") {
			sep = "&"
		}
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || r == nil {
			c.Redirect(http.StatusSeeOther, back+sep+"error=no_delivery")
			return
		}
		d, err := r.RetryDelivery(c.Request.Context(), id)
		object := strconv.FormatInt(id, 10)
		switch {
		case errors.Is(err, journey.ErrNoDelivery):
			c.Redirect(http.StatusSeeOther, back+sep+"error=no_delivery")
		case errors.Is(err, journey.ErrRetryNotSafe):
			a.log.Info("delivery retry refused", "delivery", id, "why", err)
			c.Redirect(http.StatusSeeOther, back+sep+"error=refused")
		case err != nil:
			a.log.Error("retrying a delivery", "delivery", id, "err", err)
			a.renderError(c, http.StatusServiceUnavailable, "db_error")
		case d.Status == model.DeliverySent || d.Status == model.DeliverySandbox:
			a.audit(c, AuditDeliveryRetry, object, gin.H{"channel": d.Channel, "delivery_status": d.Status})
			c.Redirect(http.StatusSeeOther, back+sep+"done=sent")
		default:
			a.audit(c, AuditDeliveryRetry, object, gin.H{"channel": d.Channel, "delivery_status": d.Status})
			c.Redirect(http.StatusSeeOther, back+sep+"done=status&st="+url.QueryEscape(d.Status))
		}
	}
}
