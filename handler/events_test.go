package handler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wejourney/wejourney/model"
)

// TestEventsAPIEdges: each case runs its requests on a fresh handler and
// database.
func TestEventsAPIEdges(t *testing.T) {
	t.Parallel()
	auth := map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/json"}
	withType := func(ct string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + testKey}
		if ct != "" {
			h["Content-Type"] = ct
		}
		return h
	}
	event := func(id, typ, member, props, at string) string {
		s := fmt.Sprintf(`{"type":%q,"member":%s`, typ, member)
		if id != "" {
			s += fmt.Sprintf(`,"id":%q`, id)
		}
		if props != "" {
			s += `,"props":` + props
		}
		if at != "" {
			s += fmt.Sprintf(`,"at":%q`, at)
		}
		return s + "}"
	}
	phone := `{"phone":"13800000000"}`
	paidA := event("o-1", "order.paid", phone, `{"amount":100,"items":["a","b"]}`, "2026-01-02T10:00:00+08:00")
	paidB := event("o-1", "order.paid", phone, `{"amount":200,"items":["a","b"]}`, "2026-01-02T10:00:00+08:00")
	// The same payload with its props in another order and its time in UTC.
	paidAReordered := `{"props":{"items":["a","b"],"amount":100},"at":"2026-01-02T02:00:00Z","member":{"phone":"13800000000"},"type":"order.paid","id":"o-1"}`
	now := time.Now().UTC()
	long := func(n int) string { return strings.Repeat("x", n) }
	member := func(field string, n int) string {
		m := map[string]string{"phone": "13800000000"}
		if field == "openid" {
			m["appid"] = "wx1"
		}
		m[field] = long(n)
		if field == "phone" {
			m[field] = strings.Repeat("1", n)
		}
		if field == "email" {
			m[field] = long(n-len("@b.cn")) + "@b.cn"
		}
		var parts []string
		for k, v := range m {
			parts = append(parts, fmt.Sprintf("%q:%q", k, v))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	bigProps := fmt.Sprintf(`{"blob":%q}`, long(64*1024))

	cases := []struct {
		name  string
		steps []scenario
	}{
		{"a reused id with another payload is a conflict", []scenario{
			{"first", "POST", "/api/v1/events", paidA, auth, 202, []string{`"accepted":1`}, 1},
			{"same id, other payload", "POST", "/api/v1/events", paidB, auth, 409,
				[]string{`"index":0`, `id \"o-1\" was already used with a different payload`}, 1},
			{"same payload is a duplicate", "POST", "/api/v1/events", paidA, auth, 202, []string{`"accepted":0`, `"duplicates":1`}, 1},
			{"same payload written differently is a duplicate", "POST", "/api/v1/events", paidAReordered, auth, 202, []string{`"duplicates":1`}, 1},
		}},
		{"a conflict stores nothing of its request", []scenario{
			{"first", "POST", "/api/v1/events", paidA, auth, 202, []string{`"accepted":1`}, 1},
			{"batch with a conflict", "POST", "/api/v1/events", `{"events":[` + event("o-2", "order.paid", phone, "", "") + "," + paidB + `]}`, auth, 409,
				[]string{`"index":1`, `already used with a different payload`}, 1},
			{"the new event alone is accepted", "POST", "/api/v1/events", event("o-2", "order.paid", phone, "", ""), auth, 202, []string{`"accepted":1`}, 2},
		}},
		{"a reused id within one request", []scenario{
			{"two payloads, one id", "POST", "/api/v1/events", `{"events":[` + paidA + "," + paidB + `]}`, auth, 409, []string{`"index":1`}, 0},
			{"the same event twice is one", "POST", "/api/v1/events", `{"events":[` + paidA + "," + paidA + `]}`, auth, 202, []string{`"accepted":1`, `"duplicates":1`}, 1},
		}},
		{"content type", []scenario{
			{"none", "POST", "/api/v1/events", paidA, withType(""), 415, []string{"application/json"}, 0},
			{"text/plain", "POST", "/api/v1/events", paidA, withType("text/plain"), 415, []string{"application/json"}, 0},
			{"form", "POST", "/api/v1/events", paidA, withType("application/x-www-form-urlencoded"), 415, nil, 0},
			{"another charset", "POST", "/api/v1/events", paidA, withType("application/json; charset=latin1"), 415, []string{"UTF-8"}, 0},
			{"json with utf-8", "POST", "/api/v1/events", paidA, withType("Application/JSON; charset=UTF-8"), 202, []string{`"accepted":1`}, 1},
		}},
		{"reserved prefixes in any case", []scenario{
			{"WeChat.", "POST", "/api/v1/events", event("", "WeChat.subscribe", phone, "", ""), auth, 400, []string{"reserved"}, 0},
			{"WECOM.", "POST", "/api/v1/events", event("", "WECOM.x", phone, "", ""), auth, 400, []string{"reserved"}, 0},
			{"wechat.", "POST", "/api/v1/events", event("", "wechat.scan", phone, "", ""), auth, 400, []string{"reserved"}, 0},
			{"miniprogram. (the mini-program posts those itself)", "POST", "/api/v1/events", event("", "miniprogram.opened", phone, `{"page":"p"}`, ""), auth, 400, []string{"reserved"}, 0},
			{"a brand type that starts alike", "POST", "/api/v1/events", event("", "wechatpay.paid", phone, "", ""), auth, 202, nil, 1},
		}},
		{"at is bounded", []scenario{
			{"before 2000", "POST", "/api/v1/events", event("", "x", phone, "", "1999-12-31T23:59:59Z"), auth, 400, []string{"at:"}, 0},
			{"year 1", "POST", "/api/v1/events", event("", "x", phone, "", "0001-01-01T00:00:00Z"), auth, 400, []string{"at:"}, 0},
			{"25 hours ahead", "POST", "/api/v1/events", event("", "x", phone, "", now.Add(25*time.Hour).Format(time.RFC3339)), auth, 400, []string{"at:"}, 0},
			{"year 9999", "POST", "/api/v1/events", event("", "x", phone, "", "9999-12-31T23:59:59Z"), auth, 400, []string{"at:"}, 0},
			{"2000-01-01", "POST", "/api/v1/events", event("", "x", phone, "", "2000-01-01T00:00:00Z"), auth, 202, nil, 1},
			{"23 hours ahead", "POST", "/api/v1/events", event("", "x", phone, "", now.Add(23*time.Hour).Format(time.RFC3339)), auth, 202, nil, 2},
		}},
		{"fields too long to store are 400s naming them", []scenario{
			{"openid 200", "POST", "/api/v1/events", event("", "x", member("openid", 200), "", ""), auth, 400, []string{"member.openid"}, 0},
			{"openid 129", "POST", "/api/v1/events", event("", "x", member("openid", 129), "", ""), auth, 400, []string{"member.openid"}, 0},
			{"appid 65", "POST", "/api/v1/events", event("", "x", member("appid", 65), "", ""), auth, 400, []string{"member.appid"}, 0},
			{"unionid 129", "POST", "/api/v1/events", event("", "x", member("unionid", 129), "", ""), auth, 400, []string{"member.unionid"}, 0},
			{"external_userid 129", "POST", "/api/v1/events", event("", "x", member("external_userid", 129), "", ""), auth, 400, []string{"member.external_userid"}, 0},
			{"user_id 129", "POST", "/api/v1/events", event("", "x", member("user_id", 129), "", ""), auth, 400, []string{"member.user_id"}, 0},
			{"phone 33", "POST", "/api/v1/events", event("", "x", member("phone", 33), "", ""), auth, 400, []string{"member.phone"}, 0},
			{"email 192", "POST", "/api/v1/events", event("", "x", member("email", 192), "", ""), auth, 400, []string{"member.email"}, 0},
			{"control characters", "POST", "/api/v1/events", event("", "x", `{"user_id":"a\u0000b"}`, "", ""), auth, 400, []string{"member.user_id"}, 0},
			{"type 65", "POST", "/api/v1/events", event("", long(65), phone, "", ""), auth, 400, []string{"type"}, 0},
			{"type with spaces", "POST", "/api/v1/events", event("", "order paid", phone, "", ""), auth, 400, []string{"type"}, 0},
			{"type in Chinese", "POST", "/api/v1/events", event("", "订单.支付", phone, "", ""), auth, 400, []string{"type"}, 0},
			{"id 129", "POST", "/api/v1/events", event(long(129), "x", phone, "", ""), auth, 400, []string{"id is at most 128"}, 0},
			{"props over 64 KiB", "POST", "/api/v1/events", event("", "x", phone, bigProps, ""), auth, 400, []string{"props"}, 0},
			{"the index of the bad one", "POST", "/api/v1/events", `{"events":[` + event("", "x", phone, "", "") + "," + event("", "x", member("openid", 129), "", "") + `]}`,
				auth, 400, []string{`"index":1`, "member.openid"}, 0},
		}},
		{"each identity names a member; each is checked", []scenario{
			{"openid with appid", "POST", "/api/v1/events", event("", "x", `{"openid":"o1","appid":"wx1"}`, "", ""), auth, 202, nil, 1},
			{"unionid", "POST", "/api/v1/events", event("", "x", `{"unionid":"u1"}`, "", ""), auth, 202, nil, 2},
			{"external_userid", "POST", "/api/v1/events", event("", "x", `{"external_userid":"wm1"}`, "", ""), auth, 202, nil, 3},
			{"phone with country code and spaces", "POST", "/api/v1/events", event("", "x", `{"phone":"+86 138-0013-8000"}`, "", ""), auth, 202, nil, 4},
			{"email", "POST", "/api/v1/events", event("", "x", `{"email":"Wang@Example.com"}`, "", ""), auth, 202, nil, 5},
			{"user_id", "POST", "/api/v1/events", event("", "x", `{"user_id":"u_10086"}`, "", ""), auth, 202, nil, 6},
			{"mp_openid with mp_appid", "POST", "/api/v1/events", event("", "x", `{"mp_openid":"omp1","mp_appid":"wxmini"}`, "", ""), auth, 202, nil, 7},
			{"mp_openid without mp_appid", "POST", "/api/v1/events", event("", "x", `{"mp_openid":"omp1"}`, "", ""), auth, 400, []string{"member.mp_openid needs member.mp_appid"}, 7},
			{"appid alone", "POST", "/api/v1/events", event("", "x", `{"appid":"wx1"}`, "", ""), auth, 400, []string{"member.appid needs member.openid"}, 7},
			{"mp_appid alone", "POST", "/api/v1/events", event("", "x", `{"mp_appid":"wx1"}`, "", ""), auth, 400, []string{"member.mp_appid needs member.mp_openid"}, 7},
			{"a phone of letters", "POST", "/api/v1/events", event("", "x", `{"phone":"call me"}`, "", ""), auth, 400, []string{"member.phone", "not a phone number"}, 7},
			{"a phone too short", "POST", "/api/v1/events", event("", "x", `{"phone":"1234"}`, "", ""), auth, 400, []string{"member.phone"}, 7},
			{"a plus inside a phone", "POST", "/api/v1/events", event("", "x", `{"phone":"138+0013"}`, "", ""), auth, 400, []string{"member.phone"}, 7},
			{"an email without @", "POST", "/api/v1/events", event("", "x", `{"email":"wang.example.com"}`, "", ""), auth, 400, []string{"member.email", "not an email"}, 7},
			{"an email ending in @", "POST", "/api/v1/events", event("", "x", `{"email":"wang@"}`, "", ""), auth, 400, []string{"member.email"}, 7},
			{"an email with a space", "POST", "/api/v1/events", event("", "x", `{"email":"wang @example.com"}`, "", ""), auth, 400, []string{"member.email"}, 7},
			{"mp_openid 129", "POST", "/api/v1/events", event("", "x", `{"mp_openid":"`+long(129)+`","mp_appid":"wxmini"}`, "", ""), auth, 400, []string{"member.mp_openid is at most 128"}, 7},
			{"mp_appid 65", "POST", "/api/v1/events", event("", "x", `{"mp_openid":"omp1","mp_appid":"`+long(65)+`"}`, "", ""), auth, 400, []string{"member.mp_appid is at most 64"}, 7},
			{"one bad identity refuses the batch", "POST", "/api/v1/events", `{"events":[` + event("", "x", `{"user_id":"u2"}`, "", "") + "," + event("", "x", `{"email":"nope"}`, "", "") + `]}`,
				auth, 400, []string{`"index":1`, "member.email"}, 7},
		}},
		{"fields at their limits are stored", []scenario{
			{"openid 128", "POST", "/api/v1/events", event("", "x", member("openid", 128), "", ""), auth, 202, nil, 1},
			{"email 191", "POST", "/api/v1/events", event("", "x", member("email", 191), "", ""), auth, 202, nil, 2},
			{"phone 32", "POST", "/api/v1/events", event("", "x", member("phone", 32), "", ""), auth, 202, nil, 3},
			{"id 128 and type 64", "POST", "/api/v1/events", event(long(128), "t"+long(63), phone, "", ""), auth, 202, nil, 4},
			{"the same again is a duplicate", "POST", "/api/v1/events", event(long(128), "t"+long(63), phone, "", ""), auth, 202, []string{`"duplicates":1`}, 4},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, db := newTestRouter(t)
			runScenarios(t, h, db, tc.steps)
		})
	}
}

// TestEventsAPIPayloadHash: events from the API carry their payload's
// fingerprint; one without `at` hashes the same at any time it arrives.
func TestEventsAPIPayloadHash(t *testing.T) {
	t.Parallel()
	h, db := newTestRouter(t)
	auth := map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/json"}
	body := `{"id":"n-1","type":"form.submitted","member":{"email":"a@b.c"},"props":{"form":"bind"}}`
	runScenarios(t, h, db, []scenario{
		{"first", "POST", "/api/v1/events", body, auth, 202, []string{`"accepted":1`}, 1},
		{"a retry later", "POST", "/api/v1/events", body, auth, 202, []string{`"duplicates":1`}, 1},
	})
	var ev model.Event
	if err := db.First(&ev).Error; err != nil {
		t.Fatal(err)
	}
	if len(ev.PayloadHash) != 64 {
		t.Errorf("stored payload hash %q; want a hex SHA-256", ev.PayloadHash)
	}
}

// TestEventsAPIStoresMiniProgramIdentity: a brand event may name the
// member by their mini-program openid; it is stored as posted.
func TestEventsAPIStoresMiniProgramIdentity(t *testing.T) {
	t.Parallel()
	h, db := newTestRouter(t)
	auth := map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/json"}
	scenario{"mp member", "POST", "/api/v1/events", `{"id":"m1","type":"coupon.claimed","member":{"mp_openid":"omp1","mp_appid":"wxmini","unionid":"u1"}}`,
		auth, 202, []string{`"accepted":1`}, 1}.send(t, h, db)
	var ev model.Event
	if err := db.First(&ev).Error; err != nil {
		t.Fatal(err)
	}
	if want := (model.MemberRef{MPAppID: "wxmini", MPOpenID: "omp1", UnionID: "u1"}); ev.Member != want || ev.MemberKey != "mp_openid:wxmini/omp1" {
		t.Errorf("stored member %+v (key %q), want %+v (key mp_openid:wxmini/omp1)", ev.Member, ev.MemberKey, want)
	}
}
