package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// Audit actions of the journey editor.
const (
	AuditJourneyDraft        = "journey.draft"
	AuditJourneyDraftDiscard = "journey.draft_discard"
)

// editorTemplate is the journey /admin/journeys/new starts from: a
// follow welcome with a wait and a branch.
const editorTemplate = `key: follow-welcome
name: 关注欢迎
trigger:
  event: wechat.subscribe
entry:
  once: true
steps:
  - id: hello
    send:
      channel: wechat.text
      text: 欢迎关注！{{ .member.nickname }}
    next: pause
  - id: pause
    wait: 1h
    next: by_scene
  - id: by_scene
    branch:
      - when: event.scene startsWith "store_"
        next: store_tip
  - id: store_tip
    send:
      channel: wechat.text
      text: 您在门店 {{ .event.scene }} 扫码关注，到店出示本消息可领取礼品。
`

// editorPlaceholders are the template names the send fieldset lists.
var editorPlaceholders = []string{"{{ .member.nickname }}", "{{ .member.openid }}", "{{ .member.phone }}",
	"{{ .member.attrs.level }}", "{{ .event.scene }}", "{{ .event.type }}", "{{ .event.at }}"}

// editorChannels are the send channels the channel select offers when the
// senders do not say which they have.
var editorChannels = []string{channels.WeChatText, channels.WeChatNews, channels.WeChatImage, channels.WeChatMiniprogramPage,
	channels.WeChatTemplate, channels.WeChatSubscribe, channels.WeComWelcome, channels.WeComText, channels.WeComGroupMessage,
	channels.SMS, channels.Email}

// journeyKeyPattern is a key the editor's URLs can carry ("new" names
// the new journey's page, so it is not a key either).
var journeyKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// editorRoutes adds the journey editor and test pages to the console.
func (h *Handler) editorRoutes(console gin.IRoutes) {
	if h.cfg.Journeys == nil || h.cfg.TestRuns == nil {
		return
	}
	console.GET("/journeys/new", h.editorNew)
	console.POST("/journeys/new", h.editorSave)
	console.GET("/journeys/:key/edit", h.editorPage)
	console.POST("/journeys/:key/edit", h.editorSave)
	console.POST("/journeys/:key/validate", h.editorValidate)
	console.POST("/journeys/:key/publish", h.editorPublish)
	console.POST("/journeys/:key/discard", h.editorDiscard)
	console.GET("/journeys/:key/test", h.testPage)
	console.POST("/journeys/:key/test", h.testPageRun)
}

// edProblem is one of the engine's messages about a draft: its line (0:
// none), where (trigger, step "hello", …) and what.
type edProblem struct {
	Line  int
	Where string
	Msg   string
	// section is what the message belongs to: "key", "trigger", "entry",
	// "exit", "goal", "step:ID", or "" for the journey as a whole.
	section string
}

var (
	problemLine = regexp.MustCompile(`^(\d+): (.*)$`)
	yamlLine    = regexp.MustCompile(`line (\d+)`)
	problemStep = regexp.MustCompile(`^step "([^"]*)"`)
)

// edProblems reads the engine's messages (a journey.ErrInvalid error of
// a journey parsed as name).
func edProblems(name string, err error) []edProblem {
	var out []edProblem
	for _, line := range invalidProblems(err) {
		line = strings.TrimPrefix(line, name+":")
		line = strings.TrimSpace(line)
		p := edProblem{Msg: line}
		if m := problemLine.FindStringSubmatch(line); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Msg = m[2]
		} else if m := yamlLine.FindStringSubmatch(line); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
		}
		if where, rest, ok := strings.Cut(p.Msg, ": "); ok {
			if m := problemStep.FindStringSubmatch(where); m != nil {
				p.Where, p.Msg, p.section = where, rest, "step:"+m[1]
			} else if f := strings.FieldsFunc(where, func(r rune) bool { return r == '.' || r == '[' }); len(f) > 0 &&
				slices.Contains([]string{"key", "name", "trigger", "entry", "exit", "goal"}, f[0]) {
				p.Where, p.Msg, p.section = where, rest, f[0]
			}
		}
		out = append(out, p)
	}
	return out
}

// editorCheck validates a draft with the engine's parser (Engine.Parse:
// the configured channels, event sources and kinds), as publishing does,
// and that it is journey key's ("" for a new journey). nil: valid.
func (h *Handler) editorCheck(key string, src []byte) []edProblem {
	name := key + ".yaml"
	if key == "" {
		name = "draft.yaml"
	}
	c, err := h.cfg.TestRuns.Parse(name, src)
	if err != nil {
		if !errors.Is(err, journey.ErrInvalid) {
			return []edProblem{{Msg: err.Error()}}
		}
		return edProblems(name, err)
	}
	if key != "" && c.Def.Key != key {
		return []edProblem{{section: "key", Where: "key", Msg: fmt.Sprintf("key %q is not the journey edited (%q): a new key is a new journey", c.Def.Key, key)}}
	}
	return nil
}

// edStepView is a step's fieldset.
type edStepView struct {
	edStep
	Index    int
	Problems []string
	// Preview is the step's message rendered for the preview's member;
	// NotOnPath: the member's path does not reach the step.
	Preview   *journey.TestMessage
	NotOnPath bool
	// ChannelKnown: the step's channel is one of the configured ones.
	ChannelKnown bool
	// Num is the step's number (from 1); T, Channels and Holders are
	// the page's texts, channels and placeholders.
	Num               int
	T                 map[string]string
	Channels, Holders []string
}

// editorData is the editor page.
type editorData struct {
	Key      string // "" for a new journey
	Action   string // where the forms post
	J        edJourney
	Steps    []edStepView
	YAML     string
	Problems []edProblem
	// Sec are the messages next to the journey's fields, by section.
	Sec         map[string][]string
	Parsed      bool // the YAML could be read into the forms
	HasDraft    bool
	Draft       model.JourneyDraft
	LiveVersion int
	Channels    []string
	Kinds       []string
	Holders     []string
	Preview     string // the preview's member
	PreviewErr  string
	FieldError  string
}

// editorNew serves GET /admin/journeys/new: the template, not saved yet.
func (h *Handler) editorNew(c *gin.Context) {
	h.renderEditor(c, http.StatusOK, "", []byte(editorTemplate), map[string]any{})
}

// editorPage serves GET /admin/journeys/{key}/edit: the key's draft, or
// else its live version's YAML.
func (h *Handler) editorPage(c *gin.Context) {
	a, key := h.cfg.Admin, c.Param("key")
	data := map[string]any{}
	if d := c.Query("done"); d == "saved" || d == "discarded" {
		data["Done"] = a.catalog.T(a.lang(c), "editor_done_"+d, nil)
	}
	src, ok := h.editorSource(c, key)
	if !ok {
		return
	}
	h.renderEditor(c, http.StatusOK, key, src, data)
}

// editorSource is the YAML the editor of key starts from: its draft, or
// its live version; without either it answers 404 and reports false.
func (h *Handler) editorSource(c *gin.Context, key string) ([]byte, bool) {
	a, ctx := h.cfg.Admin, c.Request.Context()
	d, err := model.GetDraft(ctx, h.cfg.DB, key)
	if err == nil {
		return []byte(d.Source), true
	}
	if !errors.Is(err, model.ErrNoDraft) {
		h.log.Error("reading a journey draft", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return nil, false
	}
	src, _, err := h.liveSource(ctx, key)
	if errors.Is(err, gorm.ErrRecordNotFound) {
		l := a.lang(c)
		a.render(c, http.StatusNotFound, "error.html", map[string]any{"Message": a.catalog.T(l, "editor_no_journey", map[string]any{"Key": key})})
		return nil, false
	}
	if err != nil {
		h.log.Error("reading a journey's live version", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return nil, false
	}
	return []byte(src), true
}

// liveSource is the YAML and number of journey key's live version
// (gorm.ErrRecordNotFound: no such journey).
func (h *Handler) liveSource(ctx context.Context, key string) (string, int, error) {
	db := h.cfg.DB.WithContext(ctx)
	var j model.Journey
	if err := db.Where(&model.Journey{Key: key}).Take(&j).Error; err != nil {
		return "", 0, err
	}
	var v model.JourneyVersion
	if err := db.Take(&v, j.CurrentVersionID).Error; err != nil {
		return "", 0, fmt.Errorf("journey %s version %d: %w", key, j.CurrentVersionID, err)
	}
	return v.Source, v.Version, nil
}

// renderEditor shows the editor of key on src. data may carry Done,
// Error, a form (edJourney, when the posted forms could not be written as
// YAML) and preview results.
func (h *Handler) renderEditor(c *gin.Context, status int, key string, src []byte, data map[string]any) {
	a, ctx := h.cfg.Admin, c.Request.Context()
	ed := editorData{Key: key, Action: "/admin/journeys/new", YAML: string(src), Sec: map[string][]string{},
		Channels: h.channelNames(), Kinds: edKinds, Holders: editorPlaceholders}
	if key != "" {
		ed.Action = "/admin/journeys/" + url.PathEscape(key) + "/edit"
		if d, err := model.GetDraft(ctx, h.cfg.DB, key); err == nil {
			ed.HasDraft, ed.Draft = true, d
		}
		if _, v, err := h.liveSource(ctx, key); err == nil {
			ed.LiveVersion = v
		}
	}
	if j, ok := data["Form"].(edJourney); ok {
		ed.J, ed.Parsed = j, true
	} else if j, err := edFromYAML(src); err == nil {
		ed.J, ed.Parsed = j, true
	}
	ed.Problems = h.editorCheck(key, src)
	stepSec := map[string][]string{}
	for _, p := range ed.Problems {
		if strings.HasPrefix(p.section, "step:") {
			stepSec[p.section] = append(stepSec[p.section], p.Msg)
		} else if p.section != "" {
			ed.Sec[p.section] = append(ed.Sec[p.section], p.Msg)
		}
	}
	previews, _ := data["Previews"].(map[string]*journey.TestMessage)
	texts := a.catalog.Texts(a.lang(c))
	for i, s := range ed.J.Steps {
		v := edStepView{edStep: s, Index: i, Problems: stepSec["step:"+s.ID], ChannelKnown: slices.Contains(ed.Channels, s.Channel),
			Num: i + 1, T: texts, Channels: ed.Channels, Holders: ed.Holders}
		if previews != nil && s.Kind == "send" {
			v.Preview = previews[s.ID]
			v.NotOnPath = v.Preview == nil
		}
		ed.Steps = append(ed.Steps, v)
	}
	ed.Preview, _ = data["PreviewMember"].(string)
	ed.PreviewErr, _ = data["PreviewErr"].(string)
	ed.FieldError, _ = data["FieldError"].(string)
	data["Nav"], data["Ed"] = "journeys", ed
	// A viewer reads the editor but gets no publish or discard button.
	data["CanOperate"] = allowed(currentUser(c).Role, http.MethodPost, "/admin/journeys/:key/publish")
	a.render(c, status, "editor.html", data)
}

// channelNames are the channels the configured senders have (all send
// channels when the senders do not say).
func (h *Handler) channelNames() []string {
	if r, ok := h.cfg.Senders.(interface{ Channels() []string }); ok {
		if cs := r.Channels(); len(cs) > 0 {
			return cs
		}
	}
	return editorChannels
}

// edFromForm reads the editor's forms.
func edFromForm(c *gin.Context) edJourney {
	f := func(name string) string { return strings.ReplaceAll(c.PostForm(name), "\r\n", "\n") }
	j := edJourney{Key: strings.TrimSpace(f("key")), Name: f("name"), TriggerEvent: strings.TrimSpace(f("trigger_event")),
		TriggerWhere: f("trigger_where"), Once: f("once") == "yes", Cooldown: strings.TrimSpace(f("cooldown")),
		Goal: edRule{Event: strings.TrimSpace(f("goal_event")), Where: f("goal_where"), When: f("goal_when")}, Keep: f("keep")}
	ev, wh, wn := c.PostFormArray("exit_event"), c.PostFormArray("exit_where"), c.PostFormArray("exit_when")
	for i := range ev {
		r := edRule{Event: strings.TrimSpace(ev[i])}
		if i < len(wh) {
			r.Where = wh[i]
		}
		if i < len(wn) {
			r.When = wn[i]
		}
		if !r.empty() {
			j.Exits = append(j.Exits, r)
		}
	}
	n, _ := strconv.Atoi(c.PostForm("steps"))
	for i := 0; i < min(n, 500); i++ {
		p := func(name string) string { return f(fmt.Sprintf("s.%d.%s", i, name)) }
		t := func(name string) string { return strings.TrimSpace(p(name)) }
		s := edStep{ID: t("id"), Kind: t("kind"), Next: t("next"), OnTimeout: t("on_timeout"),
			Channel: t("channel"), Text: p("text"), Subject: p("subject"), URL: t("url"), TemplateID: t("template_id"),
			Template: t("template"), Category: t("category"), Fallback: t("fallback"),
			Duration: t("duration"), Until: t("until"), Event: t("event"), Where: p("where"), Timeout: t("timeout"),
			Else: t("else"), AddTags: p("add_tags"), RemoveTags: p("remove_tags"), Set: p("set"), Keep: p("keep")}
		whens, weights, nexts := c.PostFormArray(fmt.Sprintf("s.%d.when", i)), c.PostFormArray(fmt.Sprintf("s.%d.weight", i)), c.PostFormArray(fmt.Sprintf("s.%d.arm_next", i))
		for k, next := range nexts {
			a := edArm{Next: strings.TrimSpace(next)}
			if k < len(whens) {
				a.When = whens[k]
			}
			if k < len(weights) {
				a.Weight = strings.TrimSpace(weights[k])
			}
			if a.When != "" || a.Weight != "" || a.Next != "" {
				s.Arms = append(s.Arms, a)
			}
		}
		j.Steps = append(j.Steps, s)
	}
	return j
}

// edApply does a forms button: add a step of a kind (linked after the
// last step when that one has no next), remove, move up or down.
func edApply(j *edJourney, op, addKind string) {
	verb, arg, _ := strings.Cut(op, ".")
	i, err := strconv.Atoi(arg)
	ok := err == nil && i >= 0 && i < len(j.Steps)
	switch {
	case verb == "add" && slices.Contains(edKinds, addKind):
		id := addKind
		for n := 2; slices.ContainsFunc(j.Steps, func(s edStep) bool { return s.ID == id }); n++ {
			id = fmt.Sprintf("%s_%d", addKind, n)
		}
		if k := len(j.Steps) - 1; k >= 0 {
			if last := &j.Steps[k]; last.Next == "" && !slices.Contains([]string{"branch", "split", "other"}, last.Kind) {
				last.Next = id
			}
		}
		s := edStep{ID: id, Kind: addKind}
		if addKind == "send" {
			s.Channel = channels.WeChatText
		}
		j.Steps = append(j.Steps, s)
	case verb == "remove" && ok:
		j.Steps = slices.Delete(j.Steps, i, i+1)
	case verb == "up" && ok && i > 0:
		j.Steps[i-1], j.Steps[i] = j.Steps[i], j.Steps[i-1]
	case verb == "down" && ok && i+1 < len(j.Steps):
		j.Steps[i], j.Steps[i+1] = j.Steps[i+1], j.Steps[i]
	}
}

// editorSave serves POST /admin/journeys/new and /admin/journeys/{key}/edit:
// op "yaml" saves the YAML side; any other op saves the forms (after
// add.KIND, remove.N, up.N, down.N), and "preview" then renders the send
// steps for the preview's member. The draft is saved valid or not.
func (h *Handler) editorSave(c *gin.Context) {
	a, ctx, key := h.cfg.Admin, c.Request.Context(), c.Param("key")
	l := a.lang(c)
	op := c.PostForm("op")
	var src []byte
	var form edJourney
	if op == "yaml" {
		src = []byte(strings.ReplaceAll(c.PostForm("yaml"), "\r\n", "\n"))
	} else {
		form = edFromForm(c)
		if strings.HasPrefix(op, "add") || strings.Contains(op, ".") {
			edApply(&form, op, c.PostForm("add_kind"))
		}
		var err error
		if src, err = form.yaml(); err != nil {
			var fe *edFieldError
			if !errors.As(err, &fe) {
				fe = &edFieldError{Msg: err.Error()}
			}
			cur, _ := h.editorCurrent(ctx, key)
			h.renderEditor(c, http.StatusBadRequest, key, cur, map[string]any{"Form": form,
				"FieldError": a.catalog.T(l, "editor_field_error", map[string]any{"Field": fe.Field, "Msg": fe.Msg})})
			return
		}
	}
	if strings.TrimSpace(string(src)) == "" {
		h.renderEditor(c, http.StatusBadRequest, key, src, map[string]any{"Error": a.catalog.T(l, "editor_empty", nil)})
		return
	}
	if key == "" {
		j, _ := edFromYAML(src)
		refuse := ""
		switch {
		case !journeyKeyPattern.MatchString(j.Key) || j.Key == "new":
			refuse = a.catalog.T(l, "editor_bad_key", map[string]any{"Key": j.Key})
		case h.journeyKnown(ctx, j.Key):
			refuse = a.catalog.T(l, "editor_key_taken", map[string]any{"Key": j.Key})
		}
		if refuse != "" {
			h.renderEditor(c, http.StatusConflict, "", src, map[string]any{"Error": refuse})
			return
		}
		key = j.Key
	}
	u := currentUser(c)
	if err := model.SaveDraft(ctx, h.cfg.DB, model.JourneyDraft{Key: key, Source: string(src), UpdatedBy: u.Username, UpdatedAt: h.now()}); err != nil {
		h.log.Error("saving a journey draft", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	problems := h.editorCheck(key, src)
	a.audit(c, AuditJourneyDraft, key, gin.H{"valid": len(problems) == 0, "op": op})
	if op == "preview" {
		h.editorPreview(c, key, src, problems)
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/journeys/"+url.PathEscape(key)+"/edit?done=saved")
}

// editorCurrent is the draft (or live YAML) of key, for a page that
// shows a refused form.
func (h *Handler) editorCurrent(ctx context.Context, key string) ([]byte, error) {
	if key == "" {
		return []byte(editorTemplate), nil
	}
	if d, err := model.GetDraft(ctx, h.cfg.DB, key); err == nil {
		return []byte(d.Source), nil
	}
	src, _, err := h.liveSource(ctx, key)
	return []byte(src), err
}

// journeyKnown reports whether key has a journey or a draft.
func (h *Handler) journeyKnown(ctx context.Context, key string) bool {
	if _, err := model.GetDraft(ctx, h.cfg.DB, key); err == nil {
		return true
	}
	var n int64
	h.cfg.DB.WithContext(ctx).Model(&model.Journey{}).Where(&model.Journey{Key: key}).Count(&n)
	return n > 0
}

// editorPreview renders the saved draft's send steps for the member the
// preview names (member id or openid), with Engine.TestRun.
func (h *Handler) editorPreview(c *gin.Context, key string, src []byte, problems []edProblem) {
	a := h.cfg.Admin
	l := a.lang(c)
	who := strings.TrimSpace(c.PostForm("preview_member"))
	data := map[string]any{"PreviewMember": who}
	switch {
	case who == "":
		data["PreviewErr"] = a.catalog.T(l, "editor_preview_who", nil)
	case len(problems) > 0:
		data["PreviewErr"] = a.catalog.T(l, "editor_preview_invalid", nil)
	default:
		run, _, _, err := h.runTest(c.Request.Context(), key, testRequestFor(who, string(src)))
		if errors.Is(err, gorm.ErrRecordNotFound) {
			data["PreviewErr"] = a.catalog.T(l, "editor_no_member", map[string]any{"Member": who})
			break
		}
		if err != nil {
			data["PreviewErr"] = err.Error()
			break
		}
		previews := map[string]*journey.TestMessage{}
		for _, s := range run.Steps {
			if s.Message != nil {
				previews[s.Step] = s.Message
			}
		}
		data["Previews"] = previews
	}
	h.renderEditor(c, http.StatusOK, key, src, data)
}

// testRequestFor names a member by id (digits) or openid.
func testRequestFor(who, yamlSrc string) testRunRequest {
	req := testRunRequest{YAML: yamlSrc}
	if id, err := strconv.ParseInt(who, 10, 64); err == nil && id > 0 {
		req.MemberID = id
	} else {
		req.Member.OpenID = who
	}
	return req
}

// editorValidate serves POST /admin/journeys/{key}/validate: the forms
// or the YAML (op "yaml") validated, answered as the messages fragment;
// nothing is saved.
func (h *Handler) editorValidate(c *gin.Context) {
	a, key := h.cfg.Admin, c.Param("key")
	if key == "new" {
		key = ""
	}
	var src []byte
	var problems []edProblem
	if c.PostForm("op") == "yaml" {
		src = []byte(strings.ReplaceAll(c.PostForm("yaml"), "\r\n", "\n"))
	} else {
		var err error
		if src, err = edFromForm(c).yaml(); err != nil {
			problems = []edProblem{{Msg: err.Error()}}
		}
	}
	if problems == nil {
		problems = h.editorCheck(key, src)
	}
	a.render(c, http.StatusOK, "editor.problems", map[string]any{"Ed": editorData{Problems: problems}})
}

// editorPublish serves POST /admin/journeys/{key}/publish: the draft is
// published as POST /api/v1/journeys/{key}/publish does (audited), then
// deleted; an invalid draft is refused with the engine's messages.
func (h *Handler) editorPublish(c *gin.Context) {
	a, ctx, key := h.cfg.Admin, c.Request.Context(), c.Param("key")
	l := a.lang(c)
	d, err := model.GetDraft(ctx, h.cfg.DB, key)
	if errors.Is(err, model.ErrNoDraft) {
		a.render(c, http.StatusNotFound, "error.html", map[string]any{"Message": a.catalog.T(l, "editor_no_draft", map[string]any{"Key": key})})
		return
	}
	if err != nil {
		h.log.Error("reading a journey draft", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	st, err := h.cfg.Journeys.PublishSource(ctx, key, key+".yaml", []byte(d.Source), journey.OriginAPI)
	if err == nil || errors.Is(err, journey.ErrInvalid) {
		h.audit(c, AuditJourneyPublish, key, gin.H{"version": st.Version, "journey_status": st.Status, "via": "console"})
	}
	switch {
	case errors.Is(err, journey.ErrInvalid):
		h.renderEditor(c, http.StatusBadRequest, key, []byte(d.Source), map[string]any{"Error": a.catalog.T(l, "editor_publish_invalid", nil)})
		return
	case err != nil:
		h.log.Error("publishing a journey draft", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	if err := model.DeleteDraft(ctx, h.cfg.DB, key); err != nil {
		h.log.Error("deleting a published journey draft", "journey", key, "err", err)
	}
	c.Redirect(http.StatusSeeOther, "/admin/journeys/"+url.PathEscape(key)+"?done=published")
}

// editorDiscard serves POST /admin/journeys/{key}/discard with confirm=yes:
// the draft is deleted (the live version, if any, is untouched).
func (h *Handler) editorDiscard(c *gin.Context) {
	a, ctx, key := h.cfg.Admin, c.Request.Context(), c.Param("key")
	if c.PostForm("confirm") != "yes" {
		src, ok := h.editorSource(c, key)
		if ok {
			h.renderEditor(c, http.StatusBadRequest, key, src, map[string]any{"Error": a.catalog.T(a.lang(c), "editor_discard_unconfirmed", nil)})
		}
		return
	}
	if err := model.DeleteDraft(ctx, h.cfg.DB, key); err != nil {
		h.log.Error("deleting a journey draft", "journey", key, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	a.audit(c, AuditJourneyDraftDiscard, key, nil)
	if _, _, err := h.liveSource(ctx, key); err == nil {
		c.Redirect(http.StatusSeeOther, "/admin/journeys/"+url.PathEscape(key)+"/edit?done=discarded")
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/journeys")
}

// testStepView is a step of a test run as the test page shows it.
type testStepView struct {
	journey.TestStep
	Num                     int
	KindLabel, OutcomeLabel string
}

// testPage serves GET /admin/journeys/{key}/test: the test run's form.
func (h *Handler) testPage(c *gin.Context) {
	h.renderTest(c, http.StatusOK, map[string]any{})
}

func (h *Handler) renderTest(c *gin.Context, status int, data map[string]any) {
	a, ctx, key := h.cfg.Admin, c.Request.Context(), c.Param("key")
	_, hasDraft := model.GetDraft(ctx, h.cfg.DB, key)
	_, live, liveErr := h.liveSource(ctx, key)
	if hasDraft != nil && liveErr != nil {
		l := a.lang(c)
		a.render(c, http.StatusNotFound, "error.html", map[string]any{"Message": a.catalog.T(l, "editor_no_journey", map[string]any{"Key": key})})
		return
	}
	data["Nav"], data["Key"], data["HasDraft"], data["LiveVersion"] = "journeys", key, hasDraft == nil, live
	if _, ok := data["Source"]; !ok {
		data["Source"] = "live"
		if hasDraft == nil {
			data["Source"] = "draft"
		}
	}
	a.render(c, status, "editor_test.html", data)
}

// testPageRun serves POST /admin/journeys/{key}/test: member (id or
// openid), event (JSON, optional), source (draft or live), send (yes: to a
// tester for real). It runs the same test run as POST
// /api/v1/journeys/{key}/test.
func (h *Handler) testPageRun(c *gin.Context) {
	a, ctx, key := h.cfg.Admin, c.Request.Context(), c.Param("key")
	l := a.lang(c)
	who, evText, source := strings.TrimSpace(c.PostForm("member")), strings.TrimSpace(c.PostForm("event")), c.PostForm("source")
	send := c.PostForm("send") == "yes"
	data := map[string]any{"Member": who, "Event": evText, "Source": source, "Send": send}
	if who == "" {
		data["Error"] = a.catalog.T(l, "editor_preview_who", nil)
		h.renderTest(c, http.StatusBadRequest, data)
		return
	}
	yamlSrc := ""
	if source == "draft" {
		d, err := model.GetDraft(ctx, h.cfg.DB, key)
		if err != nil {
			data["Error"] = a.catalog.T(l, "editor_no_draft", map[string]any{"Key": key})
			h.renderTest(c, http.StatusNotFound, data)
			return
		}
		yamlSrc = d.Source
	}
	req := testRequestFor(who, yamlSrc)
	req.Send = send
	if evText != "" {
		var ev testRunEvent
		if err := json.Unmarshal([]byte(evText), &ev); err != nil || ev.Type == "" {
			data["Error"] = a.catalog.T(l, "editor_bad_event", nil)
			h.renderTest(c, http.StatusBadRequest, data)
			return
		}
		req.Event = &ev
	}
	run, m, status, err := h.runTest(ctx, key, req)
	var notTester *errTestNotTester
	switch {
	case errors.As(err, &notTester):
		data["Error"] = a.catalog.T(l, "editor_not_tester", map[string]any{"Member": who, "ID": notTester.member})
		h.renderTest(c, status, data)
		return
	case errors.Is(err, gorm.ErrRecordNotFound):
		data["Error"] = a.catalog.T(l, "editor_no_member", map[string]any{"Member": who})
		h.renderTest(c, status, data)
		return
	case errors.Is(err, journey.ErrInvalid):
		data["Error"], data["Problems"] = a.catalog.T(l, "editor_test_invalid", nil), invalidProblems(err)
		h.renderTest(c, status, data)
		return
	case err != nil:
		data["Error"] = err.Error()
		h.renderTest(c, status, data)
		return
	}
	h.audit(c, AuditJourneyTest, key, gin.H{"member_id": m.ID, "draft": req.YAML != "", "via": "console"})
	texts := a.catalog.Texts(l)
	label := func(prefix, v string) string {
		if t := texts[prefix+strings.NewReplacer(".", "_", ":", "_").Replace(v)]; t != "" {
			return t
		}
		return v
	}
	var steps []testStepView
	for i, s := range run.Steps {
		out := label("editor_outcome_", s.Outcome)
		if arm, ok := strings.CutPrefix(s.Outcome, "arm:"); ok {
			out = a.catalog.T(l, "editor_outcome_arm", map[string]any{"Step": arm})
		} else if n, err := strconv.Atoi(strings.TrimPrefix(s.Outcome, "branch:")); err == nil {
			out = a.catalog.T(l, "editor_outcome_branch", map[string]any{"N": n + 1})
		}
		steps = append(steps, testStepView{TestStep: s, Num: i + 1, KindLabel: label("editor_kind_", s.Kind), OutcomeLabel: out})
	}
	data["Run"], data["RunSteps"], data["End"], data["Who"] = run, steps, label("editor_end_", run.End), m
	h.renderTest(c, http.StatusOK, data)
}
