package main

import (
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/channels/wecom"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/model"
)

// consoleSettings is what the console's accounts page shows of cfg (never
// a secret) and the checkers of accounts' credentials: the Official
// Account API client for Official Accounts and mini-programs, the WeCom
// client for WeCom apps.
func consoleSettings(cfg config.Config, wx *wechat.Sender, wc *wecom.Client) handler.ConsoleSettings {
	s := handler.ConsoleSettings{PublicURL: cfg.PublicURL, SMSProvider: cfg.SMSProvider, SMSSignName: cfg.SMSSignName,
		EmailProvider: "log", EmailFrom: cfg.EmailFrom, QuietHours: cfg.QuietHours, FrequencyCaps: cfg.FrequencyCaps,
		Checkers: map[string]handler.CredentialChecker{}}
	if cfg.SMTPURL != "" {
		s.EmailProvider = "smtp"
	}
	if wx != nil {
		s.Checkers[model.AccountWeChatOA] = wx
		s.Checkers[model.AccountMiniProgram] = wx
	}
	if wc != nil {
		s.Checkers[model.AccountWeCom] = wc
	}
	return s
}
