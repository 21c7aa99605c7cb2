package codes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

const (
	appID    = "wx00000000000000aa"
	otherApp = "wx00000000000000bb"
	corpID   = "ww00000000000000cc"
	weApp    = corpID + "/1000002"
)

// dialects are the databases the tests run on: SQLite always, PostgreSQL
// when WEJOURNEY_TEST_DATABASE_URL names one.
func dialects() []string {
	if strings.HasPrefix(os.Getenv("WEJOURNEY_TEST_DATABASE_URL"), "postgres") {
		return []string{"sqlite", "postgres"}
	}
	return []string{"sqlite"}
}

// openDB returns a fresh migrated database of dialect.
func openDB(t *testing.T, dialect string) *gorm.DB {
	t.Helper()
	closeDB := func(db *gorm.DB) {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	}
	var db *gorm.DB
	var err error
	if dialect == "sqlite" {
		db, err = model.Open("sqlite", filepath.Join(t.TempDir(), "c.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeDB(db) })
	} else {
		base := os.Getenv("WEJOURNEY_TEST_DATABASE_URL")
		admin, err := model.Open("postgres", base)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("wj_codes_%d", time.Now().UnixNano())
		if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(base)
		u.Path = "/" + name
		if db, err = model.Open("postgres", u.String()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			closeDB(db)
			admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			closeDB(admin)
		})
	}
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	return db
}

type wxAccounts map[string]string

func (a wxAccounts) Account(_ context.Context, appid string) (wechat.Account, error) {
	sec, ok := a[appid]
	if !ok {
		return wechat.Account{}, fmt.Errorf("%w: %s", wechat.ErrUnknownAccount, appid)
	}
	return wechat.Account{AppID: appid, AppSecret: sec}, nil
}

type weAccounts struct{}

func (weAccounts) Account(_ context.Context, app string) (wecom.Account, error) {
	if app != weApp {
		return wecom.Account{}, fmt.Errorf("%w: %s", wecom.ErrUnknownAccount, app)
	}
	return wecom.Account{CorpID: corpID, AgentID: "1000002", Secret: "corp-secret"}, nil
}

// env is a Service on a fresh database with fake WeChat and WeCom APIs.
type env struct {
	svc *Service
	db  *gorm.DB
	wx  *fakewx.Server
	wc  *fakewecom.Server
	now time.Time
}

func newEnv(t *testing.T, dialect string) *env {
	t.Helper()
	wx := fakewx.New(fakewx.Config{Secrets: map[string]string{appID: "oa-secret", otherApp: "oa-secret-2"}})
	t.Cleanup(wx.Close)
	wc := fakewecom.New()
	t.Cleanup(wc.Close)
	wc.AddCorp(corpID, "corp-secret")
	quiet := slog.New(slog.DiscardHandler)
	e := &env{db: openDB(t, dialect), wx: wx, wc: wc, now: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	e.svc = New(Config{DB: e.db, DefaultAppID: appID, DefaultWeComApp: weApp, Logger: quiet, Now: func() time.Time { return e.now },
		WeChat: wechat.NewSender(wechat.Config{Accounts: wxAccounts{appID: "oa-secret", otherApp: "oa-secret-2", "wxsandbox": ""}, APIBase: wx.URL, Logger: quiet}),
		WeCom:  wecom.New(wecom.Config{Accounts: weAccounts{}, APIBase: wc.URL, Logger: quiet})})
	return e
}

func forEachDB(t *testing.T, f func(t *testing.T, e *env)) {
	for _, d := range dialects() {
		t.Run(d, func(t *testing.T) { f(t, newEnv(t, d)) })
	}
}

func TestCreateQR(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		tmp, err := e.svc.CreateQR(ctx, QRRequest{Scene: "store_001", Label: "南京西路店", Channel: "store"})
		if err != nil {
			t.Fatal(err)
		}
		perm, err := e.svc.CreateQR(ctx, QRRequest{AppID: otherApp, Scene: "store_001", Permanent: true})
		if err != nil {
			t.Fatalf("the same scene on another account: %v", err)
		}
		short, err := e.svc.CreateQR(ctx, QRRequest{Scene: "event_x", ExpireSeconds: 3600})
		if err != nil {
			t.Fatal(err)
		}
		calls := e.wx.QRCodes()
		if len(calls) != 3 {
			t.Fatalf("qrcode/create calls = %d, want 3", len(calls))
		}
		for i, want := range []fakewx.QRCodeCall{
			{AppID: appID, ActionName: "QR_STR_SCENE", SceneStr: "store_001", ExpireSeconds: MaxExpireSeconds},
			{AppID: otherApp, ActionName: "QR_LIMIT_STR_SCENE", SceneStr: "store_001"},
			{AppID: appID, ActionName: "QR_STR_SCENE", SceneStr: "event_x", ExpireSeconds: 3600},
		} {
			c := calls[i]
			if c.AppID != want.AppID || c.ActionName != want.ActionName || c.SceneStr != want.SceneStr || c.ExpireSeconds != want.ExpireSeconds {
				t.Errorf("call %d = %+v, want %+v", i, c, want)
			}
		}
		if bytes.Contains(calls[1].Raw, []byte("expire_seconds")) {
			t.Errorf("a permanent code's request has expire_seconds: %s", calls[1].Raw)
		}
		var rows []model.QRCode
		e.db.Order("id").Find(&rows)
		if len(rows) != 3 {
			t.Fatalf("rows = %d", len(rows))
		}
		r := rows[0]
		if r.ID != tmp.ID || r.Ticket != calls[0].Ticket || r.URL != calls[0].URL || r.Kind != model.QRTemporary ||
			r.Label != "南京西路店" || r.Channel != "store" || r.ExpiresAt == nil || !r.ExpiresAt.Equal(e.now.Add(30*24*time.Hour)) {
			t.Errorf("temporary row = %+v", r)
		}
		if rows[1].ID != perm.ID || rows[1].Kind != model.QRPermanent || rows[1].ExpiresAt != nil || rows[1].URL != calls[1].URL {
			t.Errorf("permanent row = %+v", rows[1])
		}
		if rows[2].ID != short.ID || !rows[2].ExpiresAt.Equal(e.now.Add(time.Hour)) {
			t.Errorf("1-hour code expires at %v", rows[2].ExpiresAt)
		}

		e.now = e.now.Add(2 * time.Hour)
		got, err := e.svc.GetQR(ctx, short.ID)
		if err != nil || !got.Expired {
			t.Errorf("a 1-hour code two hours later: expired = %v, %v", got.Expired, err)
		}

		// Refusals: nothing reaches WeChat, nothing is stored.
		for _, tc := range []struct {
			req  QRRequest
			want error
			in   string
		}{
			{QRRequest{Scene: "store_001"}, ErrConflict, "already has"},
			{QRRequest{Scene: ""}, ErrInvalid, "scene is required"},
			{QRRequest{Scene: strings.Repeat("码", 65)}, ErrInvalid, "at most 64"},
			{QRRequest{Scene: "x", ExpireSeconds: MaxExpireSeconds + 1}, ErrInvalid, "30 days"},
			{QRRequest{Scene: "x", Permanent: true, ExpireSeconds: 60}, ErrInvalid, "permanent"},
			{QRRequest{Scene: " x"}, ErrInvalid, "spaces"},
		} {
			_, err := e.svc.CreateQR(ctx, tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("%+v: err = %v, want %v with %q", tc.req, err, tc.want, tc.in)
			}
		}
		if n := len(e.wx.QRCodes()); n != 3 {
			t.Errorf("refused requests reached WeChat: %d calls", n)
		}

		// WeChat refuses: ErrUpstream with its errcode, nothing stored.
		e.wx.SetQRCodeError(45009)
		_, err = e.svc.CreateQR(ctx, QRRequest{Scene: "quota"})
		var ce *channels.Error
		if !errors.Is(err, ErrUpstream) || !errors.As(err, &ce) || ce.Code != 45009 {
			t.Errorf("quota: err = %v", err)
		}
		_, err = e.svc.CreateQR(ctx, QRRequest{AppID: "wxsandbox", Scene: "s"})
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, wechat.ErrSandbox) {
			t.Errorf("sandbox account: err = %v", err)
		}
		var n int64
		e.db.Model(&model.QRCode{}).Count(&n)
		if n != 3 {
			t.Errorf("rows = %d after refusals, want 3", n)
		}
	})
}

func TestQRPNG(t *testing.T) {
	e := newEnv(t, "sqlite")
	c, err := e.svc.CreateQR(context.Background(), QRRequest{Scene: "store_png"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.svc.QRPNG(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != PNGSize || b.Dy() != PNGSize {
		t.Errorf("image is %v, want %dx%d", b, PNGSize, PNGSize)
	}
	if _, err := e.svc.QRPNG(context.Background(), c.ID+100); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

func TestCreateContactWay(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		no := false
		cw, err := e.svc.CreateContactWay(ctx, ContactWayRequest{State: "store_001", Users: []string{"rep1", "rep2", "rep1"},
			Label: "南京西路店导购二维码——这个标签超过三十个字符用于测试备注截断是否生效啊", Channel: "store", SkipVerify: &no})
		if err != nil {
			t.Fatal(err)
		}
		one, err := e.svc.CreateContactWay(ctx, ContactWayRequest{AppID: weApp, State: "event_1", Users: []string{"rep3"}})
		if err != nil {
			t.Fatal(err)
		}
		calls := e.wc.ContactWays()
		if len(calls) != 2 {
			t.Fatalf("add_contact_way calls = %d", len(calls))
		}
		c := calls[0]
		if c.CorpID != corpID || c.Type != 2 || c.Scene != 2 || c.State != "store_001" || strings.Join(c.Users, ",") != "rep1,rep2" ||
			c.SkipVerify == nil || *c.SkipVerify || len([]rune(c.Remark)) != 30 {
			t.Errorf("call = %+v", c)
		}
		if c := calls[1]; c.Type != 1 || c.SkipVerify == nil || !*c.SkipVerify {
			t.Errorf("one rep, default verify: %+v", c)
		}
		var row model.ContactWay
		e.db.Take(&row, cw.ID)
		if row.ConfigID != calls[0].ConfigID || row.ConfigID == "" || row.QRCodeURL == "" || row.AppID != weApp ||
			strings.Join(row.Users, ",") != "rep1,rep2" || row.Channel != "store" {
			t.Errorf("row = %+v", row)
		}
		if one.ConfigID != calls[1].ConfigID {
			t.Errorf("answer config_id %q, WeCom made %q", one.ConfigID, calls[1].ConfigID)
		}

		for _, tc := range []struct {
			req  ContactWayRequest
			want error
			in   string
		}{
			{ContactWayRequest{State: "store_001", Users: []string{"r"}}, ErrConflict, "already has"},
			{ContactWayRequest{State: strings.Repeat("s", 31), Users: []string{"r"}}, ErrInvalid, "at most 30"},
			{ContactWayRequest{State: "", Users: []string{"r"}}, ErrInvalid, "state is required"},
			{ContactWayRequest{State: "x", Users: []string{" "}}, ErrInvalid, "at least one rep"},
			{ContactWayRequest{AppID: "ww1", State: "x", Users: []string{"r"}}, ErrInvalid, "corpid/agentid"},
		} {
			_, err := e.svc.CreateContactWay(ctx, tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("%+v: err = %v, want %v with %q", tc.req, err, tc.want, tc.in)
			}
		}
		e.wc.SetError(fakewecom.AddContactWayPath, 82001)
		_, err = e.svc.CreateContactWay(ctx, ContactWayRequest{State: "x", Users: []string{"outsider"}})
		var ce *channels.Error
		if !errors.Is(err, ErrUpstream) || !errors.As(err, &ce) || ce.Code != 82001 {
			t.Errorf("WeCom refuses: %v", err)
		}
		if n := len(e.wc.ContactWays()); n != 2 {
			t.Errorf("add_contact_way calls = %d after refusals, want 2", n)
		}

		raw, err := e.svc.ContactWayPNG(ctx, cw.ID)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("not a PNG: %v", err)
		}
		if b := img.Bounds(); b.Dx() != fakewecom.QRSize || b.Dy() != fakewecom.QRSize {
			t.Errorf("image is %v, want WeCom's %dx%d", b, fakewecom.QRSize, fakewecom.QRSize)
		}
	})
}

func TestAttribution(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		store, err := e.svc.CreateQR(ctx, QRRequest{Scene: "store_1"})
		if err != nil {
			t.Fatal(err)
		}
		search, err := e.svc.CreateQR(ctx, QRRequest{Scene: "search_1", Permanent: true})
		if err != nil {
			t.Fatal(err)
		}
		other, err := e.svc.CreateQR(ctx, QRRequest{AppID: otherApp, Scene: "store_1"})
		if err != nil {
			t.Fatal(err)
		}
		way, err := e.svc.CreateContactWay(ctx, ContactWayRequest{State: "store_1", Users: []string{"rep1"}})
		if err != nil {
			t.Fatal(err)
		}

		// Members: A first came through store_1 and last through search_1;
		// B only through store_1; C through the other account's store_1;
		// D was merged into A.
		member := func(first, last string) int64 {
			m := model.Member{FirstScene: first, LastScene: last}
			if err := e.db.Create(&m).Error; err != nil {
				t.Fatal(err)
			}
			return m.ID
		}
		a, b, c := member("store_1", "search_1"), member("store_1", "store_1"), member("store_1", "store_1")
		d := member("store_1", "store_1")
		e.db.Model(&model.Member{}).Where("id = ?", d).Update("merged_into", a)
		seq := 0
		event := func(typ, scene string, ref model.MemberRef, id int64) {
			seq++
			ev := model.Event{DedupeKey: fmt.Sprintf("k%d", seq), Type: typ, Source: "test", Member: ref, MemberKey: ref.Key(),
				At: e.now, ReceivedAt: e.now, MemberID: &id, Scene: scene}
			if err := e.db.Create(&ev).Error; err != nil {
				t.Fatal(err)
			}
		}
		oa := func(app, openid string) model.MemberRef { return model.MemberRef{AppID: app, OpenID: openid} }
		event("wechat.subscribe", "store_1", oa(appID, "oA"), a)
		event("wechat.subscribe", "store_1", oa(appID, "oB"), b)
		event("wechat.scan", "store_1", oa(appID, "oB"), b)
		event("wechat.unsubscribe", "", oa(appID, "oB"), b)
		event("wechat.subscribe", "store_1", oa(appID, "oB"), b) // followed again
		event("wechat.scan", "search_1", oa(appID, "oA"), a)
		event("wechat.subscribe", "store_1", oa(otherApp, "oC"), c)
		event("wecom.contact_added", "store_1", model.MemberRef{ExternalUserID: "wmA"}, a)
		event("form.submitted", "store_1", oa(appID, "oA"), a) // not a follow

		qrs, err := e.svc.ListQR(ctx, appID)
		if err != nil {
			t.Fatal(err)
		}
		if len(qrs) != 2 || qrs[0].ID != search.ID || qrs[1].ID != store.ID {
			t.Fatalf("ListQR(%s) = %+v", appID, qrs)
		}
		want := map[int64]QRStats{
			store.ID:  {Follows: 3, Scans: 1, Members: 2, FirstTouch: 3, LastTouch: 2},
			search.ID: {Follows: 0, Scans: 1, Members: 1, FirstTouch: 0, LastTouch: 1},
			other.ID:  {Follows: 1, Scans: 0, Members: 1, FirstTouch: 3, LastTouch: 2},
		}
		all, err := e.svc.ListQR(ctx, "")
		if err != nil || len(all) != 3 {
			t.Fatalf("ListQR(all) = %d codes, %v", len(all), err)
		}
		for _, q := range all {
			if q.Stats != want[q.ID] {
				t.Errorf("code %d (%s %s): stats %+v, want %+v", q.ID, q.AppID, q.Scene, q.Stats, want[q.ID])
			}
		}
		got, err := e.svc.GetQR(ctx, store.ID)
		if err != nil || got.Stats != want[store.ID] {
			t.Errorf("GetQR = %+v, %v", got.Stats, err)
		}
		ways, err := e.svc.ListContactWays(ctx, "")
		if err != nil || len(ways) != 1 || ways[0].ID != way.ID {
			t.Fatalf("ListContactWays = %+v, %v", ways, err)
		}
		if w := (ContactWayStats{Adds: 1, Members: 1, FirstTouch: 3, LastTouch: 2}); ways[0].Stats != w {
			t.Errorf("contact way stats %+v, want %+v", ways[0].Stats, w)
		}
	})
}
