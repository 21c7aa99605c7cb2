package wecom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/wejourney/wejourney/internal/redact"
)

// CheckCredentials asks WeCom's gettoken for an access token of app
// ("corpid/agentid") with its secret, past any cached token: nil means
// the corpid and secret are right. A refusal is Classify's
// *channels.Error (40013 invalid corpid, 40001 invalid secret); an app
// without a secret is ErrSandbox. Errors never hold the secret.
func (c *Client) CheckCredentials(ctx context.Context, app string) error {
	acct, err := c.account(ctx, app)
	if err != nil {
		return err
	}
	q := url.Values{"corpid": {acct.CorpID}, "corpsecret": {acct.Secret}}
	raw, err := c.do(ctx, http.MethodGet, tokenPath+"?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("wecom: access token: %w", redact.Error(err))
	}
	var ans struct {
		errAnswer
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return fmt.Errorf("wecom: access token answer %s: %w", redact.String(fmt.Sprintf("%.200q", raw)), err)
	}
	if ans.ErrCode != 0 {
		return fmt.Errorf("wecom: access token: %w", Classify(ans.ErrCode, ans.ErrMsg))
	}
	if ans.AccessToken == "" {
		return errors.New("wecom: access token answer has no access_token")
	}
	return nil
}
