package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/model"
)

const (
	testMiniAppID  = "wxmini0000000001"
	testMiniSecret = "mini-secret-5b1e"
)

// staticAccounts are WeChat accounts by appid.
type staticAccounts map[string]wechat.Account

func (s staticAccounts) Account(_ context.Context, appid string) (wechat.Account, error) {
	a, ok := s[appid]
	if !ok {
		return wechat.Account{}, fmt.Errorf("%w: %s", wechat.ErrUnknownAccount, appid)
	}
	return a, nil
}

// TestCode2Session: the real code2session, against the fake WeChat API:
// codes become openids, and WeChat's refusals become the handler's errors.
func TestCode2Session(t *testing.T) {
	t.Parallel()
	fake := fakewx.New(fakewx.Config{Secrets: map[string]string{testMiniAppID: testMiniSecret}})
	t.Cleanup(fake.Close)
	fake.AddLoginCode(testMiniAppID, "c-union", "o_mp_1", "u_1")
	fake.AddLoginCode(testMiniAppID, "c-plain", "o_mp_2", "")
	fake.AddLoginCode("wxanother", "c-other", "o_mp_3", "")
	sender := func(secret string) miniProgramSessions {
		wx := wechat.NewSender(wechat.Config{APIBase: fake.URL, Logger: slog.New(slog.DiscardHandler),
			Accounts: staticAccounts{testMiniAppID: {AppID: testMiniAppID, AppSecret: secret}}})
		return miniProgramSessions{wx: wx, appid: testMiniAppID}
	}
	good := sender(testMiniSecret)
	ctx := context.Background()
	for _, tc := range []struct {
		name            string
		mp              miniProgramSessions
		code            string
		loginErr        int
		openid, unionid string
		wantErr         error // nil: success; errUnclassified: another error
	}{
		{"a code with a unionid", good, "c-union", 0, "o_mp_1", "u_1", nil},
		{"a code without", good, "c-plain", 0, "o_mp_2", "", nil},
		{"a used code", good, "c-union", 0, "", "", handler.ErrLoginCodeRefused},
		{"an unknown code", good, "c-nope", 0, "", "", handler.ErrLoginCodeRefused},
		{"another mini-program's code", good, "c-other", 0, "", "", handler.ErrLoginCodeRefused},
		{"WeChat's rate limit", good, "c-x", 45011, "", "", handler.ErrLoginRateLimited},
		{"WeChat busy", good, "c-x", -1, "", "", errUnclassified},
		{"a wrong AppSecret", sender("not-the-secret"), "c-x", 0, "", "", errUnclassified},
	} {
		fake.SetLoginError(tc.loginErr)
		openid, unionid, err := tc.mp.Code2Session(ctx, tc.code)
		switch {
		case tc.wantErr == nil && (err != nil || openid != tc.openid || unionid != tc.unionid):
			t.Errorf("%s: %q, %q, %v; want %q, %q", tc.name, openid, unionid, err, tc.openid, tc.unionid)
		case tc.wantErr == errUnclassified && (err == nil || errors.Is(err, handler.ErrLoginCodeRefused) || errors.Is(err, handler.ErrLoginRateLimited)):
			t.Errorf("%s: %v; want an error that blames WeChat, not the code", tc.name, err)
		case tc.wantErr != nil && tc.wantErr != errUnclassified && !errors.Is(err, tc.wantErr):
			t.Errorf("%s: %v; want %v", tc.name, err, tc.wantErr)
		}
		if err != nil && (strings.Contains(err.Error(), testMiniSecret) || strings.Contains(err.Error(), "not-the-secret")) {
			t.Errorf("%s: the error shows the AppSecret: %v", tc.name, err)
		}
	}
	fake.SetLoginError(0)
	fake.Close()
	if _, _, err := good.Code2Session(ctx, "c-plain"); err == nil || errors.Is(err, handler.ErrLoginCodeRefused) {
		t.Errorf("WeChat unreachable: %v; want an error that is not the code's", err)
	}
}

// errUnclassified marks a case whose error is neither of the handler's.
var errUnclassified = errors.New("unclassified")

// TestMiniProgramEndToEnd: a configured wejourney exchanges a wx.login code
// through the fake WeChat API, and the mini-program's events reach a member
// that has its openid and unionid.
func TestMiniProgramEndToEnd(t *testing.T) {
	parallel(t)
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	fake.AddLoginCode(testMiniAppID, "login-1", "o_mp_e2e", "u_e2e")
	cfg := testConfig(t, fake, nil)
	cfg.MiniProgramAppID, cfg.MiniProgramAppSecret = testMiniAppID, testMiniSecret
	h := startHarness(t, cfg, fake)
	app := h.app
	status, ans := h.postJSON("/api/v1/miniprogram/session", `{"code":"login-1"}`, "")
	tok, _ := ans["token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("session: %d %v", status, ans)
	}
	if status, ans := h.postJSON("/api/v1/miniprogram/session", `{"code":"login-1"}`, ""); status != http.StatusBadRequest {
		t.Errorf("the same code again: %d %v; want 400", status, ans)
	}
	status, ans = h.postJSON("/api/v1/miniprogram/events", `{"events":[{"type":"miniprogram.opened","props":{"page":"pages/index/index"}},`+
		`{"type":"miniprogram.closed","props":{"page":"pages/index/index","duration_s":3}}]}`, tok)
	if status != http.StatusAccepted || ans["accepted"] != float64(2) {
		t.Fatalf("events: %d %v", status, ans)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var m model.Member
		err := app.DB.Where("mp_open_id = ?", "o_mp_e2e").Take(&m).Error
		if err == nil && m.MPAppID == testMiniAppID && m.UnionID == "u_e2e" && m.LastInteractionAt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no member with mp openid o_mp_e2e, unionid u_e2e and an interaction: %+v, %v", m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var acct model.Account
	if err := app.DB.Where("app_id = ?", testMiniAppID).Take(&acct).Error; err != nil || acct.Kind != model.AccountMiniProgram || strings.Contains(acct.AppSecret, testMiniSecret) {
		t.Errorf("mini-program account %+v, %v; want kind miniprogram with its secret sealed", acct, err)
	}
}
