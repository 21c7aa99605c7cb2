package handler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/model"
	"github.com/wejourney/wejourney/web"
)

// sessionCookie holds "username|expiry|hmac".
const sessionCookie = "wj_session"

// AdminConfig configures the admin page.
type AdminConfig struct {
	// DB is required.
	DB *gorm.DB
	// Secret signs session cookies; required.
	Secret []byte
	// Sandbox shows the "messages are only recorded" note.
	Sandbox bool
	// SessionTTL defaults to 12 hours.
	SessionTTL time.Duration
}

// Admin serves the admin page and the JSON API behind it.
type Admin struct {
	cfg  AdminConfig
	tmpl *template.Template
}

// NewAdmin returns the admin page.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	return &Admin{cfg: cfg, tmpl: web.Templates()}
}

func (a *Admin) sign(payload string) string {
	m := hmac.New(sha256.New, a.cfg.Secret)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// session returns the logged-in username, or "".
func (a *Admin) session(c *gin.Context) string {
	v, err := c.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	parts := strings.Split(v, "|")
	if len(parts) != 3 || !hmac.Equal([]byte(a.sign(parts[0]+"|"+parts[1])), []byte(parts[2])) {
		return ""
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return ""
	}
	return parts[0]
}

func (a *Admin) requireSession(c *gin.Context) {
	if a.session(c) == "" {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "log in at /admin/login"})
		return
	}
	c.Next()
}

func lang(c *gin.Context) string {
	if l := c.Query("lang"); l != "" {
		c.SetCookie("wj_lang", web.Lang(l), 365*24*3600, "/", "", false, false)
		return web.Lang(l)
	}
	l, _ := c.Cookie("wj_lang")
	return web.Lang(l)
}

func (a *Admin) render(c *gin.Context, status int, name string, data map[string]any) {
	l := lang(c)
	data["Lang"], data["T"] = l, web.Messages[l]
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := a.tmpl.ExecuteTemplate(c.Writer, name, data); err != nil {
		c.Error(err)
	}
}

func (a *Admin) loginPage(c *gin.Context) {
	a.render(c, http.StatusOK, "login.html", map[string]any{"Error": c.Query("error") != ""})
}

func (a *Admin) login(c *gin.Context) {
	var u model.AdminUser
	err := a.cfg.DB.WithContext(c.Request.Context()).Where(&model.AdminUser{Username: c.PostForm("username")}).First(&u).Error
	if err != nil || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(c.PostForm("password"))) != nil {
		a.render(c, http.StatusUnauthorized, "login.html", map[string]any{"Error": true})
		return
	}
	payload := fmt.Sprintf("%s|%d", u.Username, time.Now().Add(a.cfg.SessionTTL).Unix())
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: payload + "|" + a.sign(payload), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: int(a.cfg.SessionTTL.Seconds())})
	c.Redirect(http.StatusSeeOther, "/admin/")
}

func (a *Admin) logout(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	c.Redirect(http.StatusSeeOther, "/admin/login")
}

// chinaTime is how operators read times: UTC+8.
var chinaTime = time.FixedZone("CST", 8*3600)

// JourneyRow is one journey with its enrollment counts.
type JourneyRow struct {
	ID        int64  `json:"id"`
	Key       string `json:"key"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Version   int    `json:"version"`
	Entered   int64  `json:"entered"`
	Active    int64  `json:"active"`
	Completed int64  `json:"completed"`
	Exited    int64  `json:"exited"`
	Dropped   int64  `json:"dropped"`
}

// DeliveryRow is one delivery as the admin page lists it.
type DeliveryRow struct {
	ID        int64     `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Journey   string    `json:"journey"`
	To        string    `json:"to"`
	Channel   string    `json:"channel"`
	Status    string    `json:"status"`
	Content   string    `json:"content"`
	Error     string    `json:"error,omitempty"`
}

func (a *Admin) journeys(c *gin.Context) ([]JourneyRow, error) {
	db := a.cfg.DB.WithContext(c.Request.Context())
	var js []model.Journey
	if err := db.Order("id").Find(&js).Error; err != nil {
		return nil, err
	}
	versionIDs := make([]int64, 0, len(js))
	for _, j := range js {
		versionIDs = append(versionIDs, j.CurrentVersionID)
	}
	var versions []model.JourneyVersion
	if err := db.Select("id", "version").Where("id IN ?", versionIDs).Find(&versions).Error; err != nil {
		return nil, err
	}
	versionOf := make(map[int64]int, len(versions))
	for _, v := range versions {
		versionOf[v.ID] = v.Version
	}
	var counts []struct {
		JourneyID int64
		Status    string
		N         int64
	}
	if err := db.Model(&model.Enrollment{}).Select("journey_id, status, count(*) AS n").
		Group("journey_id, status").Scan(&counts).Error; err != nil {
		return nil, err
	}
	rows := make([]JourneyRow, 0, len(js))
	index := make(map[int64]int, len(js))
	for _, j := range js {
		index[j.ID] = len(rows)
		rows = append(rows, JourneyRow{ID: j.ID, Key: j.Key, Name: j.Name, Status: j.Status, Version: versionOf[j.CurrentVersionID]})
	}
	for _, ct := range counts {
		i, ok := index[ct.JourneyID]
		if !ok {
			continue
		}
		r := &rows[i]
		r.Entered += ct.N
		switch ct.Status {
		case model.EnrollmentActive:
			r.Active = ct.N
		case model.EnrollmentCompleted:
			r.Completed = ct.N
		case model.EnrollmentExited:
			r.Exited = ct.N
		case model.EnrollmentFailed:
			r.Dropped = ct.N
		}
	}
	return rows, nil
}

func (a *Admin) deliveries(c *gin.Context, limit int) ([]DeliveryRow, error) {
	db := a.cfg.DB.WithContext(c.Request.Context())
	var ds []model.Delivery
	if err := db.Order("id DESC").Limit(limit).Find(&ds).Error; err != nil {
		return nil, err
	}
	keys := map[int64]string{}
	rows := make([]DeliveryRow, 0, len(ds))
	for _, d := range ds {
		if _, ok := keys[d.JourneyID]; !ok {
			var j model.Journey
			db.Select("key").First(&j, d.JourneyID)
			keys[d.JourneyID] = j.Key
		}
		var p struct {
			Text       string
			TemplateID string
			Data       map[string]string
		}
		json.Unmarshal([]byte(d.Payload), &p)
		content := p.Text
		if content == "" && p.TemplateID != "" {
			content = "template " + p.TemplateID
		}
		rows = append(rows, DeliveryRow{ID: d.ID, CreatedAt: d.CreatedAt.In(chinaTime), Journey: keys[d.JourneyID], To: d.To,
			Channel: d.Channel, Status: d.Status, Content: content, Error: d.Error})
	}
	return rows, nil
}

func (a *Admin) page(c *gin.Context) {
	if a.session(c) == "" {
		c.Redirect(http.StatusFound, "/admin/login")
		return
	}
	js, err := a.journeys(c)
	if err != nil {
		c.String(http.StatusInternalServerError, "database error")
		return
	}
	ds, err := a.deliveries(c, 50)
	if err != nil {
		c.String(http.StatusInternalServerError, "database error")
		return
	}
	a.render(c, http.StatusOK, "admin.html", map[string]any{"Journeys": js, "Deliveries": ds, "Sandbox": a.cfg.Sandbox})
}

func (a *Admin) listJourneys(c *gin.Context) {
	js, err := a.journeys(c)
	if err != nil {
		c.JSON(http.StatusInternalServerError, gin.H{"error": "database error"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"journeys": js})
}

func (a *Admin) listDeliveries(c *gin.Context) {
	limit, _ := strconv.Atoi(c.DefaultQuery("limit", "100"))
	ds, err := a.deliveries(c, min(max(limit, 1), 1000))
	if err != nil {
		c.JSON(http.StatusInternalServerError, gin.H{"error": "database error"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"deliveries": ds})
}
