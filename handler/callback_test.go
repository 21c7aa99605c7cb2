package handler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/silenceper/wechat/v2/util"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/testutil"
	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// The accounts every callback test handler knows.
const (
	plainAppID = "wxplain000000001"
	plainToken = "plain-token-9f3a"
	safeAppID  = "wxsafe0000000001"
	safeToken  = "safe-token-7c21"
	safeAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	// otherAESKey is a valid EncodingAESKey that is not the account's.
	otherAESKey = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
)

// cbNow is the test handlers' clock.
var cbNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// cbEnv is one fresh handler over a fresh SQLite database.
type cbEnv struct {
	h       *Handler
	router  http.Handler
	db      *gorm.DB
	logs    *testutil.Buffer
	reg     *prometheus.Registry
	ing     *journey.Ingestor
	closeDB func()
}

func newCallbackEnv(t *testing.T, configure func(*Config)) *cbEnv {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "cb.db"))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	for _, a := range []model.Account{
		{Kind: model.AccountWeChatOA, AppID: plainAppID, Name: "plain", Token: plainToken},
		{Kind: model.AccountWeChatOA, AppID: safeAppID, Name: "safe", Token: safeToken, AESKey: safeAESKey},
	} {
		if err := model.UpsertAccount(db, nil, a); err != nil {
			t.Fatal(err)
		}
	}
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(ing.Close)
	logs := &testutil.Buffer{}
	reg := prometheus.NewRegistry()
	cfg := Config{
		DB: db, Ingestor: ing, Accounts: model.NewAccounts(db, nil), Registry: reg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return cbNow },
	}
	if configure != nil {
		configure(&cfg)
	}
	h := newHandler(cfg)
	return &cbEnv{h: h, router: h.routes(), db: db, logs: logs, reg: reg, ing: ing, closeDB: func() { sqlDB.Close() }}
}

func (e *cbEnv) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.router.ServeHTTP(rec, req)
	return rec
}

func (e *cbEnv) events(t *testing.T) []model.Event {
	t.Helper()
	var evs []model.Event
	if err := e.db.Order("id").Find(&evs).Error; err != nil {
		t.Fatalf("reading events: %v", err)
	}
	return evs
}

func (e *cbEnv) outcome(name string) float64 {
	return e.metric(nil, "wejourney_callbacks_total", "outcome", name)
}

// metric reads the counter family name{label=value}; it reports the number
// of series of the family through series when that is not nil.
func (e *cbEnv) metric(series *int, name, label, value string) float64 {
	families, err := e.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		if series != nil {
			*series = len(f.GetMetric())
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// cb describes one callback as WeChat would sign it; zero fields take the
// defaults of the plaintext account at cbNow.
type cb struct {
	appid, token, aesKey string // aesKey set: safe mode (encrypt with it)
	at                   time.Time
	xml                  string
	// msgSignature replaces the computed msg_signature when set.
	msgSignature string
	// encryptFor encrypts the message for another appid when set.
	encryptFor string
	plaintext  bool // sign a plaintext callback even for the safe account
}

func plainCB(xml string) cb { return cb{appid: plainAppID, token: plainToken, xml: xml} }
func safeCB(xml string) cb {
	return cb{appid: safeAppID, token: safeToken, aesKey: safeAESKey, xml: xml}
}

// followXML is a subscribe event from openid.
func followXML(openid string) string {
	return fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>`+
		`<EventKey><![CDATA[qrscene_store_1]]></EventKey></xml>`, openid, cbNow.Unix())
}

// query signs c: signature, timestamp, nonce and, in safe mode,
// encrypt_type and msg_signature over encrypt.
func (c cb) query(encrypt string) url.Values {
	at := c.at
	if at.IsZero() {
		at = cbNow
	}
	ts, nonce := strconv.FormatInt(at.Unix(), 10), "1234567"
	q := url.Values{"signature": {util.Signature(c.token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}, "openid": {"o"}}
	if c.aesKey != "" && !c.plaintext {
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", util.Signature(c.token, ts, nonce, encrypt))
		if c.msgSignature != "" {
			q.Set("msg_signature", c.msgSignature)
		}
	}
	return q
}

// build returns the URL and body of c.
func (c cb) build(t *testing.T) (string, []byte) {
	t.Helper()
	body, encrypt := []byte(c.xml), ""
	if c.aesKey != "" && !c.plaintext {
		appid := c.appid
		if c.encryptFor != "" {
			appid = c.encryptFor
		}
		enc, err := util.EncryptMsg([]byte("0123456789abcdef"), []byte(c.xml), appid, c.aesKey)
		if err != nil {
			t.Fatal(err)
		}
		encrypt = string(enc)
		body = []byte("<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><Encrypt><![CDATA[" + encrypt + "]]></Encrypt></xml>")
	}
	return "/wechat/oa/" + c.appid + "?" + c.query(encrypt).Encode(), body
}

// post is c as a POST request.
func (c cb) post(t *testing.T) *http.Request {
	u, body := c.build(t)
	req := httptest.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/xml")
	return req
}

// urlCheck is WeChat's GET with echostr, signed at at.
func urlCheck(at time.Time, echostr string) *http.Request {
	q := cb{token: plainToken, at: at}.query("")
	q.Set("echostr", echostr)
	return httptest.NewRequest(http.MethodGet, "/wechat/oa/"+plainAppID+"?"+q.Encode(), nil)
}

// recordingBody is a request body that records whether it was read.
type recordingBody struct {
	r    io.Reader
	mu   sync.Mutex
	read bool
}

func (b *recordingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.read = true
	b.mu.Unlock()
	return b.r.Read(p)
}

func (b *recordingBody) wasRead() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// blockingBody signals its first Read and then blocks until released.
type blockingBody struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
	r       io.Reader
}

func (b *blockingBody) Read(p []byte) (int, error) {
	b.once.Do(func() { close(b.started) })
	<-b.release
	return b.r.Read(p)
}

func TestOfficialAccountCallbacks(t *testing.T) {
	t.Parallel()
	type scenario struct {
		name      string
		configure func(*Config)
		// do sends the request under test; it may send others first.
		do         func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder
		wantStatus int
		wantBody   string // exact body; "" skips
		wantEvents int    // events stored afterwards; -1 skips
		wantLog    []string
		check      func(t *testing.T, e *cbEnv, rec *httptest.ResponseRecorder)
	}
	send := func(c cb) func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
		return func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder { return e.serve(c.post(t)) }
	}
	old := cb{appid: plainAppID, token: plainToken, at: cbNow.Add(-time.Hour), xml: followXML("o_old")}
	noFrom := `<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>`
	scenarios := []scenario{
		{name: "plaintext follow is stored, then acknowledged", do: send(plainCB(followXML("o_plain"))),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				ev := e.events(t)[0]
				if ev.Type != "wechat.subscribe" || ev.Member.OpenID != "o_plain" || ev.Member.AppID != plainAppID || ev.Props["scene"] != "store_1" {
					t.Errorf("stored %+v, want wechat.subscribe of o_plain on %s with scene store_1", ev, plainAppID)
				}
			}},
		{name: "safe-mode follow is decrypted, stored, then acknowledged", do: send(safeCB(followXML("o_safe"))),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				ev := e.events(t)[0]
				if ev.Type != "wechat.subscribe" || ev.Member.OpenID != "o_safe" || ev.Member.AppID != safeAppID {
					t.Errorf("stored %+v, want wechat.subscribe of o_safe on %s", ev, safeAppID)
				}
			}},
		{name: "a retried callback is acknowledged and stored once",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				c := plainCB(followXML("o_retry"))
				if rec := e.serve(c.post(t)); rec.Code != 200 {
					t.Fatalf("first delivery: %d %s", rec.Code, rec.Body)
				}
				c.at = cbNow.Add(5 * time.Second) // WeChat signs each retry anew
				return e.serve(c.post(t))
			},
			wantStatus: 200, wantBody: "success", wantEvents: 1},
		{name: "a 4-minute-old signature is still accepted",
			do:         send(cb{appid: plainAppID, token: plainToken, at: cbNow.Add(-4 * time.Minute), xml: followXML("o_late")}),
			wantStatus: 200, wantBody: "success", wantEvents: 1},
		{name: "an hour-old valid signature is a replay", do: send(old),
			wantStatus: 403, wantEvents: 0,
			wantLog: []string{"timestamp 3600s off", "a replay, or this server's clock is wrong", "appid=" + plainAppID}},
		{name: "a timestamp an hour ahead is refused too",
			do:         send(cb{appid: plainAppID, token: plainToken, at: cbNow.Add(time.Hour), xml: followXML("o_future")}),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"timestamp 3600s off"}},
		{name: "a wrong token is refused and logged with its hint",
			do:         send(cb{appid: plainAppID, token: "not-the-token", xml: followXML("o_forged")}),
			wantStatus: 403, wantEvents: 0,
			wantLog: []string{"level=WARN", "signature mismatch", "check WEJOURNEY_WECHAT_TOKEN", "appid=" + plainAppID}},
		{name: "no signature at all",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				return e.serve(httptest.NewRequest(http.MethodPost, "/wechat/oa/"+plainAppID, strings.NewReader(followXML("o_x"))))
			},
			wantStatus: 403, wantEvents: 0},
		{name: "plaintext callback to a safe-mode account",
			do:         send(cb{appid: safeAppID, token: safeToken, aesKey: safeAESKey, plaintext: true, xml: followXML("o_downgrade")}),
			wantStatus: 403, wantEvents: 0,
			wantLog: []string{"plaintext callback to a safe-mode account", "unset WEJOURNEY_WECHAT_AES_KEY"}},
		{name: "a bad msg_signature is refused",
			do: func() func(*testing.T, *cbEnv) *httptest.ResponseRecorder {
				c := safeCB(followXML("o_tampered"))
				c.msgSignature = strings.Repeat("0", 40)
				return send(c)
			}(),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"msg_signature mismatch"}},
		{name: "a body swapped under a valid msg_signature is refused",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := safeCB(followXML("o_a")).build(t)
				_, other := safeCB(followXML("o_b")).build(t)
				return e.serve(httptest.NewRequest(http.MethodPost, u, bytes.NewReader(other)))
			},
			wantStatus: 403, wantEvents: 0},
		{name: "a message encrypted with another AES key cannot be decrypted",
			do:         send(cb{appid: safeAppID, token: safeToken, aesKey: otherAESKey, xml: followXML("o_key")}),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"cannot decrypt", "check WEJOURNEY_WECHAT_AES_KEY"}},
		{name: "a message encrypted for another appid is refused",
			do:         send(cb{appid: safeAppID, token: safeToken, aesKey: safeAESKey, encryptFor: "wxsomeoneelse0001", xml: followXML("o_appid")}),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"encrypted for another appid"}},
		{name: "an encrypted callback to an account without AES key",
			do:         send(cb{appid: plainAppID, token: plainToken, aesKey: safeAESKey, xml: followXML("o_enc")}),
			wantStatus: 403, wantEvents: 0, wantLog: []string{"set WEJOURNEY_WECHAT_AES_KEY"}},
		{name: "a 5 MiB body with a bad signature is refused unread",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := cb{appid: plainAppID, token: "wrong", xml: "x"}.build(t)
				body := &recordingBody{r: bytes.NewReader(bytes.Repeat([]byte("a"), 5<<20))}
				req := httptest.NewRequest(http.MethodPost, u, body)
				req.ContentLength = -1 // chunked: only the signature check stops it
				rec := e.serve(req)
				if body.wasRead() {
					t.Error("the body was read before the signature was checked")
				}
				return rec
			},
			wantStatus: 403, wantEvents: 0},
		{name: "a valid signature with a chunked body over 1 MiB",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := plainCB("").build(t)
				req := httptest.NewRequest(http.MethodPost, u, io.MultiReader(strings.NewReader(followXML("o_big")), bytes.NewReader(bytes.Repeat([]byte(" "), MaxBody))))
				req.ContentLength = -1
				return e.serve(req)
			},
			wantStatus: 413, wantEvents: 0, wantLog: []string{"body over 1048576 bytes"}},
		{name: "a valid signature with a Content-Length over 1 MiB is refused unread",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := plainCB("").build(t)
				body := &recordingBody{r: bytes.NewReader(bytes.Repeat([]byte("a"), MaxBody+1))}
				req := httptest.NewRequest(http.MethodPost, u, body)
				req.ContentLength = MaxBody + 1
				rec := e.serve(req)
				if body.wasRead() {
					t.Error("a body announced over the cap was read")
				}
				return rec
			},
			wantStatus: 413, wantEvents: 0},
		{name: "a callback without FromUserName is refused, not acknowledged", do: send(plainCB(noFrom)),
			wantStatus: 400, wantEvents: 0, wantLog: []string{"FromUserName"}},
		{name: "malformed XML", do: send(plainCB(`<xml><FromUserName>o</FromUserName><MsgType>event`)),
			wantStatus: 400, wantEvents: 0},
		{name: "an empty body", do: send(plainCB("")), wantStatus: 400, wantEvents: 0},
		{name: "a safe-mode envelope without <Encrypt>",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				u, _ := safeCB(followXML("o_env")).build(t)
				return e.serve(httptest.NewRequest(http.MethodPost, u, strings.NewReader("not xml at all")))
			},
			wantStatus: 400, wantEvents: 0},
		{name: "an unknown appid is logged with its hint",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				c := plainCB(followXML("o_who"))
				c.appid = "wxnobody000000001"
				return e.serve(c.post(t))
			},
			wantStatus: 404, wantEvents: 0, wantLog: []string{"unknown appid", "check the callback URL and WEJOURNEY_WECHAT_APPID"}},
		{name: "the events table is gone: 503, never success",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				if err := e.db.Migrator().DropTable(&model.Event{}); err != nil {
					t.Fatal(err)
				}
				return e.serve(plainCB(followXML("o_down")).post(t))
			},
			wantStatus: 503, wantEvents: -1,
			check: func(t *testing.T, e *cbEnv, rec *httptest.ResponseRecorder) {
				if strings.Contains(rec.Body.String(), "success") {
					t.Errorf("body %q says success", rec.Body)
				}
				if n := e.outcome("store_failed"); n != 1 {
					t.Errorf("store_failed = %v, want 1", n)
				}
			}},
		{name: "the database is closed: 503, never success",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				// The account is cached; only the store fails.
				if _, err := e.h.cfg.Accounts.Get(context.Background(), plainAppID); err != nil {
					t.Fatal(err)
				}
				e.closeDB()
				return e.serve(plainCB(followXML("o_closed")).post(t))
			},
			wantStatus: 503, wantEvents: -1, wantLog: []string{"storing callback failed"},
			check: func(t *testing.T, e *cbEnv, rec *httptest.ResponseRecorder) {
				if strings.Contains(rec.Body.String(), "success") {
					t.Errorf("body %q says success", rec.Body)
				}
				if n := e.outcome("store_failed"); n != 1 {
					t.Errorf("store_failed = %v, want 1", n)
				}
			}},
		{name: "body reads over the cap are answered 503",
			configure: func(c *Config) { c.MaxConcurrentBodies = 1 },
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				const wait = 100 * time.Millisecond // bodySlotWait, shortened
				e.h.bodyWait = wait
				u, body := plainCB(followXML("o_slow")).build(t)
				slow := &blockingBody{started: make(chan struct{}), release: make(chan struct{}), r: bytes.NewReader(body)}
				first := make(chan *httptest.ResponseRecorder)
				go func() { first <- e.serve(httptest.NewRequest(http.MethodPost, u, slow)) }()
				<-slow.started
				start := time.Now()
				rec := e.serve(plainCB(followXML("o_second")).post(t))
				if waited := time.Since(start); waited < wait || waited > 20*wait {
					t.Errorf("refused after %v, want about %v", waited, wait)
				}
				close(slow.release)
				if r := <-first; r.Code != 200 || r.Body.String() != "success" {
					t.Errorf("the slow callback holding the slot: %d %q, want 200 success", r.Code, r.Body)
				}
				return rec
			},
			wantStatus: 503, wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, rec *httptest.ResponseRecorder) {
				if rec.Body.String() == "success" {
					t.Error("a refused callback said success")
				}
				if got := e.events(t)[0].Member.OpenID; got != "o_slow" {
					t.Errorf("stored %s, want o_slow", got)
				}
			}},
		{name: "an unknown WeChat event gets a bounded type and the other label",
			do: send(plainCB(`<xml><FromUserName><![CDATA[o_odd]]></FromUserName><CreateTime>5</CreateTime><MsgType><![CDATA[event]]></MsgType>` +
				`<Event><![CDATA[Some New Event ` + strings.Repeat("X", 100) + `]]></Event></xml>`)),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				typ := e.events(t)[0].Type
				if want := "wechat.some_new_event_" + strings.Repeat("x", 64-len("wechat.some_new_event_")); typ != want {
					t.Errorf("type = %q, want %q", typ, want)
				}
				var series int
				if n := e.metric(&series, "wejourney_events_total", "type", "other"); n != 1 {
					t.Errorf(`wejourney_events_total{type="other"} = %v, want 1`, n)
				}
				if series != 1 {
					t.Errorf("wejourney_events_total has %d series, want 1", series)
				}
			}},
		{name: "a known event type is its own label", do: send(plainCB(followXML("o_label"))),
			wantStatus: 200, wantBody: "success", wantEvents: 1,
			check: func(t *testing.T, e *cbEnv, _ *httptest.ResponseRecorder) {
				if n := e.metric(nil, "wejourney_events_total", "type", "wechat.subscribe"); n != 1 {
					t.Errorf(`wejourney_events_total{type="wechat.subscribe"} = %v, want 1`, n)
				}
			}},
		{name: "URL check answers echostr",
			do:         func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder { return e.serve(urlCheck(cbNow, "echo-4711")) },
			wantStatus: 200, wantBody: "echo-4711", wantEvents: 0},
		{name: "URL check with an hour-old timestamp is refused",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				return e.serve(urlCheck(cbNow.Add(-time.Hour), "echo-old"))
			},
			wantStatus: 403, wantEvents: 0, wantLog: []string{"timestamp 3600s off"},
			check: func(t *testing.T, e *cbEnv, rec *httptest.ResponseRecorder) {
				if strings.Contains(rec.Body.String(), "echo-old") {
					t.Errorf("refused URL check echoed: %q", rec.Body)
				}
			}},
		{name: "URL check without echostr",
			do: func(t *testing.T, e *cbEnv) *httptest.ResponseRecorder {
				return e.serve(urlCheck(cbNow, ""))
			},
			wantStatus: 400, wantEvents: 0},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			e := newCallbackEnv(t, sc.configure)
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
			for _, secret := range []string{plainToken, safeToken, safeAESKey, "o_forged", "CDATA"} {
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

// A flood of forged callbacks logs a few lines, not one per request, and
// the next line written says how many were dropped.
func TestRefusalLogIsRateLimited(t *testing.T) {
	t.Parallel()
	e := newCallbackEnv(t, nil)
	forged := cb{appid: plainAppID, token: "wrong", xml: followXML("o")}
	for range 100 {
		if rec := e.serve(forged.post(t)); rec.Code != 403 {
			t.Fatalf("status %d, want 403", rec.Code)
		}
	}
	lines := strings.Count(e.logs.String(), "signature mismatch")
	if lines < 1 || lines > logBurst+2 {
		t.Errorf("100 forged callbacks logged %d lines, want 1 to %d", lines, logBurst+2)
	}
	if n := e.outcome("bad_signature"); n != 100 {
		t.Errorf("bad_signature = %v, want 100 (every refusal is counted)", n)
	}
	// Another reason has its own allowance.
	e.serve(cb{appid: plainAppID, token: plainToken, at: cbNow.Add(-time.Hour), xml: followXML("o")}.post(t))
	if !strings.Contains(e.logs.String(), "timestamp 3600s off") {
		t.Error("a replay was not logged after a flood of forgeries")
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   string
	}{
		{"ready", nil, 200, `{"ready":true}`},
		{"database down", &DependencyError{"database", errors.New("failed to connect to `user=wj database=wj`: 10.0.0.5:5432: password authentication failed")},
			503, `{"error":"not ready: database: see the server log","ready":false}`},
		{"redis down", &DependencyError{"redis", errors.New("dial tcp 10.0.0.6:6379: connect: connection refused")},
			503, `{"error":"not ready: redis: see the server log","ready":false}`},
		{"something else", errors.New("sql: database is closed"), 503, `{"error":"not ready: see the server log","ready":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newCallbackEnv(t, func(c *Config) {
				c.Ready = func(*http.Request) error { return tt.err }
			})
			rec := e.serve(httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			if tt.err != nil && !strings.Contains(e.logs.String(), tt.err.Error()) {
				t.Errorf("the log does not give the reason %q:\n%s", tt.err, e.logs)
			}
		})
	}
}

func TestEventLabel(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]string{
		"wechat.subscribe":  "wechat.subscribe",
		"form.submitted":    "form.submitted",
		"email.clicked":     "email.clicked",
		"wechat.fax":        "other",
		"WeChat.subscribe":  "other",
		"anything.the.user": "other",
		"":                  "other",
	} {
		if got := journey.EventLabel(typ); got != want {
			t.Errorf("journey.EventLabel(%q) = %q, want %q", typ, got, want)
		}
	}
}
