package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/handler"
)

// code2sessionPath is WeChat's mini-program login API.
const code2sessionPath = "/sns/jscode2session"

// secretCaller is the part of *wechat.Sender code2session uses.
type secretCaller interface {
	CallWithSecret(ctx context.Context, appid, path string, query url.Values, out any) error
}

// miniProgramSessions implements handler.MiniProgramSessions with WeChat's
// jscode2session, for the mini-program appid (an account whose AppSecret
// the caller looks up).
type miniProgramSessions struct {
	wx    secretCaller
	appid string
}

var _ handler.MiniProgramSessions = miniProgramSessions{}

// Code2Session exchanges a wx.login code for the member's openid and
// unionid. WeChat's answers about the code become handler's errors: 40029
// (invalid), 40163 (used) and 40226 (a risky user WeChat blocks) are
// handler.ErrLoginCodeRefused, 45011 handler.ErrLoginRateLimited. The
// session_key is not kept: wejourney decrypts nothing the mini-program
// sends.
func (m miniProgramSessions) Code2Session(ctx context.Context, code string) (openid, unionid string, err error) {
	var ans struct {
		OpenID  string `json:"openid"`
		UnionID string `json:"unionid"`
	}
	q := url.Values{"js_code": {code}, "grant_type": {"authorization_code"}}
	if err := m.wx.CallWithSecret(ctx, m.appid, code2sessionPath, q, &ans); err != nil {
		var ce *channels.Error
		if errors.As(err, &ce) {
			switch ce.Code {
			case 40029, 40163, 40226:
				return "", "", fmt.Errorf("code2session: %w: %w", handler.ErrLoginCodeRefused, err)
			case 45011:
				return "", "", fmt.Errorf("code2session: %w: %w", handler.ErrLoginRateLimited, err)
			}
		}
		return "", "", fmt.Errorf("code2session: %w", err)
	}
	if ans.OpenID == "" {
		return "", "", errors.New("code2session: the answer has no openid")
	}
	return ans.OpenID, ans.UnionID, nil
}
