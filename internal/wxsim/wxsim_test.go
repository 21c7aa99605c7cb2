package wxsim_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/officialaccount"
	offConfig "github.com/silenceper/wechat/v2/officialaccount/config"
	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"
	"github.com/sirupsen/logrus"

	"github.com/wejourney/wejourney/internal/wxsim"
)

const (
	testAppID  = "wx1234567890abcdef"
	testToken  = "journeytoken"
	testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" // 43 chars
	testOpenID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
)

func TestMain(m *testing.M) {
	// silenceper logs every rejected signature at error level.
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// received is what the silenceper receiving side saw for one request.
type received struct {
	query    url.Values
	serveErr error
	handled  bool
	raw      []byte // srv.RequestRawXMLMsg: the decrypted plaintext
	msg      *message.MixMessage
	openID   string // srv.GetOpenID()
}

// receiver is an httptest server that handles callbacks exactly as an
// application built on silenceper/wechat would.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func newReceiver(t *testing.T, aesKey string) *receiver {
	t.Helper()
	oa := officialaccount.NewOfficialAccount(&offConfig.Config{
		AppID:          testAppID,
		AppSecret:      "x",
		Token:          testToken,
		EncodingAESKey: aesKey,
		Cache:          cache.NewMemory(),
	})
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wechat/oa/"+testAppID {
			http.NotFound(w, r)
			return
		}
		srv := oa.GetServer(r, w)
		rec := received{query: r.URL.Query()}
		srv.SetMessageHandler(func(m *message.MixMessage) *message.Reply {
			rec.handled = true
			rec.msg = m
			return nil
		})
		rec.serveErr = srv.Serve()
		rec.raw = srv.RequestRawXMLMsg
		rec.openID = srv.GetOpenID()
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, rec)
		rc.mu.Unlock()
		if rec.serveErr != nil {
			http.Error(w, rec.serveErr.Error(), http.StatusForbidden)
			return
		}
		if err := srv.Send(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) last(t *testing.T) received {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		t.Fatal("receiver saw no request")
	}
	return rc.reqs[len(rc.reqs)-1]
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// modes are the two callback modes every behaviour is checked in.
var modes = []struct {
	name   string
	aesKey string
}{
	{"plaintext", ""},
	{"safe", testAESKey},
}

func newClient(t *testing.T, target, aesKey string) *wxsim.Client {
	t.Helper()
	c, err := wxsim.New(wxsim.Config{Target: target, AppID: testAppID, Token: testToken, AESKey: aesKey})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// parsed is the part of silenceper's MixMessage the simulator controls.
type parsed struct {
	ToUserName, FromUserName       string
	CreateTime                     int64
	MsgType                        message.MsgType
	Event                          message.EventType
	EventKey, Ticket               string
	Content                        string
	MsgID, TemplateMsgID           int64
	Latitude, Longitude, Precision string
	Status                         string
}

func parsedOf(m *message.MixMessage) parsed {
	return parsed{
		ToUserName:    string(m.ToUserName),
		FromUserName:  string(m.FromUserName),
		CreateTime:    m.CreateTime,
		MsgType:       m.MsgType,
		Event:         m.Event,
		EventKey:      m.EventKey,
		Ticket:        m.Ticket,
		Content:       m.Content,
		MsgID:         m.MsgID,
		TemplateMsgID: m.TemplateMsgID,
		Latitude:      m.Latitude,
		Longitude:     m.Longitude,
		Precision:     m.Precision,
		Status:        m.Status,
	}
}

// wantReply returns the body silenceper answers a callback with when the
// handler returns no reply: "success" in plaintext mode; in safe mode an
// envelope encrypting an empty message, signed with the request's timestamp
// and nonce. It checks the envelope against the request and returns body
// itself when the envelope is right.
func wantReply(t *testing.T, aesKey string, q url.Values, body string) string {
	t.Helper()
	if aesKey == "" {
		return "success"
	}
	var env message.ResponseEncryptedXMLMsg
	if err := xml.Unmarshal([]byte(body), &env); err != nil {
		t.Errorf("safe-mode reply %q: %v", body, err)
		return "<a signed, encrypted empty reply>"
	}
	_, plain, err := util.DecryptMsg(testAppID, env.EncryptedMsg, aesKey)
	type reply struct {
		Timestamp, Nonce, MsgSignature, Plain string
		DecryptOK                             bool
	}
	got := reply{strconv.FormatInt(env.Timestamp, 10), env.Nonce, env.MsgSignature, string(plain), err == nil}
	want := reply{q.Get("timestamp"), q.Get("nonce"),
		util.Signature(testToken, q.Get("timestamp"), q.Get("nonce"), env.EncryptedMsg), "", true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("safe-mode reply envelope (-want +got):\n%s", diff)
		return "<a signed, encrypted empty reply>"
	}
	return body
}

// eventCases covers every kind; want receives the client and the pinned
// event actually sent.
type eventCase struct {
	name string
	ev   wxsim.Event
	want func(c *wxsim.Client, ev wxsim.Event) parsed
}

var eventCases = []eventCase{
	{
		name: "subscribe/plain",
		ev:   wxsim.Event{Kind: "subscribe", OpenID: testOpenID, CreateTime: 1700000000},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000000,
				MsgType: message.MsgTypeEvent, Event: message.EventSubscribe}
		},
	},
	{
		name: "subscribe/scene with ticket",
		ev:   wxsim.Event{Kind: "subscribe", OpenID: testOpenID, Scene: "spring_fair", Ticket: "gQH47joAAAAAAAAAASxodHRw", CreateTime: 1700000001},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000001,
				MsgType: message.MsgTypeEvent, Event: message.EventSubscribe,
				EventKey: "qrscene_spring_fair", Ticket: "gQH47joAAAAAAAAAASxodHRw"}
		},
	},
	{
		name: "subscribe/scene derived ticket",
		ev:   wxsim.Event{Kind: "subscribe", OpenID: testOpenID, Scene: "42", CreateTime: 1700000002},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000002,
				MsgType: message.MsgTypeEvent, Event: message.EventSubscribe,
				EventKey: "qrscene_42", Ticket: c.QRTicket("42")}
		},
	},
	{
		name: "scan",
		ev:   wxsim.Event{Kind: "scan", OpenID: testOpenID, Scene: "spring_fair", Ticket: "TICKET1", CreateTime: 1700000003},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000003,
				MsgType: message.MsgTypeEvent, Event: message.EventScan,
				EventKey: "spring_fair", Ticket: "TICKET1"}
		},
	},
	{
		name: "scan/upper-case kind derived ticket",
		ev:   wxsim.Event{Kind: "SCAN", OpenID: testOpenID, Scene: "booth 7", CreateTime: 1700000004},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000004,
				MsgType: message.MsgTypeEvent, Event: message.EventScan,
				EventKey: "booth 7", Ticket: c.QRTicket("booth 7")}
		},
	},
	{
		name: "click",
		ev:   wxsim.Event{Kind: "click", OpenID: testOpenID, Key: "MENU_SIGNUP", CreateTime: 1700000005},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000005,
				MsgType: message.MsgTypeEvent, Event: message.EventClick, EventKey: "MENU_SIGNUP"}
		},
	},
	{
		name: "view",
		ev:   wxsim.Event{Kind: "view", OpenID: testOpenID, URL: "https://example.com/p?a=1&b=<2>", CreateTime: 1700000006},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000006,
				MsgType: message.MsgTypeEvent, Event: message.EventView, EventKey: "https://example.com/p?a=1&b=<2>"}
		},
	},
	{
		name: "text",
		ev:   wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "hello", MsgID: 23456789012345678, CreateTime: 1700000007},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000007,
				MsgType: message.MsgTypeText, Content: "hello", MsgID: 23456789012345678}
		},
	},
	{
		name: "text/markup, CDATA end and unicode",
		ev:   wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "a]]>b <c> & d ]]]]> 你好 😀\nline 2", MsgID: 1, CreateTime: 1700000008},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000008,
				MsgType: message.MsgTypeText, Content: "a]]>b <c> & d ]]]]> 你好 😀\nline 2", MsgID: 1}
		},
	},
	{
		name: "text/generated MsgID and CreateTime",
		ev:   wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "1"},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: ev.CreateTime,
				MsgType: message.MsgTypeText, Content: "1", MsgID: ev.MsgID}
		},
	},
	{
		name: "unsubscribe",
		ev:   wxsim.Event{Kind: "unsubscribe", OpenID: testOpenID, CreateTime: 1700000009},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000009,
				MsgType: message.MsgTypeEvent, Event: message.EventUnsubscribe}
		},
	},
	{
		name: "location",
		ev: wxsim.Event{Kind: "location", OpenID: testOpenID, Latitude: 23.137466, Longitude: 113.352425,
			Precision: 119.38504, CreateTime: 1700000010},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000010,
				MsgType: message.MsgTypeEvent, Event: message.EventLocation,
				Latitude: "23.137466", Longitude: "113.352425", Precision: "119.385040"}
		},
	},
	{
		name: "location/southern western hemisphere",
		ev:   wxsim.Event{Kind: "location", OpenID: testOpenID, Latitude: -33.8688, Longitude: -70.5, CreateTime: 1700000011},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000011,
				MsgType: message.MsgTypeEvent, Event: message.EventLocation,
				Latitude: "-33.868800", Longitude: "-70.500000", Precision: "0.000000"}
		},
	},
	{
		name: "template_sent/success by default",
		ev:   wxsim.Event{Kind: "template_sent", OpenID: testOpenID, MsgID: 200163836, CreateTime: 1700000012},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000012,
				MsgType: message.MsgTypeEvent, Event: message.EventTemplateSendJobFinish,
				TemplateMsgID: 200163836, Status: "success"}
		},
	},
	{
		name: "template_sent/user block",
		ev:   wxsim.Event{Kind: "template_sent", OpenID: testOpenID, MsgID: 200163840, Status: "failed:user block", CreateTime: 1700000013},
		want: func(c *wxsim.Client, ev wxsim.Event) parsed {
			return parsed{ToUserName: c.OriginalID(), FromUserName: testOpenID, CreateTime: 1700000013,
				MsgType: message.MsgTypeEvent, Event: message.EventTemplateSendJobFinish,
				TemplateMsgID: 200163840, Status: "failed:user block"}
		},
	},
}

// TestSendAcceptedBySilenceper sends every kind, in both modes, to
// silenceper's own receiving side and checks what it parsed.
func TestSendAcceptedBySilenceper(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		rc := newReceiver(t, mode.aesKey)
		c := newClient(t, rc.URL, mode.aesKey)
		for _, tc := range eventCases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				ev := tc.ev.Pinned()
				status, body, err := c.Send(context.Background(), ev)
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				got := rc.last(t)
				if got.serveErr != nil {
					t.Fatalf("silenceper rejected the request: %v", got.serveErr)
				}
				if diff := cmp.Diff(http.StatusOK, status); diff != "" {
					t.Errorf("status (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantReply(t, mode.aesKey, got.query, body), body); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				if !got.handled {
					t.Fatal("message handler not called")
				}
				if diff := cmp.Diff(tc.want(c, ev), parsedOf(got.msg)); diff != "" {
					t.Errorf("parsed message (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(string(c.XML(ev)), string(got.raw)); diff != "" {
					t.Errorf("plaintext XML received (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(testOpenID, got.openID); diff != "" {
					t.Errorf("openid query (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestSendFillsZeroFields checks that Request itself fills CreateTime and
// MsgID, and that the query timestamp is "now", not CreateTime.
func TestSendFillsZeroFields(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			rc := newReceiver(t, mode.aesKey)
			c := newClient(t, rc.URL, mode.aesKey)
			before := time.Now().Unix()
			if _, _, err := c.Send(context.Background(), wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "hi"}); err != nil {
				t.Fatal(err)
			}
			first := rc.last(t)
			if _, _, err := c.Send(context.Background(), wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "hi"}); err != nil {
				t.Fatal(err)
			}
			second := rc.last(t)
			after := time.Now().Unix()
			for _, r := range []received{first, second} {
				if r.serveErr != nil {
					t.Fatalf("rejected: %v", r.serveErr)
				}
				if r.msg.CreateTime < before || r.msg.CreateTime > after {
					t.Errorf("CreateTime %d not in [%d, %d]", r.msg.CreateTime, before, after)
				}
				if r.msg.MsgID <= 0 {
					t.Errorf("MsgID = %d, want a generated positive id", r.msg.MsgID)
				}
			}
			if first.msg.MsgID == second.msg.MsgID {
				t.Errorf("two texts got the same generated MsgID %d", first.msg.MsgID)
			}

			// An old CreateTime does not leak into the query timestamp.
			if _, _, err := c.Send(context.Background(), wxsim.Event{Kind: "click", OpenID: testOpenID, Key: "K", CreateTime: 1000}); err != nil {
				t.Fatal(err)
			}
			r := rc.last(t)
			ts, err := strconv.ParseInt(r.query.Get("timestamp"), 10, 64)
			if err != nil {
				t.Fatalf("timestamp query: %v", err)
			}
			if ts < before || ts > time.Now().Unix() {
				t.Errorf("query timestamp %d is not now (CreateTime was 1000)", ts)
			}
			if diff := cmp.Diff(int64(1000), r.msg.CreateTime); diff != "" {
				t.Errorf("CreateTime (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRequestShape checks the method, path, headers, query parameters and,
// in safe mode, the envelope.
func TestRequestShape(t *testing.T) {
	t.Parallel()
	ev := wxsim.Event{Kind: "click", OpenID: testOpenID, Key: "K", CreateTime: 1700000000}
	tests := []struct {
		name      string
		aesKey    string
		wantQuery []string
	}{
		{"plaintext", "", []string{"signature", "timestamp", "nonce", "openid"}},
		{"safe", testAESKey, []string{"signature", "timestamp", "nonce", "openid", "encrypt_type", "msg_signature"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, "http://127.0.0.1:8080/", tc.aesKey)
			req, err := c.Request(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			var gotKeys []string
			for _, kv := range strings.Split(req.URL.RawQuery, "&") {
				k, _, _ := strings.Cut(kv, "=")
				gotKeys = append(gotKeys, k)
			}
			q := req.URL.Query()
			body, _ := io.ReadAll(req.Body)
			got := struct {
				Method, URL, ContentType, EncryptType, OpenID string
				QueryKeys                                     []string
				SignatureOK                                   bool
			}{
				Method:      req.Method,
				URL:         req.URL.Scheme + "://" + req.URL.Host + req.URL.Path,
				ContentType: req.Header.Get("Content-Type"),
				EncryptType: q.Get("encrypt_type"),
				OpenID:      q.Get("openid"),
				QueryKeys:   gotKeys,
				SignatureOK: q.Get("signature") == util.Signature(testToken, q.Get("timestamp"), q.Get("nonce")),
			}
			want := got
			want.Method = http.MethodPost
			want.URL = "http://127.0.0.1:8080/wechat/oa/" + testAppID
			want.ContentType = "text/xml"
			want.OpenID = testOpenID
			want.QueryKeys = tc.wantQuery
			want.SignatureOK = true
			want.EncryptType = ""
			if tc.aesKey != "" {
				want.EncryptType = "aes"
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if tc.aesKey == "" {
				if diff := cmp.Diff(string(c.XML(ev)), string(body)); diff != "" {
					t.Errorf("plaintext body (-want +got):\n%s", diff)
				}
				return
			}
			var env struct {
				XMLName    xml.Name `xml:"xml"`
				ToUserName string   `xml:"ToUserName"`
				Encrypt    string   `xml:"Encrypt"`
				Inner      string   `xml:",innerxml"`
			}
			if err := xml.Unmarshal(body, &env); err != nil {
				t.Fatalf("envelope: %v", err)
			}
			wantInner := "<ToUserName><![CDATA[" + c.OriginalID() + "]]></ToUserName><Encrypt><![CDATA[" + env.Encrypt + "]]></Encrypt>"
			if diff := cmp.Diff(wantInner, env.Inner); diff != "" {
				t.Errorf("envelope (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(util.Signature(testToken, q.Get("timestamp"), q.Get("nonce"), env.Encrypt), q.Get("msg_signature")); diff != "" {
				t.Errorf("msg_signature (-want +got):\n%s", diff)
			}
			_, plain, err := util.DecryptMsg(testAppID, env.Encrypt, testAESKey)
			if err != nil {
				t.Fatalf("DecryptMsg: %v", err)
			}
			if diff := cmp.Diff(string(c.XML(ev)), string(plain)); diff != "" {
				t.Errorf("decrypted body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifyURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		aesKey  string
		echostr string
	}{
		{"plaintext", "", "5838479218127813673"},
		{"safe", testAESKey, "5838479218127813673"},
		{"plaintext/needs escaping", "", "a b&c=d+e/f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.aesKey)
			c := newClient(t, rc.URL, tc.aesKey)
			status, body, err := c.VerifyURL(context.Background(), tc.echostr)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				Status int
				Body   string
			}
			if diff := cmp.Diff(result{http.StatusOK, tc.echostr}, result{status, body}); diff != "" {
				t.Errorf("VerifyURL (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("empty echostr", func(t *testing.T) {
		c := newClient(t, "http://127.0.0.1:1", "")
		if _, _, err := c.VerifyURL(context.Background(), ""); err == nil {
			t.Error("VerifyURL(\"\") succeeded")
		}
	})
}

func TestForgedRequestRejected(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		rc := newReceiver(t, mode.aesKey)
		c := newClient(t, rc.URL, mode.aesKey)
		for _, tc := range eventCases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				req, err := c.ForgedRequest(context.Background(), tc.ev)
				if err != nil {
					t.Fatal(err)
				}
				q := req.URL.Query()
				if q.Get("signature") == util.Signature(testToken, q.Get("timestamp"), q.Get("nonce")) {
					t.Error("forged signature is the correct one")
				}
				if mode.aesKey != "" && q.Get("msg_signature") == "" {
					t.Error("forged safe-mode request lacks msg_signature")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				got := rc.last(t)
				if got.serveErr == nil {
					t.Fatal("srv.Serve() accepted a forged request")
				}
				if got.handled {
					t.Error("message handler ran for a forged request")
				}
				if diff := cmp.Diff(http.StatusForbidden, resp.StatusCode); diff != "" {
					t.Errorf("status (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestForgedMsgSignature checks that in safe mode msg_signature is forged
// too, not only signature: with signature repaired, silenceper must still
// reject the request on msg_signature.
func TestForgedMsgSignature(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, testAESKey)
	c := newClient(t, rc.URL, testAESKey)
	req, err := c.ForgedRequest(context.Background(), wxsim.Event{Kind: "click", OpenID: testOpenID, Key: "K"})
	if err != nil {
		t.Fatal(err)
	}
	q := req.URL.Query()
	q.Set("signature", util.Signature(testToken, q.Get("timestamp"), q.Get("nonce")))
	req.URL.RawQuery = q.Encode()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := rc.last(t)
	if got.serveErr == nil || got.handled {
		t.Fatalf("forged msg_signature accepted (err=%v, handled=%v)", got.serveErr, got.handled)
	}
}

func TestPreparedResend(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			rc := newReceiver(t, mode.aesKey)
			c := newClient(t, rc.URL, mode.aesKey)
			p, err := c.Prepared(wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "bench"})
			if err != nil {
				t.Fatal(err)
			}
			const n = 3
			var raws []string
			for range n {
				req, err := p.NewRequest(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				got := rc.last(t)
				if got.serveErr != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("prepared request rejected: %d %v", resp.StatusCode, got.serveErr)
				}
				raws = append(raws, string(got.raw))
			}
			if diff := cmp.Diff(n, rc.count()); diff != "" {
				t.Errorf("requests received (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{raws[0], raws[0], raws[0]}, raws); diff != "" {
				t.Errorf("resends differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestXMLDeterminism(t *testing.T) {
	t.Parallel()
	c := newClient(t, "http://127.0.0.1:8080", "")
	const now = 1700000000
	base := wxsim.Event{OpenID: testOpenID, CreateTime: now}
	with := func(f func(*wxsim.Event)) wxsim.Event {
		ev := base
		f(&ev)
		return ev
	}
	tests := []struct {
		name string
		a, b wxsim.Event
		same bool
	}{
		{"retry of a pinned text is identical",
			wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "x", MsgID: 7, CreateTime: now},
			wxsim.Event{Kind: "text", OpenID: testOpenID, Content: "x", MsgID: 7, CreateTime: now}, true},
		{"retry of a scene subscribe is identical",
			with(func(e *wxsim.Event) { e.Kind, e.Scene = "subscribe", "s" }),
			with(func(e *wxsim.Event) { e.Kind, e.Scene = "subscribe", "s" }), true},
		{"subscribe vs scan in the same second",
			with(func(e *wxsim.Event) { e.Kind, e.Scene = "subscribe", "s" }),
			with(func(e *wxsim.Event) { e.Kind, e.Scene = "scan", "s" }), false},
		{"subscribe vs unsubscribe in the same second",
			with(func(e *wxsim.Event) { e.Kind = "subscribe" }),
			with(func(e *wxsim.Event) { e.Kind = "unsubscribe" }), false},
		{"two clicks with different keys in the same second",
			with(func(e *wxsim.Event) { e.Kind, e.Key = "click", "A" }),
			with(func(e *wxsim.Event) { e.Kind, e.Key = "click", "B" }), false},
		{"two scans with different scenes in the same second",
			with(func(e *wxsim.Event) { e.Kind, e.Scene = "scan", "A" }),
			with(func(e *wxsim.Event) { e.Kind, e.Scene = "scan", "B" }), false},
		{"two identical texts without MsgID in the same second",
			with(func(e *wxsim.Event) { e.Kind, e.Content = "text", "x" }),
			with(func(e *wxsim.Event) { e.Kind, e.Content = "text", "x" }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := c.XML(tc.a), c.XML(tc.b)
			if a == nil || b == nil {
				t.Fatalf("XML returned nil: %q / %q", a, b)
			}
			if diff := cmp.Diff(tc.same, bytes.Equal(a, b)); diff != "" {
				t.Errorf("equal (-want +got):\n%s\na: %s\nb: %s", diff, a, b)
			}
		})
	}
	t.Run("pinned event is stable", func(t *testing.T) {
		ev := wxsim.Event{Kind: "template_sent", OpenID: testOpenID}.Pinned()
		if ev.CreateTime == 0 || ev.MsgID == 0 {
			t.Fatalf("Pinned left zero fields: %+v", ev)
		}
		if diff := cmp.Diff(string(c.XML(ev)), string(c.XML(ev))); diff != "" {
			t.Errorf("(-first +second):\n%s", diff)
		}
	})
}

func TestXMLDocument(t *testing.T) {
	t.Parallel()
	c, err := wxsim.New(wxsim.Config{Target: "http://h", AppID: testAppID, OriginalID: "gh_0123456789ab", Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ev   wxsim.Event
		want string
	}{
		{"subscribe", wxsim.Event{Kind: "subscribe", OpenID: "o1", CreateTime: 5},
			"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>5</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>"},
		{"scan", wxsim.Event{Kind: "scan", OpenID: "o1", Scene: "9", Ticket: "T", CreateTime: 5},
			"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>5</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[9]]></EventKey><Ticket><![CDATA[T]]></Ticket></xml>"},
		{"text", wxsim.Event{Kind: "text", OpenID: "o1", Content: "a]]>b", MsgID: 3, CreateTime: 5},
			"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>5</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[a]]]]><![CDATA[>b]]></Content><MsgId>3</MsgId></xml>"},
		{"location", wxsim.Event{Kind: "location", OpenID: "o1", Latitude: 1.5, Longitude: 2, Precision: 30, CreateTime: 5},
			"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>5</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event><Latitude>1.500000</Latitude><Longitude>2.000000</Longitude><Precision>30.000000</Precision></xml>"},
		{"template_sent", wxsim.Event{Kind: "template_sent", OpenID: "o1", MsgID: 200163836, Status: "failed:system failed", CreateTime: 5},
			"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>5</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID><Status><![CDATA[failed:system failed]]></Status></xml>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, string(c.XML(tc.ev))); diff != "" {
				t.Errorf("XML (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidEvents(t *testing.T) {
	t.Parallel()
	c := newClient(t, "http://127.0.0.1:1", testAESKey)
	tests := []struct {
		name string
		ev   wxsim.Event
	}{
		{"unknown kind", wxsim.Event{Kind: "image", OpenID: testOpenID}},
		{"empty kind", wxsim.Event{OpenID: testOpenID}},
		{"no openid", wxsim.Event{Kind: "subscribe"}},
		{"scan without scene", wxsim.Event{Kind: "scan", OpenID: testOpenID}},
		{"click without key", wxsim.Event{Kind: "click", OpenID: testOpenID}},
		{"view without url", wxsim.Event{Kind: "view", OpenID: testOpenID}},
		{"text without content", wxsim.Event{Kind: "text", OpenID: testOpenID}},
		{"negative CreateTime", wxsim.Event{Kind: "subscribe", OpenID: testOpenID, CreateTime: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type result struct{ ValidateErr, XMLNil, RequestErr, PreparedErr, SendErr bool }
			_, reqErr := c.Request(context.Background(), tc.ev)
			_, prepErr := c.Prepared(tc.ev)
			_, _, sendErr := c.Send(context.Background(), tc.ev)
			got := result{tc.ev.Validate() != nil, c.XML(tc.ev) == nil, reqErr != nil, prepErr != nil, sendErr != nil}
			if diff := cmp.Diff(result{true, true, true, true, true}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	valid := wxsim.Config{Target: "http://127.0.0.1:8080", AppID: testAppID, Token: testToken}
	with := func(f func(*wxsim.Config)) wxsim.Config {
		cfg := valid
		f(&cfg)
		return cfg
	}
	tests := []struct {
		name    string
		cfg     wxsim.Config
		wantErr bool
	}{
		{"plaintext", valid, false},
		{"safe", with(func(c *wxsim.Config) { c.AESKey = testAESKey }), false},
		{"https target with base path", with(func(c *wxsim.Config) { c.Target = "https://example.com/base/" }), false},
		{"42-char AES key", with(func(c *wxsim.Config) { c.AESKey = testAESKey[:42] }), true},
		{"44-char AES key", with(func(c *wxsim.Config) { c.AESKey = testAESKey + "H" }), true},
		{"43-char AES key that is not base64", with(func(c *wxsim.Config) { c.AESKey = strings.Repeat("!", 43) }), true},
		{"no AppID", with(func(c *wxsim.Config) { c.AppID = "" }), true},
		{"no Token", with(func(c *wxsim.Config) { c.Token = "" }), true},
		{"no Target", with(func(c *wxsim.Config) { c.Target = "" }), true},
		{"Target without scheme", with(func(c *wxsim.Config) { c.Target = "127.0.0.1:8080" }), true},
		{"ftp Target", with(func(c *wxsim.Config) { c.Target = "ftp://example.com" }), true},
		{"Target with query", with(func(c *wxsim.Config) { c.Target = "http://example.com/?a=b" }), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := wxsim.New(tc.cfg)
			if diff := cmp.Diff(tc.wantErr, err != nil); diff != "" {
				t.Fatalf("error = %v (-wantErr +gotErr):\n%s", err, diff)
			}
			if err == nil && c == nil {
				t.Fatal("nil client without error")
			}
		})
	}

	t.Run("derived and explicit original id", func(t *testing.T) {
		a, _ := wxsim.New(valid)
		b, _ := wxsim.New(valid)
		o, _ := wxsim.New(with(func(c *wxsim.Config) { c.OriginalID = "gh_custom" }))
		got := []string{a.OriginalID()[:3], strconv.Itoa(len(a.OriginalID())), strconv.FormatBool(a.OriginalID() == b.OriginalID()), o.OriginalID()}
		if diff := cmp.Diff([]string{"gh_", "15", "true", "gh_custom"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("endpoint", func(t *testing.T) {
		c, _ := wxsim.New(with(func(c *wxsim.Config) { c.Target = "https://example.com/base/" }))
		if diff := cmp.Diff("https://example.com/base/wechat/oa/"+testAppID, c.Endpoint()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestKinds(t *testing.T) {
	t.Parallel()
	want := []string{"subscribe", "scan", "click", "view", "text", "unsubscribe", "location", "template_sent"}
	got := wxsim.Kinds()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Kinds (-want +got):\n%s", diff)
	}
	got[0] = "mutated"
	if wxsim.Kinds()[0] != "subscribe" {
		t.Error("Kinds returned its internal slice")
	}
	// Every kind is covered by the end-to-end cases.
	for _, k := range want {
		if !slices.ContainsFunc(eventCases, func(tc eventCase) bool {
			return strings.EqualFold(tc.ev.Kind, k)
		}) {
			t.Errorf("kind %q has no end-to-end case", k)
		}
	}
}
