package handler

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

const (
	codesOA   = "wx00000000000000aa"
	codesCorp = "ww00000000000000cc"
	codesApp  = codesCorp + "/1000002"
)

type codesWX struct{}

func (codesWX) Account(_ context.Context, appid string) (wechat.Account, error) {
	if appid != codesOA {
		return wechat.Account{}, fmt.Errorf("%w: %s", wechat.ErrUnknownAccount, appid)
	}
	return wechat.Account{AppID: appid, AppSecret: "oa-secret"}, nil
}

type codesWeCom struct{}

func (codesWeCom) Account(_ context.Context, app string) (wecom.Account, error) {
	if app != codesApp {
		return wecom.Account{}, fmt.Errorf("%w: %s", wecom.ErrUnknownAccount, app)
	}
	return wecom.Account{CorpID: codesCorp, Secret: "corp-secret"}, nil
}

// codesApp is a fresh router whose admin API has the codes routes, on fake
// WeChat and WeCom APIs; requests carry the admin key.
type codesRouter struct {
	h  http.Handler
	wx *fakewx.Server
	wc *fakewecom.Server
}

func newCodesRouter(t *testing.T) *codesRouter {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	db.Create(&model.APIKey{Name: "admin", Hash: HashAPIKey("adm-key"), Scope: model.ScopeAdmin})
	wx := fakewx.New(fakewx.Config{Secrets: map[string]string{codesOA: "oa-secret"}})
	t.Cleanup(wx.Close)
	wc := fakewecom.New()
	t.Cleanup(wc.Close)
	wc.AddCorp(codesCorp, "corp-secret")
	quiet := slog.New(slog.DiscardHandler)
	svc := codes.New(codes.Config{DB: db, DefaultAppID: codesOA, DefaultWeComApp: codesApp, Logger: quiet,
		WeChat: wechat.NewSender(wechat.Config{Accounts: codesWX{}, APIBase: wx.URL, Logger: quiet}),
		WeCom:  wecom.New(wecom.Config{Accounts: codesWeCom{}, APIBase: wc.URL, Logger: quiet})})
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db})
	t.Cleanup(ing.Close)
	a := NewAdmin(AdminConfig{DB: db, Secret: []byte("secret"), Logger: quiet})
	t.Cleanup(a.Close)
	return &codesRouter{h: New(Config{DB: db, Ingestor: ing, Accounts: model.NewAccounts(db, nil), Admin: a, Codes: svc, Logger: quiet}), wx: wx, wc: wc}
}

func (r *codesRouter) do(t *testing.T, method, path, body, key string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec
}

func TestCodesAPI(t *testing.T) {
	t.Parallel()
	type req struct{ method, path, body string }
	qr := req{"POST", "/api/v1/qrcodes", `{"scene":"store_001","label":"南京西路店","channel":"store"}`}
	way := req{"POST", "/api/v1/contact-ways", `{"state":"store_001","users":["rep1"],"label":"门店"}`}
	for _, tc := range []struct {
		name   string
		given  []req
		setup  func(r *codesRouter)
		req    req
		key    string
		status int
		in     []string
	}{
		{name: "create a temporary QR code", req: qr, status: 201,
			in: []string{`"scene":"store_001"`, `"kind":"temporary"`, `"url":"http://weixin.qq.com/q/fake1"`, `"ticket":"gQFakeTicket1=="`, `"expires_at":"`}},
		{name: "create a permanent QR code", req: req{"POST", "/api/v1/qrcodes", `{"scene":"s","permanent":true}`}, status: 201,
			in: []string{`"kind":"permanent"`, `"expires_at":null`}},
		{name: "without a key", req: qr, key: "-", status: 401},
		{name: "empty scene", req: req{"POST", "/api/v1/qrcodes", `{"scene":""}`}, status: 400, in: []string{"scene is required"}},
		{name: "expire over 30 days", req: req{"POST", "/api/v1/qrcodes", `{"scene":"s","expire_seconds":2592001}`}, status: 400, in: []string{"30 days"}},
		{name: "not JSON", req: req{"POST", "/api/v1/qrcodes", `{`}, status: 400, in: []string{"invalid JSON"}},
		{name: "duplicate scene", given: []req{qr}, req: qr, status: 409, in: []string{"already has a QR code"}},
		{name: "WeChat refuses", setup: func(r *codesRouter) { r.wx.SetQRCodeError(45009) }, req: qr, status: 502,
			in: []string{`"errcode":45009`, "daily quota"}},
		{name: "unknown account", req: req{"POST", "/api/v1/qrcodes", `{"appid":"wxnobody","scene":"s"}`}, status: 400, in: []string{"unknown official account"}},
		{name: "unknown WeCom app", req: req{"POST", "/api/v1/contact-ways", `{"app":"ww1/2","state":"s","users":["r"]}`}, status: 400, in: []string{"unknown app"}},
		{name: "list QR codes with stats", given: []req{qr}, req: req{"GET", "/api/v1/qrcodes?appid=" + codesOA, ""}, status: 200,
			in: []string{`"qrcodes":[{"id":1`, `"stats":{"follows":0,"scans":0,"members":0,"first_touch":0,"last_touch":0}`}},
		{name: "list another account's", given: []req{qr}, req: req{"GET", "/api/v1/qrcodes?appid=wxother", ""}, status: 200, in: []string{`"qrcodes":[]`}},
		{name: "get one", given: []req{qr}, req: req{"GET", "/api/v1/qrcodes/1", ""}, status: 200, in: []string{`"label":"南京西路店"`}},
		{name: "get unknown", req: req{"GET", "/api/v1/qrcodes/9", ""}, status: 404},
		{name: "get non-number", req: req{"GET", "/api/v1/qrcodes/x", ""}, status: 404},
		{name: "create a contact way", req: way, status: 201, in: []string{`"state":"store_001"`, `"config_id":"cfg`, `"qr_code":"http://127.0.0.1`, `"users":["rep1"]`}},
		{name: "state over 30 characters", req: req{"POST", "/api/v1/contact-ways", `{"state":"` + strings.Repeat("s", 31) + `","users":["r"]}`}, status: 400,
			in: []string{"at most 30"}},
		{name: "no users", req: req{"POST", "/api/v1/contact-ways", `{"state":"s","users":[]}`}, status: 400, in: []string{"at least one rep"}},
		{name: "duplicate state", given: []req{way}, req: way, status: 409, in: []string{"already has a contact-me link"}},
		{name: "WeCom refuses", setup: func(r *codesRouter) { r.wc.SetError(fakewecom.AddContactWayPath, 82001) }, req: way, status: 502,
			in: []string{`"errcode":82001`}},
		{name: "list contact ways", given: []req{way}, req: req{"GET", "/api/v1/contact-ways", ""}, status: 200,
			in: []string{`"contact_ways":[{"id":1`, `"stats":{"adds":0`}},
		{name: "get a contact way", given: []req{way}, req: req{"GET", "/api/v1/contact-ways/1", ""}, status: 200, in: []string{`"app":"` + codesApp + `"`}},
		{name: "unknown contact way", req: req{"GET", "/api/v1/contact-ways/1/png", ""}, status: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newCodesRouter(t)
			for _, g := range tc.given {
				if rec := r.do(t, g.method, g.path, g.body, "adm-key"); rec.Code >= 300 {
					t.Fatalf("given %s %s: %d %s", g.method, g.path, rec.Code, rec.Body)
				}
			}
			if tc.setup != nil {
				tc.setup(r)
			}
			key := tc.key
			if key == "" {
				key = "adm-key"
			} else if key == "-" {
				key = ""
			}
			rec := r.do(t, tc.req.method, tc.req.path, tc.req.body, key)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			for _, s := range tc.in {
				if !strings.Contains(rec.Body.String(), s) {
					t.Errorf("body %s lacks %s", rec.Body, s)
				}
			}
			if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "access_token=fake") {
				t.Errorf("body leaks a credential: %s", rec.Body)
			}
		})
	}
}

func TestCodesPNG(t *testing.T) {
	t.Parallel()
	r := newCodesRouter(t)
	if rec := r.do(t, "POST", "/api/v1/qrcodes", `{"scene":"s1"}`, "adm-key"); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	if rec := r.do(t, "POST", "/api/v1/contact-ways", `{"state":"s1","users":["rep1"]}`, "adm-key"); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	for path, size := range map[string]int{"/api/v1/qrcodes/1/png": codes.PNGSize, "/api/v1/contact-ways/1/png": fakewecom.QRSize} {
		rec := r.do(t, "GET", path, "", "adm-key")
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/png" {
			t.Fatalf("%s: %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		img, err := png.Decode(bytes.NewReader(rec.Body.Bytes()))
		if err != nil {
			t.Fatalf("%s: not a PNG: %v", path, err)
		}
		if b := img.Bounds(); b.Dx() != size || b.Dy() != size {
			t.Errorf("%s: %v, want %dx%d", path, b, size, size)
		}
	}
}
