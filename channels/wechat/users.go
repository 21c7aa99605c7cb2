package wechat

import (
	"context"
	"fmt"
	"net/url"
)

// The user-management APIs the follower import and the engine call.
const (
	userGetPath      = "/cgi-bin/user/get"
	userBatchGetPath = "/cgi-bin/user/info/batchget"
	tagsGetPath      = "/cgi-bin/tags/get"
)

// MaxUsersInfo is how many openids one user/info/batchget call takes
// (WeChat answers 45035 to more).
const MaxUsersInfo = 100

// FollowerPageSize is how many openids WeChat's user/get answers at most
// per page.
const FollowerPageSize = 10000

// FollowerPage is one page of an Official Account's followers (user/get).
type FollowerPage struct {
	// Total is the account's follower count.
	Total int `json:"total"`
	// Count is len(OpenIDs): at most FollowerPageSize.
	Count int `json:"count"`
	// OpenIDs are this page's followers.
	OpenIDs []string `json:"-"`
	// NextOpenID is the cursor of the next page: the last openid of this
	// page. A call with it after the last page answers Count 0.
	NextOpenID string `json:"next_openid"`
}

// UserInfo is what WeChat knows about one of an account's users
// (user/info, user/info/batchget). Subscribe is 0 when the user does not
// follow the account (then only OpenID, and UnionID when bound, are set).
type UserInfo struct {
	OpenID         string `json:"openid"`
	UnionID        string `json:"unionid"`
	Subscribe      int    `json:"subscribe"`
	SubscribeTime  int64  `json:"subscribe_time"`
	TagIDs         []int  `json:"tagid_list"`
	Remark         string `json:"remark"`
	SubscribeScene string `json:"subscribe_scene"`
	QRScene        int    `json:"qr_scene"`
	QRSceneStr     string `json:"qr_scene_str"`
}

// Followers returns the page of appid's followers after nextOpenID ("" for
// the first page): GET /cgi-bin/user/get, up to FollowerPageSize openids.
func (s *Sender) Followers(ctx context.Context, appid, nextOpenID string) (FollowerPage, error) {
	var ans struct {
		FollowerPage
		Data struct {
			OpenID []string `json:"openid"`
		} `json:"data"`
	}
	q := url.Values{}
	if nextOpenID != "" {
		q.Set("next_openid", nextOpenID)
	}
	if err := s.Call(ctx, appid, userGetPath, q, nil, &ans); err != nil {
		return FollowerPage{}, err
	}
	p := ans.FollowerPage
	p.OpenIDs = ans.Data.OpenID
	p.Count = len(p.OpenIDs)
	return p, nil
}

// UsersInfo returns what WeChat knows about up to MaxUsersInfo of appid's
// users (POST /cgi-bin/user/info/batchget, lang zh_CN), in WeChat's order.
// More than MaxUsersInfo openids is an error and calls nothing.
func (s *Sender) UsersInfo(ctx context.Context, appid string, openids []string) ([]UserInfo, error) {
	if len(openids) > MaxUsersInfo {
		return nil, fmt.Errorf("wechat: user/info/batchget takes at most %d openids, got %d", MaxUsersInfo, len(openids))
	}
	if len(openids) == 0 {
		return nil, nil
	}
	type item struct {
		OpenID string `json:"openid"`
		Lang   string `json:"lang"`
	}
	req := struct {
		UserList []item `json:"user_list"`
	}{UserList: make([]item, len(openids))}
	for i, id := range openids {
		req.UserList[i] = item{OpenID: id, Lang: "zh_CN"}
	}
	var ans struct {
		Users []UserInfo `json:"user_info_list"`
	}
	if err := s.Call(ctx, appid, userBatchGetPath, nil, req, &ans); err != nil {
		return nil, err
	}
	return ans.Users, nil
}

// Tags returns appid's user tags by id (GET /cgi-bin/tags/get).
func (s *Sender) Tags(ctx context.Context, appid string) (map[int]string, error) {
	var ans struct {
		Tags []struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		} `json:"tags"`
	}
	if err := s.Call(ctx, appid, tagsGetPath, nil, nil, &ans); err != nil {
		return nil, err
	}
	out := make(map[int]string, len(ans.Tags))
	for _, t := range ans.Tags {
		out[t.ID] = t.Name
	}
	return out, nil
}
