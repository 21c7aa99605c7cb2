package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/codes"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// TestCLICodes: `qrcodes create/list/png` and `contact-ways create/list`
// against fake WeChat and WeCom APIs, with the accounts' secrets sealed in
// the database as the server stores them.
func TestCLICodes(t *testing.T) {
	t.Parallel()
	const oa, corp = "wx00000000000000aa", "ww00000000000000cc"
	wx := fakewx.New(fakewx.Config{Secrets: map[string]string{oa: "oa-secret"}})
	t.Cleanup(wx.Close)
	wc := fakewecom.New()
	t.Cleanup(wc.Close)
	wc.AddCorp(corp, "corp-secret")
	dir := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(dir, "w.db")
	cfgFile := filepath.Join(dir, "wejourney.yaml")
	src := "database_url: " + dbURL + "\nsecret_key: " + testSecretKey + "\nwechat_appid: " + oa + "\nwechat_appsecret: oa-secret\nwechat_token: tok\n" +
		"wechat_api_base: " + wx.URL + "\nwecom_corpid: " + corp + "\nwecom_agentid: \"1000002\"\nwecom_token: wctok\nwecom_aes_key: " + testAESKey +
		"\nwecom_api_base: " + wc.URL + "\n"
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, box, err := openStore(context.Background(), cfg, Options{AutoMigrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []model.Account{{Kind: model.AccountWeChatOA, AppID: oa, AppSecret: "oa-secret"},
		{Kind: model.AccountWeCom, AppID: corp + "/1000002", AppSecret: "corp-secret"}} {
		if err := model.UpsertAccount(db, box, a); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := db.DB()
	s.Close()

	pngFile := filepath.Join(dir, "store.png")
	out, _, err := runCLI(t, "qrcodes", "create", "--scene", "store_001", "--label", "南京西路店", "--channel", "store",
		"--expire", "48h", "--png", pngFile, "--config", cfgFile)
	if err != nil {
		t.Fatalf("qrcodes create: %v", err)
	}
	calls := wx.QRCodes()
	if len(calls) != 1 || calls[0].ExpireSeconds != 48*3600 || calls[0].SceneStr != "store_001" || !strings.Contains(out, calls[0].URL) {
		t.Fatalf("calls %+v, output %s", calls, out)
	}
	checkPNG(t, pngFile, codes.PNGSize)
	if _, _, err := runCLI(t, "qrcodes", "create", "--scene", "store_001", "--label", "x", "--config", cfgFile); err == nil ||
		!strings.Contains(err.Error(), "already has") {
		t.Errorf("duplicate scene: %v", err)
	}
	if _, _, err := runCLI(t, "qrcodes", "create", "--scene", "s", "--expire", "721h", "--config", cfgFile); err == nil ||
		!strings.Contains(err.Error(), "30 days") {
		t.Errorf("--expire 721h: %v", err)
	}
	out, _, err = runCLI(t, "qrcodes", "list", "--config", cfgFile)
	if err != nil || !strings.Contains(out, "store_001") || !strings.Contains(out, "南京西路店") || !strings.Contains(out, "FOLLOWS") {
		t.Errorf("qrcodes list: %v\n%s", err, out)
	}
	again := filepath.Join(dir, "again.png")
	if _, _, err := runCLI(t, "qrcodes", "png", "1", again, "--config", cfgFile); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, again, codes.PNGSize)

	wayPNG := filepath.Join(dir, "way.png")
	out, _, err = runCLI(t, "contact-ways", "create", "--state", "store_001", "--user", "rep1", "--user", "rep2",
		"--label", "门店", "--png", wayPNG, "--config", cfgFile)
	if err != nil {
		t.Fatalf("contact-ways create: %v", err)
	}
	ways := wc.ContactWays()
	if len(ways) != 1 || ways[0].Type != 2 || ways[0].State != "store_001" || !strings.Contains(out, ways[0].ConfigID) {
		t.Fatalf("calls %+v, output %s", ways, out)
	}
	checkPNG(t, wayPNG, fakewecom.QRSize)
	out, _, err = runCLI(t, "contact-ways", "list", "--config", cfgFile)
	if err != nil || !strings.Contains(out, ways[0].ConfigID) || !strings.Contains(out, "rep1,rep2") {
		t.Errorf("contact-ways list: %v\n%s", err, out)
	}
}

func checkPNG(t *testing.T, file string, size int) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if b := img.Bounds(); b.Dx() != size || b.Dy() != size {
		t.Errorf("%s: %v, want %dx%d", file, b, size, size)
	}
}

// TestQRCodeAttribution: a QR code made through the admin API is credited
// with the follows and scans WeChat's callbacks carry its scene in, once
// the engine has routed them (members' first and last scene included).
func TestQRCodeAttribution(t *testing.T) {
	parallel(t)
	h := newHarness(t, nil)
	if err := h.db.Create(&model.APIKey{Name: "admin", Hash: handler.HashAPIKey("adm-key"), Scope: model.ScopeAdmin}).Error; err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string) (int, string) {
		status, answer := h.request(method, path, body, "adm-key")
		return status, string(answer)
	}
	if st, body := api("POST", "/api/v1/qrcodes", `{"appid":"`+testPlainAppID+`","scene":"store_e2e","label":"门店"}`); st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	if st, body := api("POST", "/api/v1/qrcodes", `{"appid":"`+testPlainAppID+`","scene":"poster_e2e","permanent":true}`); st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	for _, ev := range []wxsim.Event{
		{Kind: wxsim.KindSubscribe, OpenID: "oA", Scene: "store_e2e"},
		{Kind: wxsim.KindSubscribe, OpenID: "oB", Scene: "store_e2e"},
		{Kind: wxsim.KindScan, OpenID: "oB", Scene: "poster_e2e"},
		{Kind: wxsim.KindSubscribe, OpenID: "oC", Scene: "poster_e2e"},
		{Kind: wxsim.KindSubscribe, OpenID: "oD"},
	} {
		if st, body := h.send(h.plain, ev); st != 200 {
			t.Fatalf("%+v: %d %s", ev, st, body)
		}
	}
	h.eventually("the callbacks are routed", 10*time.Second, func() bool {
		return h.count(&model.Event{}, "routed_at IS NOT NULL") == 5
	})
	st, body := api("GET", "/api/v1/qrcodes?appid="+testPlainAppID, "")
	if st != 200 {
		t.Fatalf("list: %d %s", st, body)
	}
	var list struct {
		QRCodes []codes.QRCode `json:"qrcodes"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	want := map[string]codes.QRStats{
		"store_e2e":  {Follows: 2, Scans: 0, Members: 2, FirstTouch: 2, LastTouch: 1},
		"poster_e2e": {Follows: 1, Scans: 1, Members: 2, FirstTouch: 1, LastTouch: 2},
	}
	if len(list.QRCodes) != 2 {
		t.Fatalf("codes: %s", body)
	}
	for _, c := range list.QRCodes {
		if c.Stats != want[c.Scene] {
			t.Errorf("%s: %+v, want %+v", c.Scene, c.Stats, want[c.Scene])
		}
	}
}

// TestCLICodesHelp: the commands print their usage and flags.
func TestCLICodesHelp(t *testing.T) {
	t.Parallel()
	for args, want := range map[string][]string{
		"qrcodes --help":             {"usage: wejourney qrcodes", "-scene", "-permanent", "-expire", "-png"},
		"qrcodes create -h":          {"qrcodes create --scene S", "-label", "-channel", "-appid"},
		"contact-ways --help":        {"usage: wejourney contact-ways", "-state", "-user", "-app"},
		"contact-ways create --help": {"contact-ways create --state S", "-verify"},
		"help qrcodes":               {"qrcodes create|list|png"},
	} {
		stdout, stderr, err := runCLI(t, strings.Fields(args)...)
		if err != nil || stderr != "" {
			t.Errorf("%s: %v, stderr %q", args, err, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%s: no %q in\n%s", args, w, stdout)
			}
		}
	}
	if _, _, err := runCLI(t, "qrcodes", "create", "--permanent", "--expire", "1h", "--scene", "s"); err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Errorf("--permanent --expire: %v", err)
	}
}
