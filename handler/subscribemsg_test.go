package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

const subKey = "admin-key-subscribe"

// newSubscribeEnv is a handler with subscribe links, the admin API (an
// API key of scope admin) and a public URL.
func newSubscribeEnv(t *testing.T, configure func(*Config)) *cbEnv {
	t.Helper()
	return newCallbackEnv(t, func(c *Config) {
		c.Admin = NewAdmin(AdminConfig{DB: c.DB, Secret: []byte("secret")})
		c.SubscribeLinks = &SubscribeLinkConfig{Secret: []byte("link-key"), PublicURL: "https://wj.example.com", DefaultAppID: plainAppID}
		if err := c.DB.Create(&model.APIKey{Name: "admin", Hash: HashAPIKey(subKey), Scope: model.ScopeAdmin}).Error; err != nil {
			t.Fatal(err)
		}
		if configure != nil {
			configure(c)
		}
	})
}

// makeLink asks the links API for a link and returns the answer.
func makeLink(t *testing.T, e *cbEnv, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/subscribe-links", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+subKey)
	return e.serve(req)
}

// linkReturn is where WeChat sends the member back from link: its
// redirect_url with WeChat's parameters added.
func linkReturn(t *testing.T, link, openid, action string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	back, err := url.Parse(q.Get("redirect_url"))
	if err != nil {
		t.Fatal(err)
	}
	bq := back.Query()
	for _, k := range []string{"template_id", "scene", "reserved"} {
		bq.Set(k, q.Get(k))
	}
	bq.Set("openid", openid)
	bq.Set("action", action)
	return back.Path + "?" + bq.Encode()
}

func TestSubscribeLinksAPI(t *testing.T) {
	t.Parallel()
	e := newSubscribeEnv(t, nil)
	rec := makeLink(t, e, `{"template_id":"TPL-once","scene":1000,"redirect":"https://brand.example/thanks?x=1"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var ans struct{ URL string }
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(ans.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme+"://"+u.Host+u.Path != SubscribeConfirmURL || u.Fragment != "wechat_redirect" || q.Get("action") != "get_confirm" ||
		q.Get("appid") != plainAppID || q.Get("scene") != "1000" || q.Get("template_id") != "TPL-once" {
		t.Errorf("link %s", ans.URL)
	}
	wantBack := "https://wj.example.com/wechat/oa/" + plainAppID + "/subscribemsg?r=" + url.QueryEscape("https://brand.example/thanks?x=1")
	if q.Get("redirect_url") != wantBack {
		t.Errorf("redirect_url = %s, want %s", q.Get("redirect_url"), wantBack)
	}
	if r := q.Get("reserved"); len(r) > 128 || strings.Trim(r, "0123456789abcdef") != "" {
		t.Errorf("reserved %q is not at most 128 characters of a-zA-Z0-9", r)
	}
	if !strings.Contains(ans.URL, "&redirect_url=https%3A%2F%2Fwj.example.com%2Fwechat") {
		t.Errorf("redirect_url is not URL-encoded in %s", ans.URL)
	}

	for _, bad := range []struct{ body, want string }{
		{`{"scene":1,"redirect":"https://b.example/"}`, "template_id"},
		{`{"template_id":"T","redirect":"https://b.example/"}`, "scene"},
		{`{"template_id":"T","scene":10001,"redirect":"https://b.example/"}`, "scene"},
		{`{"template_id":"T","scene":1,"redirect":"javascript:alert(1)"}`, "redirect"},
		{`{"template_id":"T","scene":1}`, "redirect"},
		{`{"appid":"wxnobody","template_id":"T","scene":1,"redirect":"https://b.example/"}`, "not a connected Official Account"},
	} {
		rec := makeLink(t, e, bad.body)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), bad.want) {
			t.Errorf("%s: %d %s, want 400 naming %s", bad.body, rec.Code, rec.Body, bad.want)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/subscribe-links", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	if rec := e.serve(req); rec.Code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", rec.Code)
	}
}

func TestSubscribeReturn(t *testing.T) {
	t.Parallel()
	const redirect = "https://brand.example/thanks"
	newLink := func(t *testing.T, e *cbEnv) string {
		rec := makeLink(t, e, `{"template_id":"TPL-once","scene":7,"redirect":"`+redirect+`"}`)
		var ans struct{ URL string }
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ans) != nil {
			t.Fatalf("links API: %d %s", rec.Code, rec.Body)
		}
		return ans.URL
	}
	get := func(e *cbEnv, path string) *httptest.ResponseRecorder {
		return e.serve(httptest.NewRequest(http.MethodGet, path, nil))
	}

	t.Run("confirm stores the authorisation, then redirects", func(t *testing.T) {
		t.Parallel()
		e := newSubscribeEnv(t, nil)
		back := linkReturn(t, newLink(t, e), "o-member", "confirm")
		for range 2 { // WeChat's redirect reloaded: still one authorisation
			rec := get(e, back)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != redirect {
				t.Fatalf("answer %d to %q, want 302 to %s", rec.Code, rec.Header().Get("Location"), redirect)
			}
		}
		evs := e.events(t)
		if len(evs) != 1 {
			t.Fatalf("%d events stored, want 1", len(evs))
		}
		ev := evs[0]
		if ev.Type != events.WeChatSubscribeAuthorized || ev.Member.AppID != plainAppID || ev.Member.OpenID != "o-member" ||
			ev.Props["template_id"] != "TPL-once" || ev.Props["scene"] != "7" || ev.Props["source"] != "oa_once" {
			t.Errorf("stored %+v", ev)
		}
	})
	t.Run("cancel stores nothing", func(t *testing.T) {
		t.Parallel()
		e := newSubscribeEnv(t, nil)
		rec := get(e, linkReturn(t, newLink(t, e), "o-member", "cancel"))
		if rec.Code != http.StatusFound || rec.Header().Get("Location") != redirect {
			t.Errorf("answer %d to %q, want 302 to %s", rec.Code, rec.Header().Get("Location"), redirect)
		}
		if n := len(e.events(t)); n != 0 {
			t.Errorf("%d events stored, want none", n)
		}
	})
	t.Run("forged reserved is refused", func(t *testing.T) {
		t.Parallel()
		e := newSubscribeEnv(t, nil)
		back := linkReturn(t, newLink(t, e), "o-member", "confirm")
		u, _ := url.Parse(back)
		for name, change := range map[string]func(url.Values){
			"other template": func(q url.Values) { q.Set("template_id", "TPL-other") },
			"other scene":    func(q url.Values) { q.Set("scene", "8") },
			"other redirect": func(q url.Values) { q.Set("r", "https://evil.example/") },
			"made up":        func(q url.Values) { q.Set("reserved", strings.Repeat("a", 64)) },
			"none":           func(q url.Values) { q.Del("reserved") },
		} {
			q := u.Query()
			change(q)
			rec := get(e, u.Path+"?"+q.Encode())
			if rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" {
				t.Errorf("%s: answer %d (Location %q), want 400", name, rec.Code, rec.Header().Get("Location"))
			}
		}
		other := "/wechat/oa/" + safeAppID + strings.TrimPrefix(u.Path, "/wechat/oa/"+plainAppID) + "?" + u.RawQuery
		if rec := get(e, other); rec.Code != http.StatusBadRequest {
			t.Errorf("another appid: answer %d, want 400", rec.Code)
		}
		if n := len(e.events(t)); n != 0 {
			t.Errorf("%d events stored, want none", n)
		}
	})
	t.Run("no redirect before the authorisation is stored", func(t *testing.T) {
		t.Parallel()
		e := newSubscribeEnv(t, func(c *Config) { c.Ingestor = &failingStore{err: errors.New("database is down")} })
		rec := get(e, linkReturn(t, newLink(t, e), "o-member", "confirm"))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Location") != "" {
			t.Errorf("answer %d (Location %q), want 503", rec.Code, rec.Header().Get("Location"))
		}
	})
	t.Run("not configured", func(t *testing.T) {
		t.Parallel()
		e := newCallbackEnv(t, nil)
		if rec := get(e, "/wechat/oa/"+plainAppID+"/subscribemsg?action=confirm"); rec.Code != http.StatusNotFound {
			t.Errorf("answer %d, want 404", rec.Code)
		}
	})
}

// popupXML is a 订阅通知 popup callback from openid with these
// (template, status) pairs.
func popupXML(openid string, items ...[2]string) string {
	var list strings.Builder
	for _, it := range items {
		fmt.Fprintf(&list, `<List><TemplateId><![CDATA[%s]]></TemplateId><SubscribeStatusString><![CDATA[%s]]></SubscribeStatusString><PopupScene>2</PopupScene></List>`, it[0], it[1])
	}
	return fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event>`+
		`<SubscribeMsgPopupEvent>%s</SubscribeMsgPopupEvent></xml>`, openid, cbNow.Unix(), list.String())
}

func TestSubscribePopupCallback(t *testing.T) {
	t.Parallel()
	e := newCallbackEnv(t, nil)
	xml := popupXML("o-pop", [2]string{"TPL-a", "accept"}, [2]string{"TPL-b", "reject"}, [2]string{"TPL-c", "accept"})
	for range 2 { // WeChat retries: stored once
		if rec := e.serve(plainCB(xml).post(t)); rec.Code != http.StatusOK {
			t.Fatalf("callback answered %d: %s", rec.Code, rec.Body)
		}
	}
	evs := e.events(t)
	var got []string
	for _, ev := range evs {
		if ev.Type != events.WeChatSubscribeAuthorized || ev.Props["source"] != "oa_popup" || ev.Member.OpenID != "o-pop" || ev.Props["scene"] != "2" {
			t.Errorf("stored %+v", ev)
		}
		got = append(got, fmt.Sprint(ev.Props["template_id"]))
	}
	if strings.Join(got, ",") != "TPL-a,TPL-c" {
		t.Errorf("authorised templates %v, want TPL-a and TPL-c (TPL-b was rejected)", got)
	}

	e2 := newCallbackEnv(t, nil)
	if rec := e2.serve(plainCB(popupXML("o-pop", [2]string{"TPL-b", "reject"})).post(t)); rec.Code != http.StatusOK {
		t.Fatalf("callback answered %d", rec.Code)
	}
	if evs := e2.events(t); len(evs) != 1 || evs[0].Type == events.WeChatSubscribeAuthorized {
		t.Errorf("a popup with nothing accepted stored %+v, want its one plain event", evs)
	}
}
