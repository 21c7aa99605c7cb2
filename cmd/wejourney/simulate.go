package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/wejourney/wejourney/internal/wxsim"
)

func simulateCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("usage: wejourney simulate KIND [flags]; KIND is one of %s", strings.Join(wxsim.Kinds(), ", "))
	}
	kind := args[0]
	fs := flag.NewFlagSet("simulate "+kind, flag.ContinueOnError)
	target := fs.String("target", "", "server base URL (default: http:// + WEJOURNEY_HTTP_ADDR)")
	openid := fs.String("openid", "", "the member's openid (default: a new random one, so once-only journeys fire again)")
	scene := fs.String("scene", "", "QR scene (subscribe, scan), e.g. store_001")
	key := fs.String("key", "", "menu key (click)")
	url := fs.String("url", "", "menu URL (view)")
	content := fs.String("content", "", "message text (text)")
	status := fs.String("status", "success", "template_sent status")
	appid := fs.String("appid", "", "Official Account appid (default: the configured one)")
	cfg, err := loadConfig(fs, args[1:])
	if err != nil {
		return err
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
	}
	if *appid == "" {
		*appid = cfg.DefaultAppID()
	}
	if *openid == "" {
		*openid = "osim_" + randomHex(6)
	}
	c, err := wxsim.New(wxsim.Config{Target: *target, AppID: *appid, Token: cfg.DefaultToken(), AESKey: cfg.WeChatAESKey})
	if err != nil {
		return err
	}
	ev := wxsim.Event{Kind: kind, OpenID: *openid, Scene: *scene, Key: *key, URL: *url, Content: *content, Status: *status}
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
