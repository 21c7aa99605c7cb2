package model

import (
	"path/filepath"
	"testing"
	"time"
)

// TestClaimGrant: one send per authorisation; a retry of the same delivery
// gets its grant again; a released grant can be claimed anew.
func TestClaimGrant(t *testing.T) {
	t.Parallel()
	db, err := Open("sqlite", filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	ev1, ev2 := int64(1), int64(2)
	for _, g := range []*SubscribeGrant{
		{MemberID: 7, AppID: "wxoa", TemplateID: "T", Scene: "1000", Source: "oa_once", EventID: &ev1, GrantedAt: now},
		{MemberID: 7, AppID: "wxoa", TemplateID: "T", Scene: "1000", Source: "oa_once", EventID: &ev1, GrantedAt: now}, // the event routed again
		{MemberID: 7, AppID: "wxmp", TemplateID: "M", Source: "miniprogram", EventID: &ev2, GrantedAt: now},
	} {
		if err := AddGrant(db, g); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(app, tpl string, delivery int64) (SubscribeGrant, bool) {
		t.Helper()
		g, ok, err := ClaimGrant(db, 7, app, tpl, delivery, now)
		if err != nil {
			t.Fatal(err)
		}
		return g, ok
	}
	if g, ok := claim("wxoa", "T", 100); !ok || g.Source != "oa_once" || g.Scene != "1000" {
		t.Fatalf("first claim: %+v %v", g, ok)
	}
	if _, ok := claim("wxoa", "T", 100); !ok {
		t.Error("a retry of the same delivery lost its grant")
	}
	if _, ok := claim("wxoa", "T", 101); ok {
		t.Error("a second delivery claimed a spent authorisation (the event's repeat was recorded twice?)")
	}
	if _, ok := claim("wxmp", "M", 100); ok {
		t.Error("a delivery holding a grant claimed a second one")
	}
	if err := ReleaseGrant(db, 100); err != nil {
		t.Fatal(err)
	}
	if _, ok := claim("wxoa", "T", 101); !ok {
		t.Error("a released grant could not be claimed again")
	}
	if g, ok := claim("wxmp", "M", 102); !ok || g.Source != "miniprogram" {
		t.Errorf("mini-program grant: %+v %v", g, ok)
	}
}
