package handler

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// CSAllowance reads, without spending, a member's customer-service
// allowance with an Official Account: *wechat.Allowance is one.
type CSAllowance interface {
	Left(ctx context.Context, appid, openid string, now time.Time) (wechat.AllowanceLeft, error)
}

// MemberRemover takes a member out of a journey (an operator's exit):
// *journey.Engine is one. The console's remove action needs
// Config.Journeys to be one.
type MemberRemover interface {
	RemoveMember(ctx context.Context, key string, memberID int64) error
}

// Audit actions of the members console.
const (
	AuditMemberTester = "member.tester"
	AuditMemberRemove = "member.remove"
	AuditMemberExport = "member.export"
	AuditMemberErase  = "member.erase"
)

// Limits of the members console.
const (
	// memberSearchLimit is how many members a search shows.
	memberSearchLimit = 50
	// timelineLimit is how many of each kind (events, step visits,
	// deliveries) the member's timeline reads, newest first.
	timelineLimit = 100
)

// memberSearchFields are the fields of the member search, in the select's
// order; "" detects the field from the text.
var memberSearchFields = []string{"", "openid", "unionid", "phone", "email", "nickname", "tag", "scene", "id"}

// memberConsoleRoutes adds the members pages to the console group.
func (h *Handler) memberConsoleRoutes(console gin.IRoutes) {
	console.GET("/members", h.membersPage)
	console.GET("/members/:id", h.memberPage)
	for _, op := range []string{"enroll", "remove", "tester", "export", "erase"} {
		console.POST("/members/:id/"+op, h.memberAction(op))
	}
}

// memberRow is one member of the search results.
type memberRow struct {
	model.Member
	PhoneMasked string
}

// maskPhone hides the middle of a phone number: 138****0001.
func maskPhone(p string) string {
	r := []rune(p)
	if len(r) < 7 {
		return strings.Repeat("*", len(r))
	}
	return string(r[:3]) + strings.Repeat("*", len(r)-7) + string(r[len(r)-4:])
}

var (
	phoneRe  = regexp.MustCompile(`^\+?[0-9][0-9 -]{6,19}$`)
	digitsRe = regexp.MustCompile(`^[0-9]{1,6}$`)
)

// detectField guesses what a search text is: an email, a phone number, a
// member id (short number), an openid with its appid ("wx…/o…"), an
// openid or unionid (a long word starting with o), else a nickname.
func detectField(q string) string {
	switch {
	case strings.Contains(q, "@"):
		return "email"
	case digitsRe.MatchString(q):
		return "id"
	case phoneRe.MatchString(q):
		return "phone"
	case strings.Contains(q, "/"), strings.HasPrefix(q, "o") && len(q) >= 20 && !strings.ContainsAny(q, " \t"):
		return "openid"
	}
	return "nickname"
}

// searchMembers finds the ids of the members matching q in field: one
// indexed query (identities, event scenes), or for nickname and tag a
// limited read of the members table.
func (h *Handler) searchMembers(ctx context.Context, field, q string) ([]int64, error) {
	db := h.cfg.DB.WithContext(ctx)
	var ids []int64
	byIdentity := func(kinds []string, values []string) error {
		return db.Model(&model.MemberIdentity{}).Where("kind IN ? AND value IN ?", kinds, values).
			Limit(memberSearchLimit).Pluck("member_id", &ids).Error
	}
	var err error
	switch field {
	case "id":
		if n, perr := strconv.ParseInt(strings.TrimPrefix(q, "#"), 10, 64); perr == nil {
			ids = []int64{n}
		}
	case "openid":
		values := []string{q}
		if !strings.Contains(q, "/") {
			// The identity is appid/openid: try the openid with each account's appid.
			var appids []string
			if err := db.Model(&model.Account{}).Where("kind IN ?", []string{model.AccountWeChatOA, model.AccountMiniProgram}).
				Pluck("app_id", &appids).Error; err != nil {
				return nil, err
			}
			values = values[:0]
			for _, a := range appids {
				values = append(values, a+"/"+q)
			}
		}
		err = byIdentity([]string{model.IdentityOpenID, model.IdentityMPOpenID}, values)
		if err == nil && len(ids) == 0 && !strings.Contains(q, "/") {
			// Not an openid of a connected account: maybe a unionid.
			err = byIdentity([]string{model.IdentityUnionID}, []string{q})
		}
	case "unionid":
		err = byIdentity([]string{model.IdentityUnionID, model.IdentityExternalUserID, model.IdentityUserID}, []string{q})
	case "phone":
		p := strings.NewReplacer(" ", "", "-", "").Replace(q)
		err = byIdentity([]string{model.IdentityPhone}, []string{p, strings.TrimPrefix(p, "+86")})
	case "email":
		err = byIdentity([]string{model.IdentityEmail}, []string{strings.ToLower(q)})
	case "scene":
		err = db.Model(&model.Event{}).Distinct("member_id").Where("scene = ? AND member_id IS NOT NULL", q).
			Limit(memberSearchLimit).Pluck("member_id", &ids).Error
	case "nickname":
		err = db.Model(&model.Member{}).Where("nickname LIKE ? ESCAPE '!' AND merged_into IS NULL", escapeLike(q)+"%").
			Limit(memberSearchLimit).Pluck("id", &ids).Error
	case "tag":
		// Tags are a JSON text column: a LIKE on the text, limited.
		b, _ := json.Marshal(q)
		err = db.Model(&model.Member{}).Where("tags LIKE ? ESCAPE '!' AND merged_into IS NULL", "%"+escapeLike(string(b))+"%").
			Limit(memberSearchLimit).Pluck("id", &ids).Error
	}
	return ids, err
}

// escapeLike makes s match itself in a LIKE with ESCAPE '!': its own %
// and _ are not wildcards.
func escapeLike(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// membersPage serves GET /admin/members?q=&field=: the search, and its
// results.
func (h *Handler) membersPage(c *gin.Context) {
	a := h.cfg.Admin
	q, field := strings.TrimSpace(c.Query("q")), c.Query("field")
	if !slices.Contains(memberSearchFields, field) {
		field = ""
	}
	data := map[string]any{"Nav": "members", "Q": q, "Field": field, "Fields": memberSearchFields}
	if c.Query("done") == "erased" {
		data["Done"] = a.catalog.T(a.lang(c), "members_done_erased", nil)
	}
	if q != "" {
		f := field
		if f == "" {
			f = detectField(q)
		}
		data["Detected"] = f
		ids, err := h.searchMembers(c.Request.Context(), f, q)
		if err != nil {
			a.log.Error("searching members", "field", f, "err", err)
			a.renderError(c, http.StatusServiceUnavailable, "db_error")
			return
		}
		var ms []model.Member
		if len(ids) > 0 {
			if err := h.cfg.DB.WithContext(c.Request.Context()).Where("id IN ?", ids).
				Order("last_interaction_at DESC, id DESC").Find(&ms).Error; err != nil {
				a.log.Error("loading members", "err", err)
				a.renderError(c, http.StatusServiceUnavailable, "db_error")
				return
			}
		}
		rows := make([]memberRow, 0, len(ms))
		for _, m := range ms {
			rows = append(rows, memberRow{Member: m, PhoneMasked: maskPhone(m.Phone)})
		}
		data["Members"], data["Limited"] = rows, len(ids) == memberSearchLimit
	}
	a.render(c, http.StatusOK, "members.html", data)
}

// timelineItem is one line of a member's timeline: an event, a step visit
// or a delivery.
type timelineItem struct {
	At   time.Time
	Kind string // "event", "visit", "delivery"
	// Event
	Type, Source, Props string
	// Visit and delivery
	Journey, Step, Status, Outcome string
	// Delivery
	Channel, Error string
}

// journeyInfo is a journey's key, name and status, by id.
type journeyInfo struct {
	ID     int64
	Key    string
	Name   string
	Status string
}

// propsSummary is a short "k=v, …" of an event's props.
func propsSummary(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i == 6 {
			b.WriteString(", …")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		v := fmt.Sprint(p[k])
		if r := []rune(v); len(r) > 40 {
			v = string(r[:40]) + "…"
		}
		fmt.Fprintf(&b, "%s=%s", k, v)
	}
	return b.String()
}

// deliveryErrorIDs name, by WeChat error code, the words the timeline
// says for a failed delivery.
var deliveryErrorIDs = map[int]string{
	40003: "members_err_40003", 43004: "members_err_43004", 43101: "members_err_43101",
	45015: "members_err_45015", 45047: "members_err_45047",
}

// allowanceRow is a member's customer-service allowance with one account.
type allowanceRow struct {
	AppID, Account string
	wechat.AllowanceLeft
}

// memberID reads the :id of the route; a bad one answers 404.
func (h *Handler) memberID(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		h.cfg.Admin.renderError(c, http.StatusNotFound, "members_not_found")
		return 0, false
	}
	return id, true
}

// memberDone are the confirmations the member page shows after an action
// (?done=).
var memberDone = map[string]bool{"enrolled": true, "removed": true, "tester_on": true, "tester_off": true}

// memberPage serves GET /admin/members/{id}: the member's identities,
// attributes, tags, subscriptions, opt-outs, customer-service allowance,
// active enrollments and timeline.
func (h *Handler) memberPage(c *gin.Context) {
	id, ok := h.memberID(c)
	if !ok {
		return
	}
	data := map[string]any{}
	if d := c.Query("done"); memberDone[d] {
		data["Done"] = h.cfg.Admin.catalog.T(h.cfg.Admin.lang(c), "members_done_"+d, nil)
	}
	h.renderMember(c, http.StatusOK, id, data)
}

func (h *Handler) renderMember(c *gin.Context, status int, id int64, data map[string]any) {
	a, ctx := h.cfg.Admin, c.Request.Context()
	db := h.cfg.DB.WithContext(ctx)
	fail := func(what string, err error) {
		a.log.Error("member page: "+what, "member", id, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
	}
	var m model.Member
	if err := db.First(&m, id).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			a.renderError(c, http.StatusNotFound, "members_not_found")
			return
		}
		fail("member", err)
		return
	}
	var (
		idents   []model.MemberIdentity
		journeys []journeyInfo
		accounts []model.Account
		enrs     []model.Enrollment
		evs      []model.Event
		visits   []model.StepVisit
		dels     []model.Delivery
	)
	for _, q := range []struct {
		what string
		run  func() error
	}{
		{"identities", func() error { return db.Where("member_id = ?", id).Order("kind, value").Find(&idents).Error }},
		{"journeys", func() error {
			// key is a reserved word in MySQL: gorm quotes the columns named apart.
			return db.Model(&model.Journey{}).Select("id", "key", "name", "status").
				Order(clause.OrderByColumn{Column: clause.Column{Name: "key"}}).Find(&journeys).Error
		}},
		{"accounts", func() error { return db.Select("app_id, name, kind").Find(&accounts).Error }},
		{"enrollments", func() error {
			return db.Where("member_id = ? AND status = 'active'", id).Order("entered_at DESC").Find(&enrs).Error
		}},
		{"events", func() error {
			return db.Where("member_id = ?", id).Order("at DESC, id DESC").Limit(timelineLimit).Find(&evs).Error
		}},
		{"visits", func() error {
			return db.Where("member_id = ?", id).Order("created_at DESC, id DESC").Limit(timelineLimit).Find(&visits).Error
		}},
		{"deliveries", func() error {
			return db.Where("member_id = ?", id).Order("created_at DESC, id DESC").Limit(timelineLimit).Find(&dels).Error
		}},
	} {
		if err := q.run(); err != nil {
			fail(q.what, err)
			return
		}
	}
	byID := map[int64]journeyInfo{}
	var live []journeyInfo
	for _, j := range journeys {
		byID[j.ID] = j
		if j.Status == model.JourneyActive {
			live = append(live, j)
		}
	}
	names := map[string]string{}
	for _, ac := range accounts {
		names[ac.AppID] = ac.Name
	}
	l := a.lang(c)
	var tl []timelineItem
	for _, e := range evs {
		tl = append(tl, timelineItem{At: e.At, Kind: "event", Type: e.Type, Source: e.Source, Props: propsSummary(e.Props)})
	}
	for _, v := range visits {
		tl = append(tl, timelineItem{At: v.CreatedAt, Kind: "visit", Journey: byID[v.JourneyID].Key, Step: v.StepID,
			Status: v.Status, Outcome: v.Outcome})
	}
	for _, d := range dels {
		it := timelineItem{At: d.CreatedAt, Kind: "delivery", Journey: byID[d.JourneyID].Key, Channel: d.Channel, Status: d.Status}
		if d.SentAt != nil {
			it.At = *d.SentAt
		}
		if d.Status == model.DeliveryFailed || d.Status == model.DeliveryUnknown || d.Status == model.DeliveryHeld {
			if msg, ok := deliveryErrorIDs[d.ErrorCode]; ok {
				it.Error = a.catalog.T(l, msg, nil)
			}
			if d.Error != "" {
				it.Error = strings.TrimSpace(it.Error + " " + d.Error)
			}
			if it.Error == "" && d.Status == model.DeliveryFailed {
				it.Error = a.catalog.T(l, "members_err_unknown", nil)
			}
		}
		tl = append(tl, it)
	}
	sort.SliceStable(tl, func(i, j int) bool { return tl[i].At.After(tl[j].At) })

	type enrollmentRow struct {
		model.Enrollment
		Journey journeyInfo
	}
	active := make([]enrollmentRow, 0, len(enrs))
	for _, e := range enrs {
		active = append(active, enrollmentRow{e, byID[e.JourneyID]})
	}
	type optOut struct {
		Channel string
		At      time.Time
	}
	var opts []optOut
	for ch, at := range m.OptOuts {
		opts = append(opts, optOut{ch, at})
	}
	sort.Slice(opts, func(i, j int) bool { return opts[i].Channel < opts[j].Channel })
	type subRow struct{ AppID, Account, Status string }
	var subs []subRow
	for appid, st := range m.Subscriptions {
		subs = append(subs, subRow{appid, names[appid], st})
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].AppID < subs[j].AppID })
	var attrs [][2]string
	for k, v := range m.Attrs {
		attrs = append(attrs, [2]string{k, fmt.Sprint(v)})
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i][0] < attrs[j][0] })

	// The customer-service allowance, per Official Account openid, read
	// from the store the WeChat sender spends it from.
	var allowance []allowanceRow
	if al := a.cfg.CSAllowance; al != nil {
		now := a.cfg.Now()
		for _, ident := range idents {
			if ident.Kind != model.IdentityOpenID {
				continue
			}
			appid, openid, ok := strings.Cut(ident.Value, "/")
			if !ok {
				continue
			}
			left, err := al.Left(ctx, appid, openid, now)
			if err != nil {
				a.log.Warn("reading a member's customer-service allowance", "member", id, "err", err)
				data["AllowanceError"] = true
				break
			}
			allowance = append(allowance, allowanceRow{appid, names[appid], left})
		}
		data["AllowanceShown"] = true
	}
	u := currentUser(c)
	data["Nav"], data["Member"], data["Identities"], data["Attrs"] = "members", m, idents, attrs
	data["Tags"], data["Tester"], data["Subscriptions"], data["OptOuts"] = m.Tags, m.IsTester(), subs, opts
	data["Allowance"], data["Enrollments"], data["Timeline"], data["Live"] = allowance, active, tl, live
	data["PhoneMasked"], data["TimelineLimit"] = maskPhone(m.Phone), timelineLimit
	data["CanOperate"] = allowed(u.Role, http.MethodPost, "/admin/members/:id/enroll")
	data["IsAdmin"] = allowed(u.Role, http.MethodPost, "/admin/members/:id/erase")
	a.render(c, status, "members_member.html", data)
}

// memberAction serves POST /admin/members/{id}/{op}: enroll, remove
// (operators), tester, export, erase (admins; see routeRoles).
func (h *Handler) memberAction(op string) gin.HandlerFunc {
	return func(c *gin.Context) { h.doMemberAction(c, op) }
}

func (h *Handler) doMemberAction(c *gin.Context, op string) {
	a := h.cfg.Admin
	id, ok := h.memberID(c)
	if !ok {
		return
	}
	ctx, now := c.Request.Context(), a.cfg.Now()
	object := strconv.FormatInt(id, 10)
	page := "/admin/members/" + object
	refuse := func(status int, msg string) {
		h.renderMember(c, status, id, map[string]any{"Error": a.catalog.T(a.lang(c), msg, nil)})
	}
	switch op {
	case "enroll":
		key := c.PostForm("journey")
		var j model.Journey
		if err := h.cfg.DB.WithContext(ctx).Where(&model.Journey{Key: key}).First(&j).Error; err != nil || key == "" {
			refuse(http.StatusBadRequest, "members_err_no_journey")
			return
		}
		if j.Status != model.JourneyActive {
			refuse(http.StatusConflict, "members_err_not_live")
			return
		}
		var m model.Member
		if err := h.cfg.DB.WithContext(ctx).First(&m, id).Error; err != nil {
			a.renderError(c, http.StatusNotFound, "members_not_found")
			return
		}
		ref := m.Ref()
		if (ref.OpenID != "") != (ref.AppID != "") || ref.Key() == "" || checkMember(ref) != nil {
			refuse(http.StatusBadRequest, "members_err_no_identity")
			return
		}
		reqID := rand.Text()
		accepted, dups, err := h.cfg.Ingestor.Ingest(ctx, enrollEvent(key, reqID, "console", ref, now))
		if err != nil {
			a.log.Error("enrolling a member", "member", id, "journey", key, "err", err)
			refuse(http.StatusServiceUnavailable, "db_error")
			return
		}
		a.audit(c, AuditJourneyEnroll, key, gin.H{"member_id": id, "request_id": reqID, "members": 1, "accepted": accepted, "duplicates": dups})
		c.Redirect(http.StatusSeeOther, page+"?done=enrolled")
	case "remove":
		r, ok := h.cfg.Journeys.(MemberRemover)
		if !ok {
			refuse(http.StatusServiceUnavailable, "members_err_no_engine")
			return
		}
		key := c.PostForm("journey")
		err := r.RemoveMember(ctx, key, id)
		switch {
		case errors.Is(err, journey.ErrNotEnrolled), errors.Is(err, journey.ErrUnknownJourney):
			refuse(http.StatusConflict, "members_err_not_enrolled")
			return
		case err != nil:
			a.log.Error("removing a member from a journey", "member", id, "journey", key, "err", err)
			refuse(http.StatusServiceUnavailable, "db_error")
			return
		}
		a.audit(c, AuditMemberRemove, object, gin.H{"journey": key, "reason": journey.EndReasonOperator})
		c.Redirect(http.StatusSeeOther, page+"?done=removed")
	case "tester":
		on := c.PostForm("on") == "yes"
		_, err := markTester(ctx, h.cfg.DB, id, on, now)
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			a.renderError(c, http.StatusNotFound, "members_not_found")
			return
		case errors.Is(err, errMerged):
			refuse(http.StatusConflict, "members_err_merged")
			return
		case err != nil:
			a.log.Error("marking a tester", "member", id, "err", err)
			refuse(http.StatusServiceUnavailable, "db_error")
			return
		}
		a.audit(c, AuditMemberTester, object, gin.H{"tester": on})
		done := "tester_off"
		if on {
			done = "tester_on"
		}
		c.Redirect(http.StatusSeeOther, page+"?done="+done)
	case "export":
		exp, err := model.ExportMember(ctx, h.cfg.DB, id, now)
		if errors.Is(err, model.ErrNoMember) {
			a.renderError(c, http.StatusNotFound, "members_not_found")
			return
		}
		if err != nil {
			a.log.Error("exporting a member", "member", id, "err", err)
			a.renderError(c, http.StatusServiceUnavailable, "db_error")
			return
		}
		b, err := json.MarshalIndent(exp, "", "  ")
		if err != nil {
			a.log.Error("exporting a member", "member", id, "err", err)
			a.renderError(c, http.StatusInternalServerError, "db_error")
			return
		}
		c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="member-%d-%s.json"`, id, now.In(chinaTime).Format("20060102-150405")))
		c.Header("Cache-Control", "no-store")
		c.Data(http.StatusOK, "application/json; charset=utf-8", b)
		a.audit(c, AuditMemberExport, object, gin.H{"events": len(exp.Events), "enrollments": len(exp.Enrollments),
			"deliveries": len(exp.Deliveries)})
	case "erase":
		if c.PostForm("confirm") != "yes" {
			refuse(http.StatusBadRequest, "members_err_confirm")
			return
		}
		res, err := model.EraseMember(ctx, h.cfg.DB, id, now)
		if errors.Is(err, model.ErrNoMember) {
			a.renderError(c, http.StatusNotFound, "members_not_found")
			return
		}
		if err != nil {
			a.log.Error("erasing a member", "member", id, "err", err)
			refuse(http.StatusServiceUnavailable, "db_error")
			return
		}
		// Who and when, and how many rows: never the erased data.
		a.audit(c, AuditMemberErase, object, gin.H{"rows": res})
		c.Redirect(http.StatusSeeOther, "/admin/members?done=erased")
	}
}
