package wechat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/fakewx"
)

func TestFollowersPages(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	fake.SetFollowerCount(appID, 25000)
	s, _ := newSender(t, fake.URL, nil)
	ctx := context.Background()

	var all []string
	next, pages := "", 0
	for {
		p, err := s.Followers(ctx, appID, next)
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 25000 {
			t.Fatalf("total %d, want 25000", p.Total)
		}
		if p.Count != len(p.OpenIDs) {
			t.Fatalf("count %d but %d openids", p.Count, len(p.OpenIDs))
		}
		if p.Count == 0 {
			if p.NextOpenID != "" {
				t.Fatalf("empty page's next_openid %q, want \"\"", p.NextOpenID)
			}
			break
		}
		pages++
		if p.Count > FollowerPageSize {
			t.Fatalf("page of %d", p.Count)
		}
		if p.NextOpenID != p.OpenIDs[len(p.OpenIDs)-1] {
			t.Fatalf("next_openid %q, want the page's last openid %q", p.NextOpenID, p.OpenIDs[len(p.OpenIDs)-1])
		}
		all = append(all, p.OpenIDs...)
		next = p.NextOpenID
	}
	if pages != 3 || len(all) != 25000 {
		t.Fatalf("%d pages, %d openids; want 3 pages, 25000", pages, len(all))
	}
	if all[0] != fakewx.GeneratedFollower(appID, 0).OpenID || all[24999] != fakewx.GeneratedFollower(appID, 24999).OpenID {
		t.Fatalf("openids out of order: first %s, last %s", all[0], all[24999])
	}
	if got := fake.Calls(fakewx.PathUserGet); got != 4 {
		t.Fatalf("user/get calls %d, want 4", got)
	}
}

func TestUsersInfo(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	fake.AddFollowers(appID, fakewx.FakeUser{OpenID: "o1", UnionID: "u1", SubscribeTime: 1700000000, TagIDs: []int{2, 100},
		Remark: "老客户", SubscribeScene: "ADD_SCENE_QR_CODE", QRScene: 0, QRSceneStr: "store_001"})
	fake.SetTag(appID, 2, "星标组")
	fake.SetTag(appID, 100, "vip")
	s, _ := newSender(t, fake.URL, nil)
	ctx := context.Background()

	want := UserInfo{OpenID: "o1", UnionID: "u1", Subscribe: 1, SubscribeTime: 1700000000, TagIDs: []int{2, 100},
		Remark: "老客户", SubscribeScene: "ADD_SCENE_QR_CODE", QRSceneStr: "store_001"}
	got, err := s.UsersInfo(ctx, appID, []string{"o1", "ogone"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]UserInfo{want, {OpenID: "ogone", TagIDs: []int{}}}, got); diff != "" {
		t.Errorf("batchget (-want +got):\n%s", diff)
	}
	tags, err := s.Tags(ctx, appID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[int]string{2: "星标组", 100: "vip"}, tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}

	// More than 100 is refused before any call, as WeChat would refuse it.
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("o%d", i)
	}
	before := fake.Calls(fakewx.PathUserBatchGet)
	if _, err := s.UsersInfo(ctx, appID, many); err == nil || !strings.Contains(err.Error(), "at most 100") {
		t.Fatalf("101 openids: err %v, want at most 100", err)
	}
	if fake.Calls(fakewx.PathUserBatchGet) != before {
		t.Fatal("101 openids were sent to WeChat")
	}
}

func TestUsersErrorsClassified(t *testing.T) {
	t.Parallel()
	fake := startFake(t, fakewx.Config{})
	fake.SetFollowerCount(appID, 10)
	s, _ := newSender(t, fake.URL, nil)
	ctx := context.Background()

	fake.SetDailyQuota(fakewx.PathUserGet, 1)
	if _, err := s.Followers(ctx, appID, ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.Followers(ctx, appID, "")
	var ce *channels.Error
	if !errors.As(err, &ce) || ce.Code != 45009 || !errors.Is(err, channels.ErrQuota) {
		t.Fatalf("over the daily quota: %v, want 45009 ErrQuota", err)
	}
	fake.SetDailyQuota(fakewx.PathUserGet, -1)
	if _, err := s.Followers(ctx, appID, ""); err != nil {
		t.Fatalf("quota lifted: %v", err)
	}

	// An expired token is refreshed once, transparently.
	fake.ExpireTokens()
	if _, err := s.Tags(ctx, appID); err != nil {
		t.Fatalf("after the token expired: %v", err)
	}
	if _, err := s.Tags(ctx, "wxsandbox"); !errors.Is(err, ErrSandbox) {
		t.Fatalf("sandbox account: %v, want ErrSandbox", err)
	}
}
