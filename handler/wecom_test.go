package handler

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

// Tencent's published sample (企业微信 开发者中心 → 加解密方案说明): the URL
// check of corp wx5823bf96d3bd56c7.
const (
	vecCorpID   = "wx5823bf96d3bd56c7"
	vecAgentID  = "1000002"
	vecToken    = "QDG6eK"
	vecAESKey   = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	vecEchostr  = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
	vecTS       = 1409659589
	vecNonce    = "263014780"
	vecMsgSig   = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
	vecPlain    = "1616140317555161061"
	wecomCorp2  = "wwcorp0000000002"
	wecomAgent2 = "1000005"
	wecomToken2 = "wecom-token-2"
)

// newWeComEnv is a callback test handler that also knows two WeCom apps:
// Tencent's sample corp and another one.
func newWeComEnv(t *testing.T, configure func(*Config)) *cbEnv {
	t.Helper()
	e := newCallbackEnv(t, configure)
	for _, a := range []model.Account{
		{Kind: model.AccountWeCom, AppID: vecCorpID + "/" + vecAgentID, Name: "sample", Token: vecToken, AESKey: vecAESKey},
		{Kind: model.AccountWeCom, AppID: wecomCorp2 + "/" + wecomAgent2, Name: "second", Token: wecomToken2, AESKey: otherAESKey},
	} {
		if err := model.UpsertAccount(e.db, nil, a); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// wecomSign is msg_signature as Tencent defines it:
// hex SHA1 of the sorted token, timestamp, nonce and encrypted message.
func wecomSign(parts ...string) string {
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

// wecomEncrypt is Tencent's algorithm, written here independently of the
// code under test: base64(AES-256-CBC(random(16) + len(msg) as 4 bytes big
// endian + msg + receiveid)), the key the EncodingAESKey + "=" decoded, the
// IV its first 16 bytes, PKCS#7 padding to 32 bytes.
func wecomEncrypt(t *testing.T, random []byte, msg, receiveID, encodingAESKey string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil {
		t.Fatal(err)
	}
	plain := append([]byte{}, random...)
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(msg)))
	plain = append(plain, msg...)
	plain = append(plain, receiveID...)
	pad := 32 - len(plain)%32
	plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out)
}

// The test's encryption is Tencent's: re-encrypting the sample's plaintext
// with the sample's random prefix gives the sample's echostr, byte for byte.
func TestWeComEncryptHelperMatchesTencentSample(t *testing.T) {
	t.Parallel()
	key, _ := base64.StdEncoding.DecodeString(vecAESKey + "=")
	ct, _ := base64.StdEncoding.DecodeString(vecEchostr)
	block, _ := aes.NewCipher(key)
	first := make([]byte, 16)
	cipher.NewCBCDecrypter(block, key[:16]).CryptBlocks(first, ct[:16])
	if got := wecomEncrypt(t, first, vecPlain, vecCorpID, vecAESKey); got != vecEchostr {
		t.Fatalf("helper encrypts the sample to %s, want %s", got, vecEchostr)
	}
	if got := wecomSign(vecToken, strconv.Itoa(vecTS), vecNonce, vecEchostr); got != vecMsgSig {
		t.Fatalf("helper signs the sample %s, want %s", got, vecMsgSig)
	}
}

// The sample goes through the handler's own verification and decryption.
func TestDecryptWeComTencentSample(t *testing.T) {
	t.Parallel()
	acct := model.Account{Kind: model.AccountWeCom, AppID: vecCorpID + "/" + vecAgentID, Token: vecToken, AESKey: vecAESKey}
	q := url.Values{"msg_signature": {vecMsgSig}, "timestamp": {strconv.Itoa(vecTS)}, "nonce": {vecNonce}}
	plain, ref := decryptWeCom(acct, q, vecEchostr)
	if ref != nil || string(plain) != vecPlain {
		t.Fatalf("decryptWeCom(sample) = %q, %+v; want %q", plain, ref, vecPlain)
	}
	other := acct
	other.AppID = "wwsomeoneelse/" + vecAgentID
	if _, ref := decryptWeCom(other, q, vecEchostr); ref == nil || ref.reason != "encrypted for another corp" {
		t.Errorf("the sample for another corp: %+v, want refused", ref)
	}
	q.Set("msg_signature", strings.Replace(vecMsgSig, "5c", "5d", 1))
	if _, ref := decryptWeCom(acct, q, vecEchostr); ref == nil || ref.outcome != "bad_msg_signature" {
		t.Errorf("a changed msg_signature: %+v, want refused", ref)
	}
}

// wcb is one WeCom callback as WeCom would encrypt and sign it; zero
// fields take the second app's values at cbNow.
type wcb struct {
	corpid, agentid, token, aesKey string
	at                             time.Time
	xml                            string
	msgSignature                   string // replaces the computed one when set
	receiveID                      string // encrypts for another corp when set
	nonce                          string
}

func wecomCB(xml string) wcb {
	return wcb{corpid: wecomCorp2, agentid: wecomAgent2, token: wecomToken2, aesKey: otherAESKey, xml: xml}
}

// sampleCB is a callback to Tencent's sample corp.
func sampleCB(xml string) wcb {
	return wcb{corpid: vecCorpID, agentid: vecAgentID, token: vecToken, aesKey: vecAESKey, xml: xml}
}

var wecomRandom atomic.Uint64

// encrypt returns c's <Encrypt> with a fresh random prefix.
func (c wcb) encrypt(t *testing.T, msg string) string {
	random := []byte(fmt.Sprintf("%016d", wecomRandom.Add(1)))
	rid := c.corpid
	if c.receiveID != "" {
		rid = c.receiveID
	}
	return wecomEncrypt(t, random, msg, rid, c.aesKey)
}

// query signs encrypted at c.at.
func (c wcb) query(encrypted string) url.Values {
	at := c.at
	if at.IsZero() {
		at = cbNow
	}
	nonce := c.nonce
	if nonce == "" {
		nonce = "5551212"
	}
	ts := strconv.FormatInt(at.Unix(), 10)
	sig := wecomSign(c.token, ts, nonce, encrypted)
	if c.msgSignature != "" {
		sig = c.msgSignature
	}
	return url.Values{"msg_signature": {sig}, "timestamp": {ts}, "nonce": {nonce}}
}

func (c wcb) path() string { return "/wechat/work/" + c.corpid + "/" + c.agentid }

// build returns the URL and body of c.
func (c wcb) build(t *testing.T) (string, []byte) {
	t.Helper()
	enc := c.encrypt(t, c.xml)
	body := "<xml><ToUserName><![CDATA[" + c.corpid + "]]></ToUserName><AgentID><![CDATA[" + c.agentid +
		"]]></AgentID><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
	return c.path() + "?" + c.query(enc).Encode(), []byte(body)
}

func (c wcb) post(t *testing.T) *http.Request {
	u, body := c.build(t)
	req := httptest.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/xml")
	return req
}

// urlCheck is WeCom's GET with an encrypted echostr.
func (c wcb) urlCheck(t *testing.T, echo string) *http.Request {
	enc := c.encrypt(t, echo)
	q := c.query(enc)
	q.Set("echostr", enc)
	return httptest.NewRequest(http.MethodGet, c.path()+"?"+q.Encode(), nil)
}

// sampleURLCheck is Tencent's sample URL check, as WeCom sends it.
func sampleURLCheck(sig string) *http.Request {
	q := url.Values{"msg_signature": {sig}, "timestamp": {strconv.Itoa(vecTS)}, "nonce": {vecNonce}, "echostr": {vecEchostr}}
	return httptest.NewRequest(http.MethodGet, "/wechat/work/"+vecCorpID+"/"+vecAgentID+"?"+q.Encode(), nil)
}

func contactXML(changeType, rep, customer, state string) string {
	return fmt.Sprintf(`<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>`+
		`<ChangeType><![CDATA[%s]]></ChangeType><UserID><![CDATA[%s]]></UserID><ExternalUserID><![CDATA[%s]]></ExternalUserID>`+
		`<State><![CDATA[%s]]></State><WelcomeCode><![CDATA[WELCOME-%s]]></WelcomeCode></xml>`,
		wecomCorp2, cbNow.Unix(), changeType, rep, customer, state, customer)
}

func addXML(rep, customer, state string) string {
	return contactXML("add_external_contact", rep, customer, state)
}

func TestWeComCallbacks(t *testing.T) {
	t.Parallel()
	type scenario struct {
		name       string
		configure  func(*Config)
		do         func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder
		wantStatus int
		wantBody   string // exact; "" skips
		wantEvents int    // -1 skips
		wantLog    []string
		check      func(t *testing.T, e *cbEnv, rec *httptest.ResponseRecorder)
	}
	send := func(c wcb) func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
		return func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder { return e.serve(c.post(t)) }
	}
	vecClock := func(c *Config) { c.Now = func() time.Time { return time.Unix(vecTS, 0) } }
	chatXML := `<xml><ToUserName>wwcorp0000000002</ToUserName><FromUserName>sys</FromUserName><CreateTime>` + strconv.FormatInt(cbNow.Unix(), 10) +
		`</CreateTime><MsgType>event</MsgType><Event>change_external_chat</Event><ChatId>wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA</ChatId>` +
		`<ChangeType>update</ChangeType><UpdateDetail>add_member</UpdateDetail><JoinScene>3</JoinScene><MemChangeCnt>1</MemChangeCnt>` +
		`<MemChangeList><Item>wmcust_group</Item></MemChangeList></xml>`
	textXML := `<xml><ToUserName>wwcorp0000000002</ToUserName><FromUserName>zhangsan</FromUserName><CreateTime>` + strconv.FormatInt(cbNow.Unix(), 10) +
		`</CreateTime><MsgType>text</MsgType><Content><![CDATA[报名]]></Content><MsgId>7192837465564738291</MsgId><AgentID>1000005</AgentID></xml>`
	scenarios := []scenario{
		{name: "Tencent's sample URL check answers its plaintext", configure: vecClock,
			do:         func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder { return e.serve(sampleURLCheck(vecMsgSig)) },
			wantStatus: 200, wantBody: vecPlain, wantEvents: 0,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				if n := e.metric(nil, "wejourney_callbacks_total", "outcome", "url_check"); n != 1 {
					t.Errorf("url_check = %v, want 1", n)
				}
			}},
		{name: "the sample with its '+' left unescaped in the URL", configure: vecClock,
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u := "/wechat/work/" + vecCorpID + "/" + vecAgentID + "?msg_signature=" + vecMsgSig + "&timestamp=" +
					strconv.Itoa(vecTS) + "&nonce=" + vecNonce + "&echostr=" + vecEchostr
				return e.serve(httptest.NewRequest(http.MethodGet, u, nil))
			},
			wantStatus: 200, wantBody: vecPlain, wantEvents: 0},
		{name: "the sample with a forged msg_signature is refused", configure: vecClock,
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				return e.serve(sampleURLCheck(strings.Repeat("0", 40)))
			},
			wantStatus: 403, wantEvents: 0, wantLog: []string{"wecom callback refused", "msg_signature mismatch", "WEJOURNEY_WECOM_TOKEN"},
			check: func(t *testing.T, e *cbEnv, rec *httptest.ResponseRecorder) {
				if strings.Contains(rec.Body.String(), vecPlain) {
					t.Errorf("a refused URL check answered the plaintext: %q", rec.Body)
				}
			}},
		{name: "the sample an hour later is a replay",
			configure:  func(c *Config) { c.Now = func() time.Time { return time.Unix(vecTS+3600, 0) } },
			do:         func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder { return e.serve(sampleURLCheck(vecMsgSig)) },
			wantStatus: 403, wantEvents: 0, wantLog: []string{"timestamp 3600s off"}},
		{name: "the second app's URL check",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				return e.serve(wecomCB("").urlCheck(t, "echo-8812"))
			},
			wantStatus: 200, wantBody: "echo-8812", wantEvents: 0},
		{name: "URL check without echostr",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB("")
				return e.serve(httptest.NewRequest(http.MethodGet, c.path()+"?"+c.query("").Encode(), nil))
			},
			wantStatus: 400, wantEvents: 0},
		{name: "a customer adds a rep: stored, then acknowledged", do: send(wecomCB(addXML("rep_li", "wmcust_1", "store_7"))),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				ev := e.events(t)[0]
				if ev.Type != "wecom.contact_added" || ev.Source != "wecom" || ev.Member.ExternalUserID != "wmcust_1" || ev.Member.UserID != "" ||
					ev.Scene != "store_7" || !ev.At.Equal(cbNow) {
					t.Errorf("stored %+v, want wecom.contact_added of wmcust_1 with scene store_7 at %v", ev, cbNow)
				}
				for k, v := range map[string]string{"state": "store_7", "welcome_code": "WELCOME-wmcust_1", "user_id": "rep_li",
					"change_type": "add_external_contact", "wecom_app": wecomCorp2 + "/" + wecomAgent2} {
					if ev.Props[k] != v {
						t.Errorf("props[%s] = %v, want %s", k, ev.Props[k], v)
					}
				}
				if n := e.metric(nil, "wejourney_events_total", "type", "wecom.contact_added"); n != 1 {
					t.Errorf(`wejourney_events_total{type="wecom.contact_added"} = %v, want 1`, n)
				}
				if n := e.metric(nil, "wejourney_callbacks_total", "outcome", "stored"); n != 1 {
					t.Errorf("stored = %v, want 1", n)
				}
			}},
		{name: "the same add retried is one event",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB(addXML("rep_li", "wmcust_1", "store_7"))
				if rec := e.serve(c.post(t)); rec.Code != 200 {
					t.Fatalf("first delivery: %d %s", rec.Code, rec.Body)
				}
				c.at, c.nonce = cbNow.Add(5*time.Second), "999" // WeCom signs and encrypts each retry anew
				return e.serve(c.post(t))
			},
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				if n := e.outcome("duplicate"); n != 1 {
					t.Errorf("duplicate = %v, want 1", n)
				}
			}},
		{name: "two customers add one rep in the same second: two events",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				if rec := e.serve(wecomCB(addXML("rep_li", "wmcust_1", "s")).post(t)); rec.Code != 200 {
					t.Fatalf("first add: %d %s", rec.Code, rec.Body)
				}
				return e.serve(wecomCB(addXML("rep_li", "wmcust_2", "s")).post(t))
			},
			wantStatus: 200, wantBody: "success", wantEvents: 2},
		{name: "a customer removes the rep", do: send(wecomCB(contactXML("del_follow_user", "rep_li", "wmcust_1", ""))),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				ev := e.events(t)[0]
				if ev.Type != "wecom.contact_removed" || ev.Member.ExternalUserID != "wmcust_1" || ev.Props["user_id"] != "rep_li" ||
					ev.Props["change_type"] != "del_follow_user" || ev.Scene != "" {
					t.Errorf("stored %+v, want wecom.contact_removed of wmcust_1 by rep_li", ev)
				}
			}},
		{name: "a customer joins a group", do: send(wecomCB(chatXML)),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				ev := e.events(t)[0]
				if ev.Type != "wecom.group_joined" || ev.Member.ExternalUserID != "wmcust_group" ||
					ev.Props["chat_id"] != "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA" || ev.Props["update_detail"] != "add_member" {
					t.Errorf("stored %+v, want wecom.group_joined of wmcust_group with the chat id", ev)
				}
			}},
		{name: "an employee's text to the app", do: send(wecomCB(textXML)),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				ev := e.events(t)[0]
				if ev.Type != "wecom.message" || ev.Member.UserID != "wecom:"+wecomCorp2+"/zhangsan" || ev.Props["text"] != "报名" ||
					ev.Props["msg_type"] != "text" || ev.Props["msg_id"] != "7192837465564738291" || ev.Props["user_id"] != "zhangsan" {
					t.Errorf("stored %+v, want wecom.message 报名 from zhangsan", ev)
				}
			}},
		{name: "a tag change names nobody: acknowledged, nothing stored",
			do: send(wecomCB(`<xml><ToUserName>wwcorp0000000002</ToUserName><FromUserName>sys</FromUserName><CreateTime>1</CreateTime>` +
				`<MsgType>event</MsgType><Event>change_external_tag</Event><ChangeType>create</ChangeType></xml>`)),
			wantStatus: 200, wantBody: "success", wantEvents: 0},
		{name: "a forged msg_signature stores nothing",
			do: func() func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB(addXML("rep_li", "wm_forged", "s"))
				c.msgSignature = strings.Repeat("0", 40)
				return send(c)
			}(),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"msg_signature mismatch", "app=" + wecomCorp2 + "/" + wecomAgent2},
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				if n := e.metric(nil, "wejourney_callbacks_total", "source", "wecom"); n != 1 {
					t.Errorf(`wejourney_callbacks_total{source="wecom"} = %v, want 1`, n)
				}
			}},
		{name: "a wrong token is refused", do: func() func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
			c := wecomCB(addXML("rep_li", "wm_forged", "s"))
			c.token = "not-the-token"
			return send(c)
		}(), wantStatus: 403, wantEvents: 0},
		{name: "a body swapped under a valid msg_signature is refused",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := wecomCB(addXML("rep_li", "wm_a", "s")).build(t)
				_, other := wecomCB(addXML("rep_li", "wm_b", "s")).build(t)
				return e.serve(httptest.NewRequest(http.MethodPost, u, bytes.NewReader(other)))
			},
			wantStatus: 403, wantEvents: 0},
		{name: "a callback encrypted for another corp is refused",
			do: func() func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB(addXML("rep_li", "wm_other", "s"))
				c.receiveID = "wwsomeoneelse0001"
				return send(c)
			}(),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"encrypted for another corp"}},
		{name: "a callback encrypted with another key cannot be decrypted",
			do: func() func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB(addXML("rep_li", "wm_key", "s"))
				c.aesKey = safeAESKey
				return send(c)
			}(),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"cannot decrypt", "WEJOURNEY_WECOM_AES_KEY"}},
		{name: "a stale timestamp is refused before the body is read",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB(addXML("rep_li", "wm_old", "s"))
				c.at = cbNow.Add(-time.Hour)
				u, b := c.build(t)
				body := &recordingBody{r: bytes.NewReader(b)}
				rec := e.serve(httptest.NewRequest(http.MethodPost, u, body))
				if body.wasRead() {
					t.Error("the body of a replay was read")
				}
				return rec
			},
			wantStatus: 403, wantEvents: 0, wantLog: []string{"timestamp 3600s off"}},
		{name: "no query at all",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				_, body := wecomCB(addXML("rep_li", "wm_x", "s")).build(t)
				return e.serve(httptest.NewRequest(http.MethodPost, wecomCB("").path(), bytes.NewReader(body)))
			},
			wantStatus: 403, wantEvents: 0},
		{name: "a body over 1 MiB",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := wecomCB("").build(t)
				req := httptest.NewRequest(http.MethodPost, u, bytes.NewReader(bytes.Repeat([]byte(" "), MaxBody+1)))
				req.ContentLength = -1
				return e.serve(req)
			},
			wantStatus: 413, wantEvents: 0},
		{name: "not an envelope",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := wecomCB("").build(t)
				return e.serve(httptest.NewRequest(http.MethodPost, u, strings.NewReader("not xml")))
			},
			wantStatus: 400, wantEvents: 0},
		{name: "a signed, encrypted callback that is not XML", do: send(wecomCB("garbage")),
			wantStatus: 400, wantEvents: 0},
		{name: "storing fails: 503, nothing stored",
			configure:  func(c *Config) { c.Ingestor = &failingStore{err: errors.New("database is down")} },
			do:         send(wecomCB(addXML("rep_li", "wm_down", "s"))),
			wantStatus: 503, wantBody: "try again", wantEvents: 0, wantLog: []string{"storing WeCom callback failed"},
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				if n := e.outcome("store_failed"); n != 1 {
					t.Errorf("store_failed = %v, want 1", n)
				}
			}},
		{name: "the events table is gone: 503, never success",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				if err := e.db.Migrator().DropTable(&model.Event{}); err != nil {
					t.Fatal(err)
				}
				return e.serve(wecomCB(addXML("rep_li", "wm_gone", "s")).post(t))
			},
			wantStatus: 503, wantEvents: -1},
		{name: "an unknown agent of a known corp",
			do: func() func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB(addXML("rep_li", "wm_who", "s"))
				c.agentid = "9999"
				return send(c)
			}(),
			wantStatus: 404, wantEvents: 0, wantLog: []string{"unknown corpid/agentid", "WEJOURNEY_WECOM_CORPID"}},
		{name: "an unknown corp",
			do: func() func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
				c := wecomCB(addXML("rep_li", "wm_who", "s"))
				c.corpid = "wwnobody"
				return send(c)
			}(),
			wantStatus: 404, wantEvents: 0},
		{name: "two WeCom apps each accept their own callbacks",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				if rec := e.serve(sampleCB(strings.ReplaceAll(addXML("rep_a", "wm_app1", "a"), wecomCorp2, vecCorpID)).post(t)); rec.Code != 200 {
					t.Fatalf("the sample corp's callback: %d %s", rec.Code, rec.Body)
				}
				if rec := e.serve(wecomCB(addXML("rep_b", "wm_app2", "b")).post(t)); rec.Code != 200 {
					t.Fatalf("the second app's callback: %d %s", rec.Code, rec.Body)
				}
				// The second app's callback sent to the first app's URL.
				c := wecomCB(addXML("rep_b", "wm_cross", "b"))
				u, body := c.build(t)
				u = strings.Replace(u, c.path(), sampleCB("").path(), 1)
				return e.serve(httptest.NewRequest(http.MethodPost, u, bytes.NewReader(body)))
			},
			wantStatus: 403, wantEvents: 2,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				evs := e.events(t)
				if evs[0].Member.ExternalUserID != "wm_app1" || evs[0].Props["wecom_app"] != vecCorpID+"/"+vecAgentID ||
					evs[1].Member.ExternalUserID != "wm_app2" || evs[1].Props["wecom_app"] != wecomCorp2+"/"+wecomAgent2 {
					t.Errorf("stored %+v and %+v, want wm_app1 on the sample app and wm_app2 on the second", evs[0], evs[1])
				}
			}},
		{name: "an Official Account's appid is not a WeCom app",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				if err := model.UpsertAccount(e.db, nil, model.Account{Kind: model.AccountWeChatOA, AppID: "wxoa/1", Token: wecomToken2, AESKey: otherAESKey}); err != nil {
					t.Fatal(err)
				}
				c := wecomCB(addXML("rep_li", "wm_oa", "s"))
				c.corpid, c.agentid, c.receiveID = "wxoa", "1", "wxoa"
				return e.serve(c.post(t))
			},
			wantStatus: 404, wantEvents: 0},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			e := newWeComEnv(t, sc.configure)
			rec := sc.do(t, e)
			if rec.Code != sc.wantStatus {
				t.Errorf("status = %d, want %d; body %q", rec.Code, sc.wantStatus, rec.Body)
			}
			if sc.wantBody != "" && rec.Body.String() != sc.wantBody {
				t.Errorf("body = %q, want %q", rec.Body, sc.wantBody)
			}
			if sc.wantStatus != 200 && rec.Body.String() == "success" {
				t.Errorf("a %d answer said success", rec.Code)
			}
			if sc.wantEvents >= 0 {
				if n := len(e.events(t)); n != sc.wantEvents {
					t.Errorf("events stored = %d, want %d", n, sc.wantEvents)
				}
			}
			logs := e.logs.String()
			for _, s := range sc.wantLog {
				if !strings.Contains(logs, s) {
					t.Errorf("log does not contain %q:\n%s", s, logs)
				}
			}
			for _, secret := range []string{vecToken, vecAESKey, wecomToken2, otherAESKey, "wm_forged", "CDATA"} {
				if strings.Contains(logs, secret) {
					t.Errorf("log contains %q (a token, key or body):\n%s", secret, logs)
				}
			}
			if sc.check != nil {
				sc.check(t, e, rec)
			}
		})
	}
}

// A flood of forged WeCom callbacks is counted in full and logged a few
// lines at a time.
func TestWeComRefusalLogIsRateLimited(t *testing.T) {
	t.Parallel()
	e := newWeComEnv(t, nil)
	forged := wecomCB(addXML("rep_li", "wm_x", "s"))
	forged.token = "wrong"
	for range 50 {
		if rec := e.serve(forged.post(t)); rec.Code != 403 {
			t.Fatalf("status %d, want 403", rec.Code)
		}
	}
	if lines := strings.Count(e.logs.String(), "msg_signature mismatch"); lines < 1 || lines > logBurst+2 {
		t.Errorf("50 forged callbacks logged %d lines, want 1 to %d", lines, logBurst+2)
	}
	if n := e.outcome("bad_msg_signature"); n != 50 {
		t.Errorf("bad_msg_signature = %v, want 50", n)
	}
}
