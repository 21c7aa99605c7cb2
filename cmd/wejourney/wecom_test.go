package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	h := startHarness(t, cfg, fake)
	app := h.app

	var stored model.Account
	if err := app.DB.Where("app_id = ?", corpid+"/"+agentid).First(&stored).Error; err != nil {
		t.Fatalf("the WeCom app was not seeded: %v", err)
	}
	if stored.Kind != model.AccountWeCom || stored.Token == token || stored.AESKey == aesKey || stored.AppSecret == "wecom-secret" {
		t.Errorf("seeded %+v: want kind wecom with its secrets sealed", stored)
	}

	status, answer := h.postWeCom(corpid, agentid, token, aesKey, weComAddXML(corpid, "rep_wang", "wm_e2e_customer", "store_9"))
	if status != 200 || answer != "success" {
		t.Fatalf("callback answered %d %q, want 200 success", status, answer)
	}

	var m model.Member
	h.eventually("the add to reach the member", 10*time.Second, func() bool {
		m = model.Member{}
		err := app.DB.Where("external_user_id = ?", "wm_e2e_customer").First(&m).Error
		return err == nil && m.FirstScene == "store_9" && m.LastScene == "store_9" && m.LastInteractionAt != nil
	})
}

// weComAddXML is the plaintext of WeCom's callback for a customer
// (externalID) added by rep through the contact-me link with state.
func weComAddXML(corpid, rep, externalID, state string) string {
	return fmt.Sprintf(`<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>`+
		`<ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[%s]]></UserID>`+
		`<ExternalUserID><![CDATA[%s]]></ExternalUserID><State><![CDATA[%s]]></State>`+
		`<WelcomeCode><![CDATA[WC1]]></WelcomeCode></xml>`, corpid, time.Now().Unix(), rep, externalID, state)
}

// postWeCom sends the callback plaintext xml to the WeCom app
// corpid/agentid, encrypted with aesKey and signed with token as WeCom
// does, and returns the answer's status and body.
func (h *harness) postWeCom(corpid, agentid, token, aesKey, xml string) (int, string) {
	h.t.Helper()
	enc, err := util.EncryptMsg([]byte("0123456789abcdef"), []byte(xml), corpid, aesKey)
	if err != nil {
		h.t.Fatal(err)
	}
	ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), "424242"
	q := url.Values{"msg_signature": {util.Signature(token, ts, nonce, string(enc))}, "timestamp": {ts}, "nonce": {nonce}}
	body := "<xml><ToUserName><![CDATA[" + corpid + "]]></ToUserName><Encrypt><![CDATA[" + string(enc) + "]]></Encrypt></xml>"
	resp, err := http.Post(h.base+"/wechat/work/"+corpid+"/"+agentid+"?"+q.Encode(), "text/xml", strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}
