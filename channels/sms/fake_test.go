package sms

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fakes of Aliyun's and Tencent's SMS APIs on loopback: each recomputes
// the request's signature from the request and the secret, refuses a bad
// one as the real API does, and records what a valid request asked for.

// fakeCall is one verified SendSms request: the fields a provider sees.
type fakeCall struct {
	Phone, Sign, Template, Key string
	Params                     any // Aliyun: map from TemplateParam; Tencent: []string
	Region, AppID              string
}

// fakeAPI is a fake SMS API answering with reply.
type fakeAPI struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []fakeCall
	bad    []string // signature failures
	reply  func(w http.ResponseWriter)
}

func (f *fakeAPI) record(c fakeCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeAPI) refuse(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bad = append(f.bad, why)
}

func (f *fakeAPI) last() (fakeCall, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return fakeCall{}, slices.Clone(f.bad)
	}
	return f.calls[len(f.calls)-1], slices.Clone(f.bad)
}

func (f *fakeAPI) setReply(r func(w http.ResponseWriter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply = r
}

func (f *fakeAPI) answer(w http.ResponseWriter) {
	f.mu.Lock()
	r := f.reply
	f.mu.Unlock()
	r(w)
}

func jsonReply(status int, v any) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// newFakeAliyun serves dysmsapi's SendSms, verifying ACS3-HMAC-SHA256
// (Alibaba Cloud's V3 request signature) with the AccessKey ak/secret.
func newFakeAliyun(t *testing.T, ak, secret string) *fakeAPI {
	f := &fakeAPI{t: t, secret: secret, reply: jsonReply(200, map[string]string{"Code": "OK", "Message": "OK", "BizId": "biz-1", "RequestId": "r"})}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if why := verifyACS3(r, body, ak, secret); why != "" {
			f.refuse(why)
			jsonReply(400, map[string]string{"Code": "SignatureDoesNotMatch", "Message": why, "RequestId": "r"})(w)
			return
		}
		q := r.URL.Query()
		if r.Method != http.MethodPost || r.Header.Get("x-acs-action") != "SendSms" || r.Header.Get("x-acs-version") != "2017-05-25" {
			f.refuse(fmt.Sprintf("not SendSms 2017-05-25: %s %s %s", r.Method, r.Header.Get("x-acs-action"), r.Header.Get("x-acs-version")))
			jsonReply(400, map[string]string{"Code": "InvalidAction.NotFound", "Message": "x"})(w)
			return
		}
		var params map[string]string
		if err := json.Unmarshal([]byte(q.Get("TemplateParam")), &params); err != nil {
			f.refuse("TemplateParam is not a JSON object of strings: " + q.Get("TemplateParam"))
		}
		f.record(fakeCall{Phone: q.Get("PhoneNumbers"), Sign: q.Get("SignName"), Template: q.Get("TemplateCode"), Key: q.Get("OutId"), Params: params})
		f.answer(w)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// aliyunEscape is the percent-encoding of Alibaba Cloud's canonical query.
func aliyunEscape(s string) string {
	s = url.QueryEscape(s)
	s = strings.ReplaceAll(s, "+", "%20")
	s = strings.ReplaceAll(s, "*", "%2A")
	return strings.ReplaceAll(s, "%7E", "~")
}

// verifyACS3 recomputes an ACS3-HMAC-SHA256 Authorization header:
// canonical request = method, URI, sorted encoded query, the signed
// headers (host, content-type and every x-acs-*) lower-cased and sorted,
// their names, and the hex SHA-256 of the body; string to sign =
// algorithm + hex SHA-256 of it; signature = hex HMAC-SHA256 with the
// AccessKey secret. It returns why the request is not signed, or "".
func verifyACS3(r *http.Request, body []byte, ak, secret string) string {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "ACS3-HMAC-SHA256 ")
	if !ok {
		return "Authorization is not ACS3-HMAC-SHA256: " + auth
	}
	fields := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		fields[k] = v
	}
	if fields["Credential"] != ak {
		return "Credential is not the AccessKey id"
	}
	payload := sha256hex(body)
	if r.Header.Get("x-acs-content-sha256") != payload {
		return "x-acs-content-sha256 is not the body's hash"
	}
	if d, err := time.Parse("2006-01-02T15:04:05Z", r.Header.Get("x-acs-date")); err != nil || time.Since(d).Abs() > 15*time.Minute {
		return "x-acs-date missing or stale"
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	for _, must := range []string{"host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce", "x-acs-version"} {
		if !slices.Contains(signed, must) {
			return "header not signed: " + must
		}
	}
	var headers strings.Builder
	for _, h := range signed {
		v := r.Header.Get(h)
		if h == "host" {
			v = r.Host
		}
		headers.WriteString(h + ":" + strings.TrimSpace(v) + "\n")
	}
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var query []string
	for _, k := range keys {
		query = append(query, k+"="+aliyunEscape(q.Get(k)))
	}
	canonical := strings.Join([]string{r.Method, "/", strings.Join(query, "&"), headers.String(), strings.Join(signed, ";"), payload}, "\n")
	toSign := "ACS3-HMAC-SHA256\n" + sha256hex([]byte(canonical))
	want := hex.EncodeToString(hmacSHA256([]byte(secret), toSign))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return "signature does not match"
	}
	return ""
}

// newFakeTencent serves Tencent Cloud SMS SendSms (2021-01-11),
// verifying TC3-HMAC-SHA256 with secretID/secretKey.
func newFakeTencent(t *testing.T, secretID, secretKey string) *fakeAPI {
	f := &fakeAPI{t: t, secret: secretKey}
	f.reply = tencentStatus("Ok", "send success")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if why := verifyTC3(r, body, secretID, secretKey); why != "" {
			f.refuse(why)
			jsonReply(200, map[string]any{"Response": map[string]any{"Error": map[string]string{"Code": "AuthFailure.SignatureFailure", "Message": why}, "RequestId": "r"}})(w)
			return
		}
		if r.Header.Get("X-TC-Action") != "SendSms" || r.Header.Get("X-TC-Version") != "2021-01-11" {
			f.refuse("not SendSms 2021-01-11")
		}
		var in struct {
			PhoneNumberSet                                    []string
			SmsSdkAppId, SignName, TemplateId, SessionContext string
			TemplateParamSet                                  []string
		}
		if err := json.Unmarshal(body, &in); err != nil || len(in.PhoneNumberSet) != 1 {
			f.refuse("body: " + string(body))
		}
		phone := ""
		if len(in.PhoneNumberSet) > 0 {
			phone = in.PhoneNumberSet[0]
		}
		f.record(fakeCall{Phone: phone, Sign: in.SignName, Template: in.TemplateId, Key: in.SessionContext,
			Params: in.TemplateParamSet, Region: r.Header.Get("X-TC-Region"), AppID: in.SmsSdkAppId})
		f.answer(w)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// tencentStatus answers one SendStatus with code.
func tencentStatus(code, msg string) func(w http.ResponseWriter) {
	return jsonReply(200, map[string]any{"Response": map[string]any{
		"SendStatusSet": []map[string]any{{"SerialNo": "serial-1", "PhoneNumber": "+8613800000000", "Fee": 1,
			"SessionContext": "", "Code": code, "Message": msg, "IsoCode": "CN"}},
		"RequestId": "r"}})
}

// tencentError answers a request-level error.
func tencentError(code string) func(w http.ResponseWriter) {
	return jsonReply(200, map[string]any{"Response": map[string]any{"Error": map[string]string{"Code": code, "Message": code}, "RequestId": "r"}})
}

// verifyTC3 recomputes Tencent Cloud's TC3-HMAC-SHA256 Authorization:
// canonical request "POST\n/\n\ncontent-type:…\nhost:…\n\ncontent-type;host\n"
// + hex SHA-256 of the body; string to sign = algorithm, timestamp,
// credential scope (date/sms/tc3_request), hex SHA-256 of the canonical
// request; key = HMAC chain "TC3"+secret → date → service → "tc3_request".
func verifyTC3(r *http.Request, body []byte, secretID, secretKey string) string {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "TC3-HMAC-SHA256 ")
	if !ok {
		return "Authorization is not TC3-HMAC-SHA256: " + auth
	}
	fields := map[string]string{}
	for _, kv := range strings.Split(rest, ", ") {
		k, v, _ := strings.Cut(kv, "=")
		fields[k] = v
	}
	ts := r.Header.Get("X-TC-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return "X-TC-Timestamp missing or stale"
	}
	date := time.Unix(sec, 0).UTC().Format("2006-01-02")
	scope := date + "/sms/tc3_request"
	if fields["Credential"] != secretID+"/"+scope {
		return "Credential is not " + secretID + "/" + scope + ": " + fields["Credential"]
	}
	if fields["SignedHeaders"] != "content-type;host" {
		return "SignedHeaders: " + fields["SignedHeaders"]
	}
	canonical := fmt.Sprintf("%s\n/\n\ncontent-type:%s\nhost:%s\n\ncontent-type;host\n%s", r.Method, r.Header.Get("Content-Type"), r.Host, sha256hex(body))
	toSign := fmt.Sprintf("TC3-HMAC-SHA256\n%s\n%s\n%s", ts, scope, sha256hex([]byte(canonical)))
	k := hmacSHA256([]byte("TC3"+secretKey), date)
	k = hmacSHA256(k, "sms")
	k = hmacSHA256(k, "tc3_request")
	want := hex.EncodeToString(hmacSHA256(k, toSign))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return "signature does not match"
	}
	return ""
}

func jsonDecode(b []byte, v any) { json.Unmarshal(b, v) }
