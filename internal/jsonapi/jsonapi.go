// Package jsonapi makes the HTTP requests of wejourney's WeChat-family API
// clients (channels/wechat and channels/wecom): a JSON POST or a GET whose
// URL holds an access token or a secret, so every error is masked with
// internal/redact.
package jsonapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/wejourney/wejourney/internal/redact"
)

// MaxAnswer bounds how much of an API answer Do reads.
const MaxAnswer = 1 << 20

// Do sends one request to uri with client and returns the answer of a 200
// (at most MaxAnswer bytes). When method is http.MethodPost, body is sent as
// JSON (HTML characters unescaped, as silenceper does); otherwise body is
// unused. Its errors are masked with redact: net/http's *url.Error and the
// non-200 error name the URL, access token or secret included.
func Do(ctx context.Context, client *http.Client, method, uri string, body any) ([]byte, error) {
	var buf bytes.Buffer
	if method == http.MethodPost {
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(body); err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, uri, &buf)
	if err != nil {
		return nil, redact.Error(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json;charset=utf-8")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, redact.Error(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxAnswer)) // keep the connection
		return nil, fmt.Errorf("%s %s: HTTP %d", method, redact.String(uri), resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	if err != nil {
		return nil, redact.Error(fmt.Errorf("%s %s: reading the answer: %w", method, uri, err))
	}
	return raw, nil
}
