package handler

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/internal/graph"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// journeyStatusDraft is how the console shows a journey without a live
// version (one saved, never published).
const journeyStatusDraft = "draft"

// consoleJourneyRoutes adds the console's journey pages: the list, a
// journey's page (its graph, counts and versions) and, with an engine,
// its lifecycle forms, which call the engine as the API does.
func (h *Handler) consoleJourneyRoutes(console gin.IRoutes, a *Admin) {
	console.GET("/journeys", a.journeysPage)
	console.GET("/journeys/:key", func(c *gin.Context) { a.journeyPage(c, http.StatusOK, map[string]any{}) })
	if h.cfg.Journeys == nil {
		return
	}
	for action, call := range map[string]func(c *gin.Context, key string) (journey.Status, error){
		"pause": func(c *gin.Context, key string) (journey.Status, error) {
			return h.cfg.Journeys.Pause(c.Request.Context(), key)
		},
		"resume": func(c *gin.Context, key string) (journey.Status, error) {
			return h.cfg.Journeys.Resume(c.Request.Context(), key)
		},
		"archive": func(c *gin.Context, key string) (journey.Status, error) {
			if c.PostForm("confirm") != "yes" {
				return journey.Status{}, errNotConfirmed
			}
			return h.cfg.Journeys.Archive(c.Request.Context(), key)
		},
	} {
		console.POST("/journeys/:key/"+action, func(c *gin.Context) { h.consoleJourneyAction(c, a, action, call) })
	}
}

// consoleJourneyAction serves POST /admin/journeys/{key}/{pause,resume,
// archive}: the engine's call, audited as the API's (journey.ACTION, with
// the version and status), then back to the journey's page.
func (h *Handler) consoleJourneyAction(c *gin.Context, a *Admin, action string, call func(*gin.Context, string) (journey.Status, error)) {
	key := c.Param("key")
	st, err := call(c, key)
	if errors.Is(err, errNotConfirmed) {
		a.journeyPage(c, http.StatusBadRequest, map[string]any{"Error": a.catalog.T(a.lang(c), "journeys_err_confirm", nil)})
		return
	}
	defer h.audit(c, "journey."+action, key, gin.H{"version": st.Version, "journey_status": st.Status})
	switch {
	case err == nil:
		c.Redirect(http.StatusSeeOther, "/admin/journeys/"+url.PathEscape(key)+"?done="+action)
	case errors.Is(err, journey.ErrUnknownJourney):
		a.renderError(c, http.StatusNotFound, "journeys_err_unknown")
	case errors.Is(err, journey.ErrTransition):
		a.journeyPage(c, http.StatusConflict, map[string]any{"Error": a.catalog.T(a.lang(c), "journeys_err_transition", nil)})
	default:
		h.log.Error("journey "+action+" failed", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
	}
}

// journeyRange reads the page's date range (?from=&to=, China dates; the
// last 30 days by default): the instants for journey.JourneyStats and the
// dates to show in the form.
type journeyRange struct {
	From, To     time.Time
	FromS, ToS   string
	Error        string
	DefaultRange bool
}

func (a *Admin) journeyRange(c *gin.Context) journeyRange {
	r := journeyRange{}
	from, to, err := journey.StatsRange(c.Query("from"), c.Query("to"), a.cfg.Now())
	if err != nil {
		r.Error = a.catalog.T(a.lang(c), "journeys_bad_range", map[string]any{"Problem": err.Error()})
		from, to, _ = journey.StatsRange("", "", a.cfg.Now())
	}
	r.From, r.To = from, to
	r.FromS, r.ToS = from.In(chinaTime).Format(time.DateOnly), to.Add(-time.Nanosecond).In(chinaTime).Format(time.DateOnly)
	r.DefaultRange = c.Query("from") == "" && c.Query("to") == ""
	return r
}

// query is the range as a query string, for links that keep it.
func (r journeyRange) query() string {
	if r.DefaultRange {
		return ""
	}
	return "?" + url.Values{"from": {r.FromS}, "to": {r.ToS}}.Encode()
}

// journeyListRow is one journey of the list.
type journeyListRow struct {
	Key, Name string
	statusView
	Version int
	journey.EnrollmentCounts
	HasGoal  bool
	GoalRate string
	Link     string
}

// journeysPage serves GET /admin/journeys?from=&to=: every journey, its
// status and live version, and the counts of the members who entered it
// in the range. Three queries, whatever the number of journeys.
func (a *Admin) journeysPage(c *gin.Context) {
	rg := a.journeyRange(c)
	rows, err := a.journeyList(c, rg)
	if err != nil {
		a.log.Error("listing journeys", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	a.render(c, http.StatusOK, "journeys.html", map[string]any{"Nav": "journeys", "Journeys": rows, "Range": rg})
}

func (a *Admin) journeyList(c *gin.Context, rg journeyRange) ([]journeyListRow, error) {
	db := a.cfg.DB.WithContext(c.Request.Context())
	var js []model.Journey
	// "key" is quoted by gorm: it is a reserved word in MySQL.
	if err := db.Order(clause.OrderByColumn{Column: clause.Column{Name: "key"}}).Find(&js).Error; err != nil {
		return nil, fmt.Errorf("load journeys: %w", err)
	}
	ids := make([]int64, 0, len(js))
	for _, j := range js {
		ids = append(ids, j.CurrentVersionID)
	}
	var versions []model.JourneyVersion
	if len(ids) > 0 {
		if err := db.Select("id", "version", "source").Where("id IN ?", ids).Find(&versions).Error; err != nil {
			return nil, fmt.Errorf("load versions: %w", err)
		}
	}
	type live struct {
		version int
		goal    bool
	}
	current := make(map[int64]live, len(versions))
	for _, v := range versions {
		current[v.ID] = live{v.Version, hasGoal(v.Source)}
	}
	// The enrollments by journey and status, entered in the range: on
	// SQLite from the day rollup the statistics read, elsewhere from the
	// enrollments' entry-day index.
	first, last := model.EntryDay(rg.From), model.EntryDay(rg.To.Add(-time.Nanosecond))
	var counts []struct {
		JourneyID int64
		Status    string
		N         int64
	}
	q := "SELECT journey_id, status, COUNT(*) AS n FROM enrollments WHERE entered_day >= ? AND entered_day <= ? GROUP BY journey_id, status"
	if db.Dialector.Name() == "sqlite" {
		q = "SELECT journey_id, k1 AS status, SUM(n) AS n FROM stats_counts WHERE kind = 'e' AND entered_day >= ? AND entered_day <= ? GROUP BY journey_id, k1"
	}
	if err := db.Raw(q, first, last).Scan(&counts).Error; err != nil {
		return nil, fmt.Errorf("count enrollments: %w", err)
	}
	rows := make([]journeyListRow, 0, len(js))
	index := make(map[int64]int, len(js))
	for _, j := range js {
		index[j.ID] = len(rows)
		lv := current[j.CurrentVersionID]
		rows = append(rows, journeyListRow{Key: j.Key, Name: j.Name, statusView: a.statusView(a.lang(c), j),
			Version: lv.version, HasGoal: lv.goal, Link: "/admin/journeys/" + url.PathEscape(j.Key) + rg.query()})
	}
	for _, ct := range counts {
		i, ok := index[ct.JourneyID]
		if !ok {
			continue
		}
		rows[i].Add(ct.Status, ct.N)
	}
	for i := range rows {
		rows[i].GoalRate = percent(rows[i].Goal, rows[i].Entered)
	}
	return rows, nil
}

// journeyStatus is the status the console shows: the journey's, or draft
// for a journey with no live version.
func journeyStatus(j model.Journey) string {
	if j.CurrentVersionID == 0 || j.Status == "" {
		return journeyStatusDraft
	}
	return j.Status
}

// statusView is a journey's status as the pages show it: the status,
// its name and, when paused, who paused it, in the page's language.
type statusView struct {
	Status, StatusText, ReasonText string
}

func (a *Admin) statusView(lang string, j model.Journey) statusView {
	v := statusView{Status: journeyStatus(j)}
	v.StatusText = a.catalog.T(lang, "journeys_status_"+v.Status, nil)
	if v.Status == model.JourneyPaused && j.PausedReason != "" {
		id := "journeys_paused_" + j.PausedReason
		if v.ReasonText = a.catalog.T(lang, id, nil); v.ReasonText == id {
			v.ReasonText = j.PausedReason
		}
	}
	return v
}

// hasGoal reports whether a journey's source has a goal, without parsing
// it whole: a top-level "goal:" key.
func hasGoal(src string) bool {
	for _, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(line, "goal:") {
			return true
		}
	}
	return false
}

// percent is n of total as "25%" ("–" of nothing).
func percent(n, total int64) string {
	if total == 0 {
		return "–"
	}
	p := float64(n) * 100 / float64(total)
	if p == float64(int64(p)) {
		return strconv.FormatInt(int64(p), 10) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// versionRow is one version of a journey, as the page lists it.
type versionRow struct {
	Version   int
	CreatedAt time.Time
	Origin    string
	Hash      string
	Current   bool
}

// funnelRow is one stage of the funnel to the goal.
type funnelRow struct {
	Label   string
	N       int64
	Percent string
	Bar     int // width in % of the first stage
}

// armRow is one arm of a split.
type armRow struct {
	Next, Weight  string
	Entered, Goal int64
	GoalRate      string
}

// splitRow is one split step and its arms.
type splitRow struct {
	Step string
	Arms []armRow
}

// channelRow is one channel's messages.
type channelRow struct {
	Channel, Name string
	Sent, Failed  int64
}

// journeyDone are the confirmations of the journey page (?done=).
var journeyDone = map[string]bool{"pause": true, "resume": true, "archive": true}

// journeyPage serves GET /admin/journeys/{key}?from=&to=&a=&b=: the
// journey drawn as a graph with each step's counts, the funnel to its
// goal, its split arms and channels, its lifecycle forms, its versions and
// the comparison of two of them (a, b).
func (a *Admin) journeyPage(c *gin.Context, status int, data map[string]any) {
	ctx, db, key, l := c.Request.Context(), a.cfg.DB.WithContext(c.Request.Context()), c.Param("key"), a.lang(c)
	var j model.Journey
	if err := db.Where(&model.Journey{Key: key}).Limit(1).Find(&j).Error; err != nil {
		a.log.Error("loading a journey", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	if j.ID == 0 {
		a.renderError(c, http.StatusNotFound, "journeys_err_unknown")
		return
	}
	var vs []model.JourneyVersion
	if err := db.Select("id", "version", "hash", "origin", "created_at").Where("journey_id = ?", j.ID).
		Order("version DESC").Find(&vs).Error; err != nil {
		a.log.Error("loading a journey's versions", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	rg := a.journeyRange(c)
	data["Nav"], data["Journey"], data["Status"], data["Range"] = "journeys", j, a.statusView(l, j), rg
	data["Path"] = "/admin/journeys/" + url.PathEscape(j.Key)
	if d := c.Query("done"); journeyDone[d] && data["Error"] == nil {
		data["Done"] = a.catalog.T(l, "journeys_done_"+d, nil)
	}
	u := currentUser(c)
	data["CanOperate"] = allowed(u.Role, http.MethodPost, "/admin/journeys/:key/pause")
	rows := make([]versionRow, 0, len(vs))
	byNumber := map[int]int64{}
	var currentNo int
	for _, v := range vs {
		h := v.Hash
		if len(h) > 10 {
			h = h[:10]
		}
		rows = append(rows, versionRow{Version: v.Version, CreatedAt: v.CreatedAt, Origin: v.Origin, Hash: h, Current: v.ID == j.CurrentVersionID})
		byNumber[v.Version] = v.ID
		if v.ID == j.CurrentVersionID {
			currentNo = v.Version
		}
	}
	data["Versions"], data["Version"] = rows, currentNo

	// The live version, drawn with the range's counts.
	if j.CurrentVersionID != 0 {
		var v model.JourneyVersion
		if err := db.Select("id", "source", "origin").First(&v, j.CurrentVersionID).Error; err != nil {
			a.log.Error("loading a journey's version", "journey", key, "err", err)
			a.renderError(c, http.StatusServiceUnavailable, "db_error")
			return
		}
		st, err := journey.JourneyStats(ctx, a.cfg.DB, j.Key, rg.From, rg.To, a.cfg.JourneyOptions...)
		if err != nil {
			a.log.Error("journey statistics", "journey", key, "err", err)
			a.renderError(c, http.StatusServiceUnavailable, "db_error")
			return
		}
		data["Stats"] = st
		comp, perr := journey.Parse(v.Origin, []byte(v.Source), a.cfg.JourneyOptions...)
		if perr != nil {
			data["ParseError"] = perr.Error()
		} else {
			svg, err := a.journeySVG(l, comp, st)
			if err != nil {
				a.log.Error("drawing a journey", "journey", key, "err", err)
			}
			data["Graph"] = svg
			data["Funnel"], data["HasGoal"] = a.journeyFunnel(l, comp, st), comp.Def.Goal != nil
			data["Splits"] = journeySplits(comp, st)
		}
		chans := make([]channelRow, 0, len(st.Channels))
		for _, ch := range st.Channels {
			chans = append(chans, channelRow{Channel: ch.Channel, Name: a.channelName(l, ch.Channel), Sent: ch.Sent, Failed: ch.Failed})
		}
		data["Channels"] = chans
	}

	// Two versions compared (?a=&b=, version numbers).
	if c.Query("a") != "" || c.Query("b") != "" {
		na, _ := strconv.Atoi(c.Query("a"))
		nb, _ := strconv.Atoi(c.Query("b"))
		ia, oka := byNumber[na]
		ib, okb := byNumber[nb]
		if !oka || !okb {
			data["CompareError"] = a.catalog.T(l, "journeys_err_versions", nil)
		} else {
			var pair []model.JourneyVersion
			if err := db.Select("id", "source").Where("id IN ?", []int64{ia, ib}).Find(&pair).Error; err != nil {
				a.log.Error("loading versions to compare", "journey", key, "err", err)
				a.renderError(c, http.StatusServiceUnavailable, "db_error")
				return
			}
			src := map[int64]string{}
			for _, v := range pair {
				src[v.ID] = v.Source
			}
			diff := sideBySide(src[ia], src[ib])
			changed := 0
			for _, r := range diff {
				if r.Change != "same" {
					changed++
				}
			}
			data["Diff"], data["CompareA"], data["CompareB"] = diff, na, nb
			data["CompareTitle"] = a.catalog.T(l, "journeys_compare_title", map[string]any{"A": na, "B": nb})
			data["DiffSummary"] = a.catalog.T(l, "journeys_diff_same", nil)
			if changed > 0 {
				data["DiffSummary"] = a.catalog.T(l, "journeys_diff_changed", map[string]any{"N": changed})
			}
		}
	}
	if data["CompareA"] == nil && len(rows) > 0 {
		data["CompareA"], data["CompareB"] = rows[min(1, len(rows)-1)].Version, rows[0].Version
	}
	a.render(c, status, "journeys_show.html", data)
}

// channelName is a channel's name in lang, or the channel itself.
func (a *Admin) channelName(lang, ch string) string {
	id := "journeys_channel_" + strings.NewReplacer(".", "_").Replace(ch)
	if s := a.catalog.T(lang, id, nil); s != id {
		return s
	}
	return ch
}

// journeySVG draws the journey's steps with their counts.
func (a *Admin) journeySVG(lang string, comp *journey.Compiled, st *journey.Stats) (template.HTML, error) {
	counts := map[string]journey.StepStats{}
	for _, s := range st.Steps {
		counts[s.ID] = s
	}
	t := func(id string, d map[string]any) string { return a.catalog.T(lang, id, d) }
	var g graph.Graph
	for i := range comp.Def.Steps {
		s := &comp.Def.Steps[i]
		// The kind in the operator's words (the editor's names of kinds).
		title := t("editor_kind_"+s.Kind(), nil)
		if title == "editor_kind_"+s.Kind() {
			title = s.Kind()
		}
		n := graph.Node{ID: s.ID, Title: title, Class: s.Kind()}
		cs := counts[s.ID]
		n.Counts = []string{
			t("journeys_box_counts1", map[string]any{"Reached": cs.Reached, "Passed": cs.Passed}),
			t("journeys_box_counts2", map[string]any{"Waiting": cs.Waiting, "Failed": cs.Failed}),
		}
		if s.Next != "" {
			g.Edges = append(g.Edges, graph.Edge{From: s.ID, To: s.Next, Kind: graph.EdgeNext})
		}
		if s.OnTimeout != "" {
			g.Edges = append(g.Edges, graph.Edge{From: s.ID, To: s.OnTimeout, Kind: graph.EdgeTimeout, Label: t("journeys_edge_timeout", nil)})
		}
		switch b := s.Body.(type) {
		case *journey.Send:
			line := a.channelName(lang, b.Channel)
			if txt := firstOf(b.Text, b.Subject, b.Template, b.TemplateID); txt != "" {
				line += ": " + txt
			}
			n.Lines = append(n.Lines, line)
			for _, fb := range b.Fallback {
				if _, ok := comp.Step(fb); ok {
					g.Edges = append(g.Edges, graph.Edge{From: s.ID, To: fb, Kind: graph.EdgeFallback, Label: t("journeys_edge_fallback", nil)})
				} else {
					n.Lines = append(n.Lines, t("journeys_fallback_channel", map[string]any{"Channel": a.channelName(lang, fb)}))
				}
			}
		case *journey.Wait:
			switch {
			case b.Until != "":
				n.Lines = append(n.Lines, t("journeys_wait_until", map[string]any{"At": b.Until}))
			case b.UntilAttribute != "":
				n.Lines = append(n.Lines, t("journeys_wait_attr", map[string]any{"Attr": b.UntilAttribute}))
			default:
				n.Lines = append(n.Lines, t("journeys_wait_for", map[string]any{"D": shortDuration(time.Duration(b.Duration))}))
			}
		case *journey.WaitFor:
			n.Lines = append(n.Lines, b.Event, t("journeys_wait_timeout", map[string]any{"D": shortDuration(time.Duration(b.Timeout))}))
		case *journey.Branch:
			for _, arm := range b.Arms {
				label := arm.When
				if label == "" {
					label = t("journeys_edge_otherwise", nil)
				}
				g.Edges = append(g.Edges, graph.Edge{From: s.ID, To: arm.Next, Kind: graph.EdgeArm, Label: label})
			}
		case *journey.Split:
			total, parts := 0, []string{}
			for _, arm := range b.Arms {
				total += arm.Weight
			}
			for _, arm := range b.Arms {
				p := weightPercent(arm.Weight, total)
				parts = append(parts, p)
				g.Edges = append(g.Edges, graph.Edge{From: s.ID, To: arm.Next, Kind: graph.EdgeArm, Label: p})
			}
			n.Lines = append(n.Lines, strings.Join(parts, " / "))
		case *journey.Update:
			var parts []string
			for _, tag := range b.AddTags {
				parts = append(parts, "+"+tag)
			}
			for _, tag := range b.RemoveTags {
				parts = append(parts, "-"+tag)
			}
			for k := range b.Set {
				parts = append(parts, k+"=…")
			}
			if len(parts) > 0 {
				n.Lines = append(n.Lines, strings.Join(parts, " "))
			}
		case *journey.WebhookSpec:
			n.Lines = append(n.Lines, strings.ToUpper(firstOf(b.Method, "POST"))+" "+b.URL)
		}
		g.Nodes = append(g.Nodes, n)
	}
	var b strings.Builder
	err := graph.Place(g).WriteSVG(&b, t("journeys_graph_title", map[string]any{"Key": comp.Def.Key}))
	return template.HTML(b.String()), err // graph escapes every text it writes
}

// journeyFunnel is the funnel to the goal: entered, each step of the
// main path (next, else a branch or split's first arm, else on_timeout),
// and the goal when the journey has one.
func (a *Admin) journeyFunnel(lang string, comp *journey.Compiled, st *journey.Stats) []funnelRow {
	counts := map[string]int64{}
	for _, s := range st.Steps {
		counts[s.ID] = s.Reached
	}
	stage := func(label string, n int64) funnelRow {
		r := funnelRow{Label: label, N: n, Percent: percent(n, st.Entered)}
		if st.Entered > 0 {
			r.Bar = int(min(100, n*100/st.Entered))
		}
		return r
	}
	rows := []funnelRow{stage(a.catalog.T(lang, "journeys_entered", nil), st.Entered)}
	seen := map[string]bool{}
	for id := comp.FirstStep(); id != "" && !seen[id]; {
		seen[id] = true
		s, ok := comp.Step(id)
		if !ok {
			break
		}
		rows = append(rows, stage(id, counts[id]))
		next := s.Next
		if next == "" {
			if refs := s.Body.Refs(); len(refs) > 0 {
				next = refs[0].ID
			} else {
				next = s.OnTimeout
			}
		}
		id = next
	}
	if comp.Def.Goal != nil {
		rows = append(rows, stage(a.catalog.T(lang, "journeys_goal", nil), st.Goal))
	}
	return rows
}

// journeySplits are the split steps with their arms' weights and counts.
func journeySplits(comp *journey.Compiled, st *journey.Stats) []splitRow {
	var out []splitRow
	for _, sp := range st.Splits {
		weights := map[string]int{}
		total := 0
		if s, ok := comp.Step(sp.Step); ok {
			if b, ok := s.Body.(*journey.Split); ok {
				for _, arm := range b.Arms {
					weights[arm.Next] += arm.Weight
					total += arm.Weight
				}
			}
		}
		row := splitRow{Step: sp.Step}
		for _, arm := range sp.Arms {
			row.Arms = append(row.Arms, armRow{Next: arm.Next, Weight: weightPercent(weights[arm.Next], total),
				Entered: arm.Entered, Goal: arm.Goal, GoalRate: percent(arm.Goal, arm.Entered)})
		}
		out = append(out, row)
	}
	return out
}

// weightPercent is a split arm's share, "50%".
func weightPercent(w, total int) string {
	if total == 0 {
		return "–"
	}
	return percent(int64(w), int64(total))
}

// shortDuration writes a wait as "2d", "1h30m", "10m".
func shortDuration(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	var b strings.Builder
	if days := d / (24 * time.Hour); days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		d -= days * 24 * time.Hour
	}
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dh", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dm", m)
		d -= m * time.Minute
	}
	if s := d / time.Second; s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// firstOf is the first non-empty string.
func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
