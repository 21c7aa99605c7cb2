package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/wejourney/wejourney/internal/redact"
)

// CheckCredentials asks WeChat's token API (stable_token, without forcing
// a refresh, so the token in use stays valid) for an access token of the
// Official Account or mini-program appid with its AppSecret, past any
// cached token: nil means the AppID and AppSecret are right and this
// server may call the API. A refusal is Classify's *channels.Error
// (40013 invalid AppID, 40125 invalid AppSecret, 40164 an IP not on the
// account's whitelist); an account without an AppSecret is ErrSandbox.
// Errors never hold the secret.
func (s *Sender) CheckCredentials(ctx context.Context, appid string) error {
	acct, err := s.accounts.Account(ctx, appid)
	if err != nil {
		return fmt.Errorf("wechat: account %q: %w", appid, err)
	}
	if acct.AppSecret == "" {
		return fmt.Errorf("%w: %s", ErrSandbox, appid)
	}
	raw, err := s.postJSON(ctx, stableTokenPath, map[string]any{
		"grant_type": "client_credential", "appid": appid, "secret": acct.AppSecret, "force_refresh": false,
	})
	if err != nil {
		return fmt.Errorf("wechat: access token: %w", redact.Error(err))
	}
	var ans tokenAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		return fmt.Errorf("wechat: stable_token answer %s: %w", redact.String(fmt.Sprintf("%.200q", raw)), err)
	}
	if ans.ErrCode != 0 {
		return fmt.Errorf("wechat: access token: %w", Classify(int(ans.ErrCode), ans.ErrMsg))
	}
	if ans.AccessToken == "" {
		return errors.New("wechat: stable_token answer has no access_token")
	}
	return nil
}
