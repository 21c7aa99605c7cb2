package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/util"

	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

// A start with WEJOURNEY_WECOM_CORPID seeds the WeCom app (its secrets
// sealed like the Official Account's), and a WeCom add sent to
// /wechat/work/{corpid}/{agentid} is acknowledged and reaches the member:
// their external_userid and contact-me state.
func TestWeComAppSeededAndCallbackRouted(t *testing.T) {
	parallel(t)
	const (
		corpid, agentid, token = "wwtestcorp00000001", "1000002", "wecom-test-token"
		aesKey                 = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	)
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	cfg := testConfig(t, fake, nil)
	cfg.WeComCorpID, cfg.WeComAgentID, cfg.WeComSecret, cfg.WeComToken, cfg.WeComAESKey = corpid, agentid, "wecom-secret", token, aesKey
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app, err := NewApp(ctx, cfg, Options{Listener: ln, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		AutoMigrate: true, SweepInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewApp: %v", err)
	}
	t.Cleanup(app.Close)
	if err := app.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}

	var stored model.Account
	if err := app.DB.Where("app_id = ?", corpid+"/"+agentid).First(&stored).Error; err != nil {
		t.Fatalf("the WeCom app was not seeded: %v", err)
	}
	if stored.Kind != model.AccountWeCom || stored.Token == token || stored.AESKey == aesKey || stored.AppSecret == "wecom-secret" {
		t.Errorf("seeded %+v: want kind wecom with its secrets sealed", stored)
	}

	xml := fmt.Sprintf(`<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>`+
		`<ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[rep_wang]]></UserID>`+
		`<ExternalUserID><![CDATA[wm_e2e_customer]]></ExternalUserID><State><![CDATA[store_9]]></State>`+
		`<WelcomeCode><![CDATA[WC1]]></WelcomeCode></xml>`, corpid, time.Now().Unix())
	enc, err := util.EncryptMsg([]byte("0123456789abcdef"), []byte(xml), corpid, aesKey)
	if err != nil {
		t.Fatal(err)
	}
	ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), "424242"
	q := url.Values{"msg_signature": {util.Signature(token, ts, nonce, string(enc))}, "timestamp": {ts}, "nonce": {nonce}}
	body := "<xml><ToUserName><![CDATA[" + corpid + "]]></ToUserName><Encrypt><![CDATA[" + string(enc) + "]]></Encrypt></xml>"
	resp, err := http.Post("http://"+app.Addr+"/wechat/work/"+corpid+"/"+agentid+"?"+q.Encode(), "text/xml", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(answer) != "success" {
		t.Fatalf("callback answered %d %q, want 200 success", resp.StatusCode, answer)
	}

	h := &harness{t: t, app: app, db: app.DB}
	var m model.Member
	h.eventually("the add to reach the member", 10*time.Second, func() bool {
		m = model.Member{}
		err := app.DB.Where("external_user_id = ?", "wm_e2e_customer").First(&m).Error
		return err == nil && m.FirstScene == "store_9" && m.LastScene == "store_9" && m.LastInteractionAt != nil
	})
}
