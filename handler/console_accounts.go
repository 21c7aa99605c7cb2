package handler

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gopkg.in/yaml.v3"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/model"
)

// Audit actions of the accounts and QR code pages.
const (
	AuditFollowerSync     = "followers.sync"
	AuditQRCodeCreate     = "qrcode.create"
	AuditContactWayCreate = "contactway.create"
)

// ConsoleSettings is what the console's accounts page shows of the
// configuration, never a secret, and how it checks credentials.
type ConsoleSettings struct {
	// PublicURL is WEJOURNEY_PUBLIC_URL, the base of the callback URLs
	// (empty: the request's own host, with a note to set it).
	PublicURL string
	// SMSProvider ("aliyun", "tencent", "webhook", "log") and SMSSignName
	// (签名) are the SMS channel's settings.
	SMSProvider, SMSSignName string
	// EmailProvider is "smtp" or "log"; EmailFrom the sender address.
	EmailProvider, EmailFrom string
	// QuietHours and FrequencyCaps are WEJOURNEY_QUIET_HOURS and
	// WEJOURNEY_FREQUENCY_CAPS as configured.
	QuietHours, FrequencyCaps string
	// Checkers check an account's credentials by its kind
	// (model.AccountWeChatOA, model.AccountMiniProgram: *wechat.Sender;
	// model.AccountWeCom: *wecom.Client); a kind without one cannot be
	// checked.
	Checkers map[string]CredentialChecker
}

// CredentialChecker asks a platform's token API whether an account's
// credentials are right: *wechat.Sender and *wecom.Client are ones. Its
// refusals wrap a *channels.Error with the platform's errcode.
type CredentialChecker interface {
	CheckCredentials(ctx context.Context, appid string) error
}

// accountView is one account as the accounts page shows it.
type accountView struct {
	Kind, AppID, Name, Callback string
	// Token and AESKey are shown to admins; Masked says they are set but
	// hidden from this user.
	Token, AESKey string
	Masked        bool
	HasSecret     bool
	Sync          *model.FollowerSync
	CanCheck      bool
}

// journeyOverride is a journey whose current version has its own quiet
// hours or frequency caps.
type journeyOverride struct {
	Key, Name, QuietHours string
	Caps                  []string
}

// accountRoutes adds the accounts page and its forms to the console.
func (h *Handler) accountRoutes(console gin.IRoutes) {
	console.GET("/accounts", h.accountsPage)
	console.POST("/accounts/check", h.checkCredentialsForm)
	console.POST("/accounts/followers", h.followerSyncForm)
	console.POST("/accounts/test", h.testSendForm)
}

// publicBase is the base of the callback URLs and whether it was
// configured.
func (h *Handler) publicBase(c *gin.Context) (string, bool) {
	if u := strings.TrimRight(h.cfg.Console.PublicURL, "/"); u != "" {
		return u, true
	}
	if u := strings.TrimRight(h.cfg.Admin.cfg.PublicURL, "/"); u != "" {
		return u, true
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host, false
}

// callbackURL is where WeChat sends an account's events ("" for a
// mini-program, which posts its events to the events API).
func callbackURL(base string, a model.Account) string {
	switch a.Kind {
	case model.AccountWeCom:
		return base + "/wechat/work/" + a.AppID
	case model.AccountMiniProgram:
		return ""
	default:
		return base + "/wechat/oa/" + a.AppID
	}
}

// accountsPage serves GET /admin/accounts.
func (h *Handler) accountsPage(c *gin.Context) {
	data := map[string]any{}
	if d := c.Query("done"); d == "sync_started" || d == "sync_running" {
		data["Done"] = h.cfg.Admin.catalog.T(h.cfg.Admin.lang(c), "accounts_done_"+d, nil)
	}
	h.renderAccounts(c, http.StatusOK, data)
}

// renderAccounts writes the accounts page: three queries (accounts,
// follower syncs, journeys with their current versions).
func (h *Handler) renderAccounts(c *gin.Context, status int, data map[string]any) {
	a, ctx := h.cfg.Admin, c.Request.Context()
	db := h.cfg.DB.WithContext(ctx)
	var rows []model.Account
	if err := db.Order("kind, id").Find(&rows).Error; err != nil {
		h.log.Error("accounts page: accounts", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	var syncs []model.FollowerSync
	if err := db.Find(&syncs).Error; err != nil {
		h.log.Error("accounts page: follower syncs", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	syncOf := map[string]*model.FollowerSync{}
	running := false
	for i := range syncs {
		syncOf[syncs[i].AppID] = &syncs[i]
		running = running || syncs[i].Status == "running"
	}
	isAdmin := allowed(currentUser(c).Role, http.MethodGet, "/admin/apikeys")
	base, configured := h.publicBase(c)
	views := make([]accountView, 0, len(rows))
	for _, r := range rows {
		v := accountView{Kind: r.Kind, AppID: r.AppID, Name: r.Name, Callback: callbackURL(base, r),
			HasSecret: r.AppSecret != "", Sync: syncOf[r.AppID], CanCheck: h.cfg.Console.Checkers[r.Kind] != nil}
		if r.Kind == "" {
			v.Kind = model.AccountWeChatOA
		}
		if isAdmin {
			// The lookup opens the sealed token and key (and caches them).
			if open, err := h.cfg.Accounts.Get(ctx, r.AppID); err == nil {
				v.Token, v.AESKey = open.Token, open.AESKey
			} else {
				h.log.Warn("accounts page: opening an account's secrets", "appid", r.AppID, "err", err)
			}
		} else {
			v.Masked = r.Token != "" || r.AESKey != ""
		}
		views = append(views, v)
	}
	overrides, err := h.journeyOverrides(ctx)
	if err != nil {
		h.log.Error("accounts page: journeys", "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	data["Nav"], data["Accounts"], data["Base"], data["BaseSet"] = "accounts", views, base, configured
	data["Settings"], data["Overrides"], data["Refresh"] = h.cfg.Console, overrides, running
	data["IsAdmin"] = isAdmin
	data["CanOperate"] = allowed(currentUser(c).Role, http.MethodPost, "/admin/accounts/check")
	data["TestChannels"] = []string{channels.SMS, channels.Email}
	data["HasSenders"], data["HasFollowers"] = h.cfg.Senders != nil, h.cfg.Followers != nil
	a.render(c, status, "accounts.html", data)
}

// journeyOverrides lists the journeys whose current version sets its own
// quiet_hours or frequency_caps.
func (h *Handler) journeyOverrides(ctx context.Context) ([]journeyOverride, error) {
	var rows []struct {
		Key, Name, Source string
	}
	err := h.cfg.DB.WithContext(ctx).Table("journeys").
		// key is a reserved word in MySQL: the columns are quoted by gorm.
		Select("?, ?, ?", clause.Column{Table: "journeys", Name: "key"}, clause.Column{Table: "journeys", Name: "name"},
			clause.Column{Table: "journey_versions", Name: "source"}).
		Joins("JOIN journey_versions ON journey_versions.id = journeys.current_version_id").
		Where("journeys.status <> ?", model.JourneyArchived).
		Order(clause.OrderByColumn{Column: clause.Column{Table: "journeys", Name: "key"}}).Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	var out []journeyOverride
	for _, r := range rows {
		var d struct {
			QuietHours    string `yaml:"quiet_hours"`
			FrequencyCaps []struct {
				Channel string `yaml:"channel"`
				Max     int    `yaml:"max"`
				Per     string `yaml:"per"`
			} `yaml:"frequency_caps"`
		}
		if yaml.Unmarshal([]byte(r.Source), &d) != nil || (d.QuietHours == "" && len(d.FrequencyCaps) == 0) {
			continue
		}
		o := journeyOverride{Key: r.Key, Name: r.Name, QuietHours: d.QuietHours}
		for _, fc := range d.FrequencyCaps {
			ch := fc.Channel
			if ch == "" {
				ch = "*"
			}
			o.Caps = append(o.Caps, ch+" "+strconv.Itoa(fc.Max)+"/"+fc.Per)
		}
		out = append(out, o)
	}
	return out, nil
}

// checkCredentialsForm serves POST /admin/accounts/check (appid): the
// page again, with the platform's answer in words by the account.
func (h *Handler) checkCredentialsForm(c *gin.Context) {
	a, l, appid := h.cfg.Admin, h.cfg.Admin.lang(c), c.PostForm("appid")
	acct, err := h.cfg.Accounts.Get(c.Request.Context(), appid)
	if errors.Is(err, model.ErrUnknownAccount) {
		h.renderAccounts(c, http.StatusNotFound, map[string]any{"Error": a.catalog.T(l, "accounts_err_no_account", nil)})
		return
	} else if err != nil {
		h.log.Error("credentials check: load account", "appid", appid, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	kind := acct.Kind
	if kind == "" {
		kind = model.AccountWeChatOA
	}
	checker := h.cfg.Console.Checkers[kind]
	if checker == nil {
		h.renderAccounts(c, http.StatusNotFound, map[string]any{"Error": a.catalog.T(l, "accounts_err_no_checker", nil)})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 15*time.Second)
	defer cancel()
	err = checker.CheckCredentials(ctx, appid)
	id, vars := checkWords(err)
	msg := a.catalog.T(l, id, vars)
	data := map[string]any{"CheckAppID": appid, "CheckOK": err == nil, "CheckMsg": msg}
	if err != nil {
		h.log.Info("credentials check failed", "appid", appid, "err", err)
	}
	h.renderAccounts(c, http.StatusOK, data)
}

// checkWords is the message id (and its values) that says what a
// credentials check answered.
func checkWords(err error) (string, map[string]any) {
	if err == nil {
		return "accounts_check_ok", nil
	}
	var ce *channels.Error
	if errors.As(err, &ce) {
		vars := map[string]any{"Code": ce.Code, "Msg": ce.Msg}
		switch ce.Code {
		case 40013:
			return "accounts_check_bad_appid", vars
		case 40125, 40001, 41004:
			return "accounts_check_bad_secret", vars
		case 40164, 60020:
			return "accounts_check_ip", vars
		}
		return "accounts_check_refused", vars
	}
	if strings.Contains(err.Error(), "no AppSecret") || strings.Contains(err.Error(), "no secret") {
		return "accounts_check_sandbox", nil
	}
	return "accounts_check_unreachable", nil
}

// followerSyncForm serves POST /admin/accounts/followers (appid,
// restart): starts a follower import, as POST /api/v1/followers/sync.
func (h *Handler) followerSyncForm(c *gin.Context) {
	a, l, appid := h.cfg.Admin, h.cfg.Admin.lang(c), c.PostForm("appid")
	if h.cfg.Followers == nil {
		h.renderAccounts(c, http.StatusNotFound, map[string]any{"Error": a.catalog.T(l, "accounts_err_no_followers", nil)})
		return
	}
	acct, err := h.cfg.Accounts.Get(c.Request.Context(), appid)
	if errors.Is(err, model.ErrUnknownAccount) || (err == nil && acct.Kind != "" && acct.Kind != model.AccountWeChatOA) {
		h.renderAccounts(c, http.StatusBadRequest, map[string]any{"Error": a.catalog.T(l, "accounts_err_no_account", nil)})
		return
	} else if err != nil {
		h.log.Error("follower sync: load account", "appid", appid, "err", err)
		a.renderError(c, http.StatusServiceUnavailable, "db_error")
		return
	}
	restart := c.PostForm("restart") == "yes"
	started, err := h.cfg.Followers.Start(appid, restart)
	if err != nil {
		h.log.Error("follower sync: start", "appid", appid, "err", err)
		h.renderAccounts(c, http.StatusInternalServerError, map[string]any{"Error": a.catalog.T(l, "accounts_err_sync", nil)})
		return
	}
	if !started {
		c.Redirect(http.StatusSeeOther, "/admin/accounts?done=sync_running")
		return
	}
	a.audit(c, AuditFollowerSync, appid, gin.H{"restart": restart})
	c.Redirect(http.StatusSeeOther, "/admin/accounts?done=sync_started")
}

// testSendForm serves POST /admin/accounts/test (channel, to, text,
// subject, template): one test message, as POST
// /api/v1/channels/{channel}/test, audited the same way.
func (h *Handler) testSendForm(c *gin.Context) {
	a, l := h.cfg.Admin, h.cfg.Admin.lang(c)
	channel := c.PostForm("channel")
	if h.cfg.Senders == nil || (channel != channels.SMS && channel != channels.Email) {
		h.renderAccounts(c, http.StatusBadRequest, map[string]any{"Error": a.catalog.T(l, "accounts_err_channel", nil)})
		return
	}
	req := channels.TestRequest{To: strings.TrimSpace(c.PostForm("to")), Text: c.PostForm("text"),
		Subject: c.PostForm("subject"), Template: c.PostForm("template")}
	msg, err := req.Message(channel)
	if err != nil {
		h.renderAccounts(c, http.StatusBadRequest, map[string]any{"Error": a.catalog.T(l, "accounts_err_to", nil)})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), testSendTimeout)
	defer cancel()
	res, err := h.cfg.Senders.Send(ctx, msg)
	h.audit(c, AuditChannelTest, channel, gin.H{"to": msg.To, "ok": err == nil})
	data := map[string]any{"TestChannel": channel}
	switch {
	case errors.Is(err, channels.ErrNoSender):
		data["TestOK"], data["TestMsg"] = false, a.catalog.T(l, "accounts_test_no_sender", map[string]any{"Setup": channels.Setup(channel)})
	case err != nil:
		f := channels.Describe(err)
		data["TestOK"], data["TestMsg"] = false, a.catalog.T(l, "accounts_test_failed", map[string]any{"Class": a.catalog.T(l, "accounts_class_"+f.Class, nil), "Error": f.Error})
	case res.Sandbox:
		data["TestOK"], data["TestMsg"] = true, a.catalog.T(l, "accounts_test_sandbox", nil)
	default:
		data["TestOK"], data["TestMsg"] = true, a.catalog.T(l, "accounts_test_sent", map[string]any{"ID": res.ProviderID})
	}
	h.renderAccounts(c, http.StatusOK, data)
}
