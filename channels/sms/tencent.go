package sms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	tcsms "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/sms/v20210111"

	"github.com/wejourney/wejourney/channels"
)

// Tencent defaults.
const (
	TencentDefaultEndpoint = "sms.tencentcloudapi.com"
	TencentDefaultRegion   = "ap-guangzhou"
)

// tencent sends through Tencent Cloud SMS (SendSms, API 2021-01-11),
// signed TC3-HMAC-SHA256 by the SDK.
type tencent struct {
	client *tcsms.Client
	appID  string
	sign   string
}

func newTencent(cfg Config) (*tencent, error) {
	var missing []string
	for _, f := range []struct{ env, v string }{
		{"WEJOURNEY_SMS_TENCENT_SECRET_ID", cfg.TencentSecretID},
		{"WEJOURNEY_SMS_TENCENT_SECRET_KEY", cfg.TencentSecretKey},
		{"WEJOURNEY_SMS_TENCENT_SDK_APP_ID", cfg.TencentSDKAppID},
		{"WEJOURNEY_SMS_SIGN_NAME", cfg.SignName},
	} {
		if f.v == "" {
			missing = append(missing, f.env)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: required with WEJOURNEY_SMS_PROVIDER=tencent", strings.Join(missing, ", "))
	}
	protocol, host, err := endpoint(cfg.TencentEndpoint, TencentDefaultEndpoint)
	if err != nil {
		return nil, fmt.Errorf("WEJOURNEY_SMS_TENCENT_ENDPOINT: %w", err)
	}
	region := cfg.TencentRegion
	if region == "" {
		region = TencentDefaultRegion
	}
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Endpoint = host
	cpf.HttpProfile.Scheme = strings.ToUpper(protocol)
	cpf.HttpProfile.ReqMethod = "POST"
	cpf.HttpProfile.ReqTimeout = max(1, int(cfg.Timeout/time.Second))
	cpf.NetworkFailureMaxRetries = 0 // the engine retries
	cpf.RateLimitExceededMaxRetries = 0
	c, err := tcsms.NewClient(common.NewCredential(cfg.TencentSecretID, cfg.TencentSecretKey), region, cpf)
	if err != nil {
		return nil, fmt.Errorf("tencent client: %w", err)
	}
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		c.WithHttpTransport(cfg.HTTPClient.Transport)
	}
	return &tencent{client: c, appID: cfg.TencentSDKAppID, sign: cfg.SignName}, nil
}

func (*tencent) name() string { return Tencent }

// resend: Tencent echoes SessionContext but does not drop a repeat.
func (*tencent) resend() bool             { return false }
func (*tencent) idempotencyField() string { return "SessionContext" }

// TemplateParams orders SMS params for Tencent's positional
// TemplateParamSet ({1}, {2}, … in the template): keys that are all
// numbers ("1", "2", … "10") in numeric order, otherwise sorted by key.
func TemplateParams(params map[string]string) []string {
	keys := make([]string, 0, len(params))
	numeric := true
	for k := range params {
		keys = append(keys, k)
		if _, err := strconv.Atoi(k); err != nil {
			numeric = false
		}
	}
	if numeric {
		slices.SortFunc(keys, func(a, b string) int {
			x, _ := strconv.Atoi(a)
			y, _ := strconv.Atoi(b)
			return x - y
		})
	} else {
		slices.Sort(keys)
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = params[k]
	}
	return out
}

// send calls SendSms for one number and classifies its SendStatus.
func (t *tencent) send(ctx context.Context, phone string, msg channels.Message) (channels.Result, error) {
	req := tcsms.NewSendSmsRequest()
	req.PhoneNumberSet = []*string{common.StringPtr(phone)}
	req.SmsSdkAppId = common.StringPtr(t.appID)
	req.SignName = common.StringPtr(t.sign)
	req.TemplateId = common.StringPtr(msg.Template)
	req.TemplateParamSet = common.StringPtrs(TemplateParams(msg.Data))
	if msg.IdempotencyKey != "" {
		req.SessionContext = common.StringPtr(msg.IdempotencyKey)
	}
	resp, err := t.client.SendSmsWithContext(ctx, req)
	if err != nil {
		var sdk *tcerr.TencentCloudSDKError
		if errors.As(err, &sdk) {
			if sdk.Code == "ClientError.NetworkError" {
				if isTimeout(err) || ctx.Err() != nil {
					return channels.Result{}, fmt.Errorf("no answer: %s: %w", sdk.Message, errTimeout)
				}
				return channels.Result{}, fmt.Errorf("no answer: %s", sdk.Message)
			}
			return channels.Result{}, tencentCode(sdk.Code, sdk.Message)
		}
		return channels.Result{}, fmt.Errorf("no answer: %w", err)
	}
	if resp.Response == nil || len(resp.Response.SendStatusSet) == 0 || resp.Response.SendStatusSet[0] == nil {
		return channels.Result{}, &channels.Error{Msg: "SendSms answered without a SendStatus"}
	}
	st := resp.Response.SendStatusSet[0]
	code, message := deref(st.Code), deref(st.Message)
	if strings.EqualFold(code, "Ok") {
		return channels.Result{ProviderID: deref(st.SerialNo)}, nil
	}
	return channels.Result{}, tencentCode(code, message)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// tencentCode classifies a Tencent Cloud SMS error code (the SendSms
// error-code reference).
func tencentCode(code, msg string) *channels.Error {
	switch {
	case code == "LimitExceeded.PhoneNumberThirtySecondLimit":
		e := classify(channels.ErrQuota, code, msg)
		e.RetryAfter = 30 * time.Second
		return e
	case code == "LimitExceeded.PhoneNumberOneHourLimit":
		e := classify(channels.ErrQuota, code, msg)
		e.RetryAfter = 20 * time.Minute
		return e
	case strings.HasPrefix(code, "LimitExceeded.") && strings.Contains(code, "DailyLimit"),
		code == "FailedOperation.InsufficientBalanceInSmsPackage":
		e := classify(channels.ErrQuota, code, msg)
		e.RetryAfter = time.Hour
		return e
	case code == "RequestLimitExceeded", strings.HasPrefix(code, "RequestLimitExceeded."):
		e := classify(channels.ErrQuota, code, msg)
		e.RetryAfter = time.Second
		return e
	case code == "InvalidParameterValue.IncorrectPhoneNumber", code == "FailedOperation.PhoneNumberInBlacklist",
		code == "FailedOperation.PhoneNumberOnBlacklist", code == "UnsupportedOperation.UnsupportedRegion",
		code == "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
		code == "FailedOperation.PhoneNumberParseFail", code == "LimitExceeded.PhoneNumberCountLimit":
		return classify(channels.ErrUnreachable, code, msg)
	case strings.HasPrefix(code, "InternalError."), code == "InternalError",
		code == "ClientError.CircuitBreakerError", code == "ResourceUnavailable", code == "FailedOperation.FailResolvePacket":
		return classify(nil, code, msg)
	}
	// FailedOperation.TemplateIncorrectOrUnapproved,
	// FailedOperation.SignatureIncorrectOrUnapproved, AuthFailure.*,
	// InvalidParameter*, UnauthorizedOperation.*, … : the configuration is
	// wrong; retrying cannot help.
	return classify(channels.ErrPermanent, code, msg)
}
