package sms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/wejourney/wejourney/channels"
)

// AliyunDefaultEndpoint is Alibaba Cloud SMS's API host.
const AliyunDefaultEndpoint = "dysmsapi.aliyuncs.com"

// aliyun sends through Alibaba Cloud SMS (dysmsapi 2017-05-25 SendSms),
// with the generic OpenAPI client (signature ACS3-HMAC-SHA256): the
// dysmsapi SDK module is not on the module proxy.
type aliyun struct {
	client   *openapi.Client
	protocol string
	sign     string
}

// daraHTTP runs the OpenAPI client's requests on our http.Client (its
// timeout, no process-global client).
type daraHTTP struct{ c *http.Client }

// Call implements dara.HttpClient.
func (d daraHTTP) Call(req *http.Request, _ *http.Transport) (*http.Response, error) {
	return d.c.Do(req)
}

func newAliyun(cfg Config) (*aliyun, error) {
	var missing []string
	for _, f := range []struct{ env, v string }{
		{"WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_ID", cfg.AliyunAccessKeyID},
		{"WEJOURNEY_SMS_ALIYUN_ACCESS_KEY_SECRET", cfg.AliyunAccessKeySecret},
		{"WEJOURNEY_SMS_SIGN_NAME", cfg.SignName},
	} {
		if f.v == "" {
			missing = append(missing, f.env)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: required with WEJOURNEY_SMS_PROVIDER=aliyun", strings.Join(missing, ", "))
	}
	protocol, host, err := endpoint(cfg.AliyunEndpoint, AliyunDefaultEndpoint)
	if err != nil {
		return nil, fmt.Errorf("WEJOURNEY_SMS_ALIYUN_ENDPOINT: %w", err)
	}
	ms := int(cfg.Timeout / time.Millisecond)
	c, err := openapi.NewClient(&openapi.Config{
		AccessKeyId:     dara.String(cfg.AliyunAccessKeyID),
		AccessKeySecret: dara.String(cfg.AliyunAccessKeySecret),
		Endpoint:        dara.String(host),
		Protocol:        dara.String(protocol),
		ReadTimeout:     dara.Int(ms),
		ConnectTimeout:  dara.Int(ms),
		HttpClient:      daraHTTP{cfg.HTTPClient},
	})
	if err != nil {
		return nil, fmt.Errorf("aliyun client: %w", err)
	}
	return &aliyun{client: c, protocol: protocol, sign: cfg.SignName}, nil
}

// endpoint splits a configured endpoint into protocol and host: a bare
// host is https.
func endpoint(raw, def string) (protocol, host string, err error) {
	if raw == "" {
		return "https", def, nil
	}
	if !strings.Contains(raw, "://") {
		return "https", raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", fmt.Errorf("%q: want a host (%s) or an http(s) URL", raw, def)
	}
	return u.Scheme, u.Host, nil
}

func (*aliyun) name() string { return Aliyun }

// resend: Aliyun echoes OutId in receipts but does not drop a repeat.
func (*aliyun) resend() bool             { return false }
func (*aliyun) idempotencyField() string { return "OutId" }

// send calls SendSms. TemplateParam is the params as a JSON object of
// strings; OutId is the idempotency key.
func (a *aliyun) send(ctx context.Context, phone string, msg channels.Message) (channels.Result, error) {
	params := msg.Data
	if params == nil {
		params = map[string]string{}
	}
	tp, _ := json.Marshal(params) // strings only
	query := map[string]*string{
		"PhoneNumbers":  dara.String(Mainland(phone)),
		"SignName":      dara.String(a.sign),
		"TemplateCode":  dara.String(msg.Template),
		"TemplateParam": dara.String(string(tp)),
	}
	if msg.IdempotencyKey != "" {
		query["OutId"] = dara.String(msg.IdempotencyKey)
	}
	res, err := a.client.CallApiWithCtx(ctx, &openapi.Params{
		Action:      dara.String("SendSms"),
		Version:     dara.String("2017-05-25"),
		Protocol:    dara.String(a.protocol),
		Pathname:    dara.String("/"),
		Method:      dara.String("POST"),
		AuthType:    dara.String("AK"),
		Style:       dara.String("RPC"),
		ReqBodyType: dara.String("formData"),
		BodyType:    dara.String("json"),
	}, &openapi.OpenApiRequest{Query: query}, &dara.RuntimeOptions{})
	if err != nil {
		return channels.Result{}, aliyunError(err)
	}
	body, _ := res["body"].(map[string]any)
	code, _ := body["Code"].(string)
	message, _ := body["Message"].(string)
	if code == "OK" {
		id, _ := body["BizId"].(string)
		return channels.Result{ProviderID: id}, nil
	}
	if code == "" {
		return channels.Result{}, &channels.Error{Msg: "SendSms answered without a Code"}
	}
	return channels.Result{}, aliyunCode(code, message)
}

// aliyunError classifies an error of the OpenAPI client: an answer with an
// error code (4xx/5xx), or no answer.
func aliyunError(err error) error {
	var sdk *tea.SDKError
	if errors.As(err, &sdk) {
		code, msg := tea.StringValue(sdk.Code), tea.StringValue(sdk.Message)
		status := tea.IntValue(sdk.StatusCode)
		if code == "" && status == 0 {
			return aliyunTransport(err)
		}
		e := aliyunCode(code, msg)
		if e.Class == nil && status >= 400 && status < 500 && !aliyunTemporary(code) {
			e.Class = channels.ErrPermanent
		}
		if e.Code == 0 {
			e.Code = status
		}
		return e
	}
	return aliyunTransport(err)
}

// aliyunTransport is an error without Aliyun's answer: temporary, and
// ambiguous (errTimeout) when it timed out.
func aliyunTransport(err error) error {
	if isTimeout(err) {
		return fmt.Errorf("no answer: %v: %w", err, errTimeout)
	}
	return fmt.Errorf("no answer: %w", err)
}

// aliyunTemporary reports whether an error code is worth retrying.
func aliyunTemporary(code string) bool {
	switch {
	case strings.HasPrefix(code, "Throttling"), code == "ServiceUnavailable", code == "InternalError",
		code == "isp.SYSTEM_ERROR", code == "isp.GATEWAY_ERROR", code == "isp.UNKNOWN", code == "isv.DATA_NOT_EXIST":
		return true
	}
	return false
}

// aliyunCode classifies one of SendSms's error codes (DESIGN "error
// classes"; the codes of Alibaba Cloud's SMS error-code reference).
func aliyunCode(code, msg string) *channels.Error {
	switch code {
	case "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "isv.MONTH_LIMIT_CONTROL",
		"isv.BUSINESS_LIMIT_HOUR", "isv.BUSINESS_LIMIT_DAY", "BUSINESS_LIMIT_CONTROL_MINUTE", "BUSINESS_LIMIT_CONTROL_PHONE":
		// Flow control per phone number and signature (1/min, 5/hour,
		// 10/day for codes): try again after the window moves.
		e := classify(channels.ErrQuota, code, msg)
		e.RetryAfter = aliyunRetryAfter(code, msg)
		return e
	case "isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE":
		// The account's balance: held until someone pays.
		e := classify(channels.ErrQuota, code, msg)
		e.RetryAfter = time.Hour
		return e
	case "isv.MOBILE_NUMBER_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.DENY_IP_RANGE",
		"isv.NOT_SUPPORTED_COUNTRY", "isv.COUNTRY_RESTRICTED", "isv.MOBILE_COUNT_OVER_LIMIT",
		"isv.CUSTOMER_REFUSED", "isv.EXTEND_CODE_ERROR", "isv.BLACKLIST", "isv.MOBILE_IN_BLACK":
		// This number cannot get this message (format, blacklist, the
		// member unsubscribed at the carrier): take the fallback.
		return classify(channels.ErrUnreachable, code, msg)
	}
	if aliyunTemporary(code) {
		return classify(nil, code, msg)
	}
	// isv.SMS_TEMPLATE_ILLEGAL, isv.SMS_SIGNATURE_ILLEGAL,
	// isv.TEMPLATE_MISSING_PARAMETERS, isv.INVALID_PARAMETERS,
	// isv.INVALID_JSON_PARAM, isv.PARAM_LENGTH_LIMIT, isv.PRODUCT_UN_SUBSCRIPT,
	// isv.ACCOUNT_NOT_EXISTS, isv.ACCOUNT_ABNORMAL, isp.RAM_PERMISSION_DENY,
	// InvalidAccessKeyId.NotFound, SignatureDoesNotMatch, … : the
	// configuration is wrong; retrying cannot help.
	return classify(channels.ErrPermanent, code, msg)
}

// aliyunRetryAfter guesses when a flow-controlled number takes messages
// again from the limit named in the message ("触发小时级流控", "天级").
func aliyunRetryAfter(code, msg string) time.Duration {
	switch {
	case strings.Contains(msg, "天级") || strings.Contains(strings.ToLower(msg), "day") || strings.Contains(code, "DAY"):
		return 6 * time.Hour
	case strings.Contains(msg, "小时") || strings.Contains(strings.ToLower(msg), "hour") || strings.Contains(code, "HOUR"):
		return 20 * time.Minute
	}
	return time.Minute
}
