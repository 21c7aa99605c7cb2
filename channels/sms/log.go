package sms

import (
	"context"
	"log/slog"

	"github.com/wejourney/wejourney/channels"
)

// LogNotice is what the log provider says wherever it appears: in its log
// line, and as the provider id of every delivery it "sends".
const LogNotice = "development log provider: SMS NOT sent (set WEJOURNEY_SMS_PROVIDER to aliyun, tencent or webhook to send)"

// logProvider is the development provider: it logs the message and sends
// nothing. Deliveries are recorded as sandbox.
type logProvider struct{ log *slog.Logger }

func (logProvider) name() string             { return Log }
func (logProvider) resend() bool             { return true } // nothing leaves the process
func (logProvider) idempotencyField() string { return "" }

// send logs msg and reports it sandboxed.
func (p logProvider) send(_ context.Context, phone string, msg channels.Message) (channels.Result, error) {
	p.log.Info("sms: "+LogNotice, "phone", phone, "template", msg.Template, "params", msg.Data,
		"category", msg.Category, "key", msg.IdempotencyKey)
	return channels.Result{Sandbox: true, ProviderID: "development log provider: not sent"}, nil
}
