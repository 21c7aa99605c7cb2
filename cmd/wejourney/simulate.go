package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/wejourney/wejourney/internal/wxsim"
)

// simulateCmd runs `wejourney simulate KIND [flags]`: it sends one signed
// WeChat callback, as WeChat would, to a running server.
func simulateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	kinds := strings.Join(wxsim.Kinds(), ", ")
	fs := newFlags("simulate KIND [flags]",
		"Sends one signed WeChat callback to a running server, signed with WEJOURNEY_WECHAT_TOKEN\n"+
			"(and encrypted with WEJOURNEY_WECHAT_AES_KEY when set). KIND is one of "+kinds+".", stderr)
	target := fs.String("target", "", "server base URL (default: http:// + WEJOURNEY_HTTP_ADDR)")
	openid := fs.String("openid", "", "the member's openid (default: a new random one, so once-only journeys fire again)")
	scene := fs.String("scene", "", "QR scene (subscribe, scan), e.g. store_001")
	key := fs.String("key", "", "menu key (click)")
	link := fs.String("url", "", "menu URL (view)")
	content := fs.String("content", "", "message text (text)")
	status := fs.String("status", "success", "template_sent status")
	appid := fs.String("appid", "", "Official Account appid (default: WEJOURNEY_WECHAT_APPID)")
	cfg, pos, err := parseInterspersed(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: wejourney simulate KIND [flags]; KIND is one of %s", kinds)
	}
	kind := pos[0]
	if !slices.Contains(wxsim.Kinds(), kind) {
		return fmt.Errorf("simulate: unknown KIND %q; want one of %s", kind, kinds)
	}
	if *target == "" {
		host, port, err := net.SplitHostPort(cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("WEJOURNEY_HTTP_ADDR: %w", err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		*target = "http://" + net.JoinHostPort(host, port)
	} else if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--target %q: want the server's base URL, e.g. http://127.0.0.1:8080", *target)
	}
	if *appid == "" {
		if *appid = cfg.DefaultAppID(); *appid == "" {
			return errors.New("no appid: pass --appid or set WEJOURNEY_WECHAT_APPID")
		}
	}
	token := cfg.DefaultToken()
	if token == "" {
		return errors.New("WEJOURNEY_WECHAT_TOKEN is empty: set it to the token the server checks")
	}
	if k := cfg.WeChatAESKey; k != "" {
		if raw, err := base64.StdEncoding.DecodeString(k + "="); len(k) != 43 || err != nil || len(raw) != 32 {
			return fmt.Errorf("WEJOURNEY_WECHAT_AES_KEY: want the 43-character EncodingAESKey from 公众平台 → 基本配置 (got %d characters)", len(k))
		}
	}
	if *openid == "" {
		*openid = "osim_" + randomHex(6)
	}
	c, err := wxsim.New(wxsim.Config{Target: *target, AppID: *appid, Token: token, AESKey: cfg.WeChatAESKey})
	if err != nil {
		return err
	}
	ev := wxsim.Event{Kind: kind, OpenID: *openid, Scene: *scene, Key: *key, URL: *link, Content: *content, Status: *status}
	code, body, err := c.Send(ctx, ev)
	if err != nil {
		return err
	}
	mode := "plaintext"
	if c.SafeMode() {
		mode = "safe mode"
	}
	fmt.Fprintf(stdout, "sent %s for %s to %s (%s): HTTP %d %s\n", kind, *openid, c.Endpoint(), mode, code, strings.TrimSpace(body))
	if code != 200 {
		return fmt.Errorf("the server answered HTTP %d", code)
	}
	return nil
}
