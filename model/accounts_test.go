package model

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlausibleAppID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"wx5823bf96d3bd56c7":         true,
		"wxsandbox":                  true,
		"wx5823bf96d3bd56c7/1000002": true, // a WeCom app: corpid/agentid
		"ww-corp_1/agent-2":          true,
		"":                           false,
		"/1000002":                   false,
		"wwcorp/":                    false,
		"/":                          false,
		"ww/1/2":                     false, // one '/' at most
		"ww//1":                      false,
		"ww/../1":                    false,
		"ww 1/2":                     false,
		"ww%2F1":                     false,
		strings.Repeat("a", 128):     true,
		strings.Repeat("a", 129):     false,
	} {
		if got := plausibleAppID(s); got != want {
			t.Errorf("plausibleAppID(%q) = %v, want %v", s, got, want)
		}
	}
}

// A WeCom app is stored and found under "corpid/agentid", next to an
// Official Account, and another agent of the same corp is not it.
func TestAccountsGetWeComApp(t *testing.T) {
	t.Parallel()
	db, err := Open("sqlite", filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { sqlDB.Close() })
	if err := Migrate(db); err != nil {
		t.Fatal(err)
	}
	for _, a := range []Account{
		{Kind: AccountWeChatOA, AppID: "wxoa", Token: "t1"},
		{Kind: AccountWeCom, AppID: "wwcorp/1000002", Token: "t2"},
	} {
		if err := UpsertAccount(db, nil, a); err != nil {
			t.Fatal(err)
		}
	}
	accts := NewAccounts(db, nil)
	ctx := context.Background()
	if a, err := accts.Get(ctx, "wwcorp/1000002"); err != nil || a.Kind != AccountWeCom || a.Token != "t2" {
		t.Errorf("Get(wwcorp/1000002) = %+v, %v; want the WeCom app", a, err)
	}
	if _, err := accts.Get(ctx, "wwcorp/1000003"); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("Get of another agent: %v, want ErrUnknownAccount", err)
	}
}
