// Package wxsim plays the WeChat platform's side of an Official Account
// message callback. It builds the signed (and, in safe mode, encrypted)
// HTTP requests that WeChat's servers send to a developer's callback URL, so
// that `wejourney simulate`, the integration tests and the `wejourney bench`
// load generator can drive a wejourney server without WeChat.
//
// # Contract
//
// Every callback is an HTTP POST to
//
//	Config.Target + "/wechat/oa/" + Config.AppID
//
// with Content-Type "text/xml" and this query string, in WeChat's order:
//
//	signature=SHA1(sort(Token, timestamp, nonce))
//	timestamp=<current unix seconds>
//	nonce=<random decimal string, fresh for every request>
//	openid=<Event.OpenID>
//
// In plaintext mode (Config.AESKey empty) the body is the callback XML
// returned by [Client.XML]. In safe mode (Config.AESKey set) the query string
// also carries
//
//	encrypt_type=aes
//	msg_signature=SHA1(sort(Token, timestamp, nonce, Encrypt))
//
// and the body is
//
//	<xml><ToUserName><![CDATA[original id]]></ToUserName><Encrypt><![CDATA[Encrypt]]></Encrypt></xml>
//
// where Encrypt is base64(AES-256-CBC(random(16) + len(xml) + xml + AppID))
// with the EncodingAESKey, as produced by silenceper's util.EncryptMsg. The
// signatures are computed with silenceper's util.Signature, so whatever
// github.com/silenceper/wechat/v2 accepts, wxsim produces, and vice versa.
//
// The query timestamp is always the wall clock at the time the request is
// built; it is independent of the XML's <CreateTime>, which is
// Event.CreateTime (or the current time when that is zero).
//
// # Determinism and retries
//
// The callback XML is a pure function of the Config and the Event once
// Event.CreateTime and (for text and template_sent) Event.MsgID are non-zero:
// re-sending the same Event reproduces a byte-identical XML payload, as
// WeChat's retries do. Use [Event.Pinned] to fix the zero fields of an event
// before sending it more than once. Nonces, query timestamps and, in safe
// mode, the random AES prefix (and so the ciphertext) are fresh for every
// request. Two events of the same member in the same second always produce
// different XML when their Event or EventKey differ, and two text messages
// with MsgID zero are given distinct generated MsgIds.
//
// A [Client] is safe for concurrent use.
package wxsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"
)

// Event kinds understood by [Client.XML] and the request builders. Kinds are
// matched case-insensitively.
const (
	// KindSubscribe is a follow (subscribe event), optionally from a
	// parametric QR code when Event.Scene is set.
	KindSubscribe = "subscribe"
	// KindScan is a parametric QR code scan by a member who already follows
	// the account (SCAN event).
	KindScan = "scan"
	// KindClick is a click on a "click" menu button (CLICK event).
	KindClick = "click"
	// KindView is a click on a "view" (link) menu button (VIEW event).
	KindView = "view"
	// KindText is a text message sent by the member.
	KindText = "text"
	// KindUnsubscribe is an unfollow (unsubscribe event).
	KindUnsubscribe = "unsubscribe"
	// KindLocation is an automatic location report (LOCATION event).
	KindLocation = "location"
	// KindTemplateSent is the delivery report of a template message
	// (TEMPLATESENDJOBFINISH event).
	KindTemplateSent = "template_sent"
)

var kinds = []string{
	KindSubscribe, KindScan, KindClick, KindView,
	KindText, KindUnsubscribe, KindLocation, KindTemplateSent,
}

// Kinds returns the supported event kinds, in a stable order, for the CLI's
// help. The caller may modify the returned slice.
func Kinds() []string { return slices.Clone(kinds) }

// CallbackPath is the path prefix of the wejourney callback endpoint; the
// account's AppID follows it.
const CallbackPath = "/wechat/oa/"

// ContentType is the Content-Type of every callback POST.
const ContentType = "text/xml"

// userAgent is what WeChat's callback servers send.
const userAgent = "Mozilla/4.0"

// maxResponse bounds how much of a response body Send and VerifyURL read.
const maxResponse = 1 << 20

// Config names the account and the server to aim at.
type Config struct {
	// Target is the base URL of the wejourney server, e.g.
	// "http://127.0.0.1:8080". Requests go to
	// Target + "/wechat/oa/" + AppID. Required; must be http or https.
	Target string
	// AppID is the account's AppID. Required. In safe mode it is also the
	// AppID embedded in (and checked after decrypting) every message.
	AppID string
	// OriginalID is the account's original id ("gh_" + 12 hex digits), sent
	// as <ToUserName>. Empty: "gh_" followed by the first 12 hex digits of
	// SHA-256(AppID), which is stable for an AppID.
	OriginalID string
	// Token is the callback token configured on the account. Required.
	Token string
	// AESKey is the EncodingAESKey (43 characters). Non-empty selects safe
	// mode (encrypt_type=aes); empty selects plaintext mode.
	AESKey string
	// HTTPClient sends Send's and VerifyURL's requests. Nil: a client with a
	// 10 second timeout.
	HTTPClient *http.Client
}

// Client builds and sends simulated WeChat callback requests for one
// account. Create it with [New]; it is safe for concurrent use.
type Client struct {
	appID    string
	token    string
	aesKey   string
	toUser   string
	endpoint string
	http     *http.Client
}

// New validates cfg and returns a Client for it. It rejects an empty AppID
// or Token, a Target that is not an absolute http(s) URL without query or
// fragment, and an AESKey that is not a 43-character EncodingAESKey.
func New(cfg Config) (*Client, error) {
	if cfg.AppID == "" {
		return nil, errors.New("wxsim: Config.AppID is empty")
	}
	if cfg.Token == "" {
		return nil, errors.New("wxsim: Config.Token is empty")
	}
	u, err := url.Parse(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("wxsim: Config.Target: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("wxsim: Config.Target %q is not an http(s) base URL", cfg.Target)
	}
	if cfg.AESKey != "" {
		if len(cfg.AESKey) != 43 {
			return nil, fmt.Errorf("wxsim: Config.AESKey must be 43 characters, got %d", len(cfg.AESKey))
		}
		// Let silenceper decide whether it can use the key.
		if _, err := util.EncryptMsg(make([]byte, 16), []byte("<xml></xml>"), cfg.AppID, cfg.AESKey); err != nil {
			return nil, fmt.Errorf("wxsim: Config.AESKey is not a valid EncodingAESKey: %v", err)
		}
	}
	c := &Client{
		appID:    cfg.AppID,
		token:    cfg.Token,
		aesKey:   cfg.AESKey,
		toUser:   cfg.OriginalID,
		endpoint: strings.TrimRight(cfg.Target, "/") + CallbackPath + url.PathEscape(cfg.AppID),
		http:     cfg.HTTPClient,
	}
	if c.toUser == "" {
		sum := sha256.Sum256([]byte(cfg.AppID))
		c.toUser = "gh_" + hex.EncodeToString(sum[:6])
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 10 * time.Second}
	}
	return c, nil
}

// SafeMode reports whether the client encrypts messages (Config.AESKey set).
func (c *Client) SafeMode() bool { return c.aesKey != "" }

// OriginalID returns the <ToUserName> the client sends: Config.OriginalID or
// the id derived from the AppID.
func (c *Client) OriginalID() string { return c.toUser }

// Endpoint returns the callback URL without query string:
// Target + "/wechat/oa/" + AppID.
func (c *Client) Endpoint() string { return c.endpoint }

// Event describes one callback. Which fields matter depends on Kind.
type Event struct {
	// Kind is one of [Kinds]: "subscribe", "scan", "click", "view", "text",
	// "unsubscribe", "location", "template_sent". Required.
	Kind string
	// OpenID is the member's openid, sent as <FromUserName> and as the
	// openid query parameter. Required.
	OpenID string
	// Scene is the QR code scene. subscribe: when non-empty the EventKey is
	// "qrscene_"+Scene and a <Ticket> is sent; scan: the EventKey (required).
	Scene string
	// Ticket is the QR code ticket sent with a scene. Empty:
	// [Client.QRTicket](Scene).
	Ticket string
	// Key is the EventKey of a click (required for click).
	Key string
	// URL is the EventKey of a view, the link opened (required for view).
	URL string
	// Content is the text of a text message (required for text).
	Content string
	// MsgID is the MsgId of a text message, or the MsgID of the template
	// message a template_sent event reports on. 0: a process-wide unique id
	// is generated for each build (see [Event.Pinned]).
	MsgID int64
	// Latitude, Longitude and Precision are the location event's
	// coordinates, sent with six decimals.
	Latitude, Longitude, Precision float64
	// Status is the template_sent delivery status: "success",
	// "failed:user block", "failed:system failed". Empty: "success".
	Status string
	// CreateTime is the <CreateTime>, unix seconds. 0: the current time.
	CreateTime int64
}

// Validate reports whether ev can be turned into a callback: a known Kind,
// an OpenID, and the field its kind requires (scan: Scene; click: Key; view:
// URL; text: Content).
func (ev Event) Validate() error {
	k, ok := kindOf(ev.Kind)
	if !ok {
		return fmt.Errorf("wxsim: unknown event kind %q (supported: %s)", ev.Kind, strings.Join(kinds, ", "))
	}
	if ev.OpenID == "" {
		return fmt.Errorf("wxsim: %s event without OpenID", k)
	}
	if ev.CreateTime < 0 {
		return fmt.Errorf("wxsim: negative CreateTime %d", ev.CreateTime)
	}
	if ev.MsgID < 0 {
		return fmt.Errorf("wxsim: negative MsgID %d", ev.MsgID)
	}
	var missing string
	switch k {
	case KindScan:
		if ev.Scene == "" {
			missing = "Scene"
		}
	case KindClick:
		if ev.Key == "" {
			missing = "Key"
		}
	case KindView:
		if ev.URL == "" {
			missing = "URL"
		}
	case KindText:
		if ev.Content == "" {
			missing = "Content"
		}
	}
	if missing != "" {
		return fmt.Errorf("wxsim: %s event without %s", k, missing)
	}
	return nil
}

// Pinned returns ev with its time-dependent zero fields filled in: CreateTime
// set to the current time and, for text and template_sent, MsgID set to a
// fresh unique id. Sending a pinned event several times reproduces WeChat's
// retries: every request carries a byte-identical XML payload.
func (ev Event) Pinned() Event {
	if ev.CreateTime == 0 {
		ev.CreateTime = time.Now().Unix()
	}
	if ev.MsgID == 0 {
		if k, _ := kindOf(ev.Kind); k == KindText || k == KindTemplateSent {
			ev.MsgID = msgSeq.Add(1)
		}
	}
	return ev
}

// msgSeq generates MsgIds: a random start in [2^54, 2^54+2^52), so that
// concurrently running simulators are unlikely to collide, then a counter.
var msgSeq = func() *atomic.Int64 {
	s := new(atomic.Int64)
	s.Store(1<<54 | int64(rand.Uint64()>>12))
	return s
}()

func kindOf(kind string) (string, bool) {
	k := strings.ToLower(kind)
	return k, slices.Contains(kinds, k)
}

// QRTicket returns the ticket sent with a subscribe or scan event for scene
// when Event.Ticket is empty: a stable, base64 string derived from the AppID
// and the scene, standing in for the ticket of the QR code that encodes it.
func (c *Client) QRTicket(scene string) string {
	sum := sha256.Sum256([]byte("wxsim-qr\x00" + c.appID + "\x00" + scene))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// XML returns the plaintext callback XML WeChat would send for ev, or nil
// when ev is invalid (see [Event.Validate]). Zero CreateTime and MsgID are
// filled in as by [Event.Pinned], so only a pinned event gives the same
// bytes on every call.
func (c *Client) XML(ev Event) []byte {
	if ev.Validate() != nil {
		return nil
	}
	return c.appendXML(nil, ev.Pinned())
}

// appendXML appends the callback XML of a valid, pinned event, with elements
// in the order of WeChat's documentation.
func (c *Client) appendXML(b []byte, ev Event) []byte {
	k, _ := kindOf(ev.Kind)
	b = append(b, "<xml>"...)
	b = appendCDATA(b, "ToUserName", c.toUser)
	b = appendCDATA(b, "FromUserName", ev.OpenID)
	b = appendInt(b, "CreateTime", ev.CreateTime)
	if k == KindText {
		b = appendCDATA(b, "MsgType", string(message.MsgTypeText))
		b = appendCDATA(b, "Content", ev.Content)
		b = appendInt(b, "MsgId", ev.MsgID)
		return append(b, "</xml>"...)
	}
	b = appendCDATA(b, "MsgType", string(message.MsgTypeEvent))
	switch k {
	case KindSubscribe:
		b = appendCDATA(b, "Event", string(message.EventSubscribe))
		if ev.Scene == "" {
			b = appendCDATA(b, "EventKey", "")
		} else {
			b = appendCDATA(b, "EventKey", "qrscene_"+ev.Scene)
			b = appendCDATA(b, "Ticket", c.ticket(ev))
		}
	case KindScan:
		b = appendCDATA(b, "Event", string(message.EventScan))
		b = appendCDATA(b, "EventKey", ev.Scene)
		b = appendCDATA(b, "Ticket", c.ticket(ev))
	case KindClick:
		b = appendCDATA(b, "Event", string(message.EventClick))
		b = appendCDATA(b, "EventKey", ev.Key)
	case KindView:
		b = appendCDATA(b, "Event", string(message.EventView))
		b = appendCDATA(b, "EventKey", ev.URL)
	case KindUnsubscribe:
		b = appendCDATA(b, "Event", string(message.EventUnsubscribe))
		b = appendCDATA(b, "EventKey", "")
	case KindLocation:
		b = appendCDATA(b, "Event", string(message.EventLocation))
		b = appendFloat(b, "Latitude", ev.Latitude)
		b = appendFloat(b, "Longitude", ev.Longitude)
		b = appendFloat(b, "Precision", ev.Precision)
	case KindTemplateSent:
		status := ev.Status
		if status == "" {
			status = "success"
		}
		b = appendCDATA(b, "Event", string(message.EventTemplateSendJobFinish))
		b = appendInt(b, "MsgID", ev.MsgID)
		b = appendCDATA(b, "Status", status)
	}
	return append(b, "</xml>"...)
}

func (c *Client) ticket(ev Event) string {
	if ev.Ticket != "" {
		return ev.Ticket
	}
	return c.QRTicket(ev.Scene)
}

// appendCDATA appends <name><![CDATA[v]]></name>, splitting any "]]>" in v
// across two CDATA sections.
func appendCDATA(b []byte, name, v string) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, "><![CDATA["...)
	for {
		i := strings.Index(v, "]]>")
		if i < 0 {
			break
		}
		b = append(b, v[:i+2]...)
		b = append(b, "]]><![CDATA["...)
		v = v[i+2:]
	}
	b = append(b, v...)
	b = append(b, "]]></"...)
	b = append(b, name...)
	return append(b, '>')
}

func appendInt(b []byte, name string, v int64) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	b = strconv.AppendInt(b, v, 10)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

func appendFloat(b []byte, name string, v float64) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	b = strconv.AppendFloat(b, v, 'f', 6, 64)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// Prepared is a fully built callback: the URL with its signed query string
// and the (in safe mode, encrypted) body. The load generator prepares
// requests ahead of time and sends each as often as it likes.
//
// Its timestamp and nonce are fixed when it is prepared, and sending it again
// is a retry of the same message: a receiver that deduplicates messages or
// bounds the age of the timestamp will treat repeated sends accordingly.
type Prepared struct {
	// URL is the callback URL including the query string.
	URL string
	// Body is the POST body, sent with Content-Type [ContentType].
	Body []byte
}

// NewRequest returns a POST of p with WeChat's headers (Content-Type
// text/xml). Each call returns an independent request over the shared body.
func (p Prepared) NewRequest(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(p.Body))
	if err != nil {
		return nil, fmt.Errorf("wxsim: %w", err)
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Pragma", "no-cache")
	return req, nil
}

// Prepared builds the signed (and in safe mode encrypted) callback for ev
// once, for sending many times. Zero CreateTime and MsgID are filled in as by
// [Event.Pinned].
func (c *Client) Prepared(ev Event) (Prepared, error) {
	return c.prepare(ev, false)
}

// Request returns the signed POST WeChat would send for ev (encrypted in
// safe mode), with Content-Type text/xml.
func (c *Client) Request(ctx context.Context, ev Event) (*http.Request, error) {
	p, err := c.prepare(ev, false)
	if err != nil {
		return nil, err
	}
	return p.NewRequest(ctx)
}

// ForgedRequest is like [Client.Request] but signed with the wrong token:
// the signature (and, in safe mode, msg_signature) query parameter is wrong,
// while the body is still well-formed and, in safe mode, correctly
// encrypted. A correct receiver must reject it.
func (c *Client) ForgedRequest(ctx context.Context, ev Event) (*http.Request, error) {
	p, err := c.prepare(ev, true)
	if err != nil {
		return nil, err
	}
	return p.NewRequest(ctx)
}

// Send builds the request for ev, sends it with the configured HTTP client
// and returns the response status and (at most 1 MiB of the) body. A non-2xx
// status is not an error.
func (c *Client) Send(ctx context.Context, ev Event) (status int, body string, err error) {
	req, err := c.Request(ctx, ev)
	if err != nil {
		return 0, "", err
	}
	return c.do(req)
}

// VerifyURL performs the GET WeChat sends when the callback URL is saved in
// the admin console — query signature, echostr, timestamp and nonce, never
// encrypted — and returns the response status and body. A correct server
// answers 200 with echostr as the body. echostr must not be empty.
func (c *Client) VerifyURL(ctx context.Context, echostr string) (status int, body string, err error) {
	if echostr == "" {
		return 0, "", errors.New("wxsim: VerifyURL needs a non-empty echostr")
	}
	ts, nonce := timestampNow(), newNonce()
	u := c.endpoint + "?signature=" + util.Signature(c.token, ts, nonce) +
		"&echostr=" + url.QueryEscape(echostr) +
		"&timestamp=" + ts +
		"&nonce=" + nonce
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", fmt.Errorf("wxsim: %w", err)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	return c.do(req)
}

func (c *Client) do(req *http.Request) (int, string, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("wxsim: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, string(b), fmt.Errorf("wxsim: reading response: %w", err)
	}
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), nil
}

func (c *Client) prepare(ev Event, forged bool) (Prepared, error) {
	if err := ev.Validate(); err != nil {
		return Prepared{}, err
	}
	ev = ev.Pinned()
	plain := c.appendXML(make([]byte, 0, 512), ev)

	token := c.token
	if forged {
		token += "-forged"
	}
	ts, nonce := timestampNow(), newNonce()

	q := make([]byte, 0, 256)
	q = append(q, "?signature="...)
	q = append(q, util.Signature(token, ts, nonce)...)
	q = append(q, "&timestamp="...)
	q = append(q, ts...)
	q = append(q, "&nonce="...)
	q = append(q, nonce...)
	q = append(q, "&openid="...)
	q = append(q, url.QueryEscape(ev.OpenID)...)

	if c.aesKey == "" {
		return Prepared{URL: c.endpoint + string(q), Body: plain}, nil
	}
	enc, err := util.EncryptMsg(newRandom(), plain, c.appID, c.aesKey)
	if err != nil {
		return Prepared{}, fmt.Errorf("wxsim: encrypting: %w", err)
	}
	q = append(q, "&encrypt_type=aes&msg_signature="...)
	q = append(q, util.Signature(token, ts, nonce, string(enc))...)

	body := make([]byte, 0, len(enc)+96)
	body = append(body, "<xml>"...)
	body = appendCDATA(body, "ToUserName", c.toUser)
	body = appendCDATA(body, "Encrypt", string(enc))
	body = append(body, "</xml>"...)
	return Prepared{URL: c.endpoint + string(q), Body: body}, nil
}

func timestampNow() string { return strconv.FormatInt(time.Now().Unix(), 10) }

// newNonce returns a random decimal nonce like WeChat's.
func newNonce() string { return strconv.FormatUint(uint64(rand.Uint32()), 10) }

// newRandom returns the 16 random alphanumeric bytes that prefix an
// encrypted message.
func newRandom() []byte {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	r := make([]byte, 16)
	for i := range r {
		r[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return r
}
