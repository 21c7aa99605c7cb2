package main

import (
	"fmt"
	"io"
	"time"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/sms"
	"github.com/wejourney/wejourney/config"
)

// addSMS registers the sender of the `sms` channel: the provider of
// WEJOURNEY_SMS_PROVIDER with its keys, its per-phone and call rates spent
// from d.limiter (nil for `journeys validate`: it only asks which channels
// are served).
func addSMS(reg *channels.Registry, d senderDeps) error {
	cfg := d.cfg
	phone, err := cfg.SMSPhoneRates()
	if err != nil {
		return fmt.Errorf("WEJOURNEY_SMS_PHONE_RATE: %w", err)
	}
	call, err := cfg.SMSProviderRate()
	if err != nil {
		return fmt.Errorf("WEJOURNEY_SMS_RATE: %w", err)
	}
	phoneRates := append(make([]channels.Rate, 0, len(phone)), phone...) // empty, not nil: "0" is no limit
	callRate := call
	if callRate == (channels.Rate{}) {
		callRate = channels.Rate{N: -1} // "0": no limit
	}
	s, err := sms.New(sms.Config{
		Provider:              cfg.SMSProvider,
		SignName:              cfg.SMSSignName,
		AliyunAccessKeyID:     cfg.SMSAliyunAccessKeyID,
		AliyunAccessKeySecret: cfg.SMSAliyunAccessKeySecret,
		AliyunEndpoint:        cfg.SMSAliyunEndpoint,
		TencentSecretID:       cfg.SMSTencentSecretID,
		TencentSecretKey:      cfg.SMSTencentSecretKey,
		TencentSDKAppID:       cfg.SMSTencentSDKAppID,
		TencentRegion:         cfg.SMSTencentRegion,
		TencentEndpoint:       cfg.SMSTencentEndpoint,
		WebhookURL:            cfg.SMSWebhookURL,
		WebhookSecret:         cfg.SMSWebhookSecret,
		PhoneRates:            phoneRates,
		ProviderRate:          callRate,
		Limiter:               d.limiter,
		Timeout:               10 * time.Second,
		Logger:                d.log,
	})
	if err != nil {
		return err
	}
	reg.Add(s)
	return nil
}

// printSMSBanner prints the SMS provider in the startup banner; the log
// provider is labelled as development. base is the server's URL.
func printSMSBanner(w io.Writer, cfg config.Config, base string) {
	switch cfg.SMSProvider {
	case sms.Log, "":
		fmt.Fprintln(w, "  sms:      log provider (DEVELOPMENT): SMS are logged, NOT sent; set WEJOURNEY_SMS_PROVIDER=aliyun, tencent or webhook")
	case sms.Webhook:
		fmt.Fprintln(w, "  sms:      webhook provider (the brand's gateway, signed X-Wejourney-Signature)")
	default:
		fmt.Fprintf(w, "  sms:      %s provider, signature %q\n", cfg.SMSProvider, cfg.SMSSignName)
	}
	if cfg.SMSUplinkToken != "" {
		fmt.Fprintf(w, "  sms replies: %s/sms/aliyun/uplink?token=WEJOURNEY_SMS_UPLINK_TOKEN   %s/sms/tencent/uplink?token=…\n", base, base)
	}
}
