package fakewx

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// The user-management APIs the fake answers (fakewx_users.go): the
// follower list, user info one by one and in batches, and user tags.
//
//   - GET /cgi-bin/user/get?next_openid= pages an account's followers in
//     the order they were added, UserPageSize per page; like WeChat, a
//     page's next_openid is its last openid, and the call after the last
//     page answers count 0 with an empty next_openid. An unknown
//     next_openid answers 40003.
//   - POST /cgi-bin/user/info/batchget takes at most 100 openids (40032
//     "invalid openid list size" otherwise, as WeChat answers); an openid
//     that does not follow answers subscribe 0 with only its openid.
//   - GET /cgi-bin/tags/get lists the account's tags.
//
// Each checks the access token (41001 missing, 40001 unknown or expired)
// and answers for the token's account. Calls counts every request per
// path; SetDailyQuota and FailNext inject WeChat's quota and other errors.
const (
	PathUserGet      = "/cgi-bin/user/get"
	PathUserBatchGet = "/cgi-bin/user/info/batchget"
	PathTagsGet      = "/cgi-bin/tags/get"
)

// UserPageSize is how many openids one user/get page holds, as on WeChat.
const UserPageSize = 10000

// FakeUser is one follower of a fake account.
type FakeUser struct {
	OpenID         string
	UnionID        string
	SubscribeTime  int64
	TagIDs         []int
	Remark         string
	SubscribeScene string
	QRScene        int
	QRSceneStr     string
}

// GeneratedTags are the tags SetFollowerCount gives an account.
var GeneratedTags = map[int]string{100: "vip", 101: "newsletter", 102: "门店会员"}

// GeneratedFollower is the i-th (from 0) follower SetFollowerCount makes
// for appid: deterministic, so tests know what to expect. Its openid and
// unionid name appid and i; every 10th is tagged vip, every other one
// newsletter, every 3rd 门店会员; every 4th came by a QR code with scene
// "store_<i mod 7>"; every 50th has a remark.
func GeneratedFollower(appid string, i int) FakeUser {
	u := FakeUser{
		OpenID:         fmt.Sprintf("o%s_%07d", appid, i),
		UnionID:        fmt.Sprintf("u%s_%07d", appid, i),
		SubscribeTime:  1600000000 + int64(i)*60,
		SubscribeScene: "ADD_SCENE_SEARCH",
		TagIDs:         []int{},
	}
	if i%10 == 0 {
		u.TagIDs = append(u.TagIDs, 100)
	}
	if i%2 == 0 {
		u.TagIDs = append(u.TagIDs, 101)
	}
	if i%3 == 0 {
		u.TagIDs = append(u.TagIDs, 102)
	}
	if i%4 == 0 {
		u.SubscribeScene, u.QRScene, u.QRSceneStr = "ADD_SCENE_QR_CODE", 0, fmt.Sprintf("store_%d", i%7)
	}
	if i%50 == 0 {
		u.Remark = fmt.Sprintf("remark %d", i)
	}
	return u
}

// users is the fake's user-management state.
type users struct {
	mu        sync.Mutex
	order     map[string][]string            // appid -> follower openids in order
	byID      map[string]map[string]FakeUser // appid -> openid -> user
	tags      map[string]map[int]string      // appid -> tag id -> name
	calls     map[string]int                 // path -> requests
	quota     map[string]int                 // path -> calls left before 45009
	failNext  map[string][]int               // path -> errcodes for the next calls
	generated map[string]int                 // appid -> followers SetFollowerCount made
	unionIDs  bool                           // Config.UnionIDs
}

// registerUsers adds the user-management handlers to mux.
func registerUsers(s *Server, mux *http.ServeMux) *users {
	u := &users{
		order: map[string][]string{}, byID: map[string]map[string]FakeUser{}, tags: map[string]map[int]string{},
		calls: map[string]int{}, quota: map[string]int{}, failNext: map[string][]int{}, generated: map[string]int{},
		unionIDs: s.cfg.UnionIDs,
	}
	mux.HandleFunc(PathUserGet, s.handleUserGet)
	mux.HandleFunc(PathUserBatchGet, s.handleUserBatchGet)
	mux.HandleFunc(PathTagsGet, s.handleTagsGet)
	return u
}

// AddFollowers appends followers to appid's list (a user already there is
// replaced in place).
func (s *Server) AddFollowers(appid string, fs ...FakeUser) {
	u := s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byID[appid] == nil {
		u.byID[appid] = map[string]FakeUser{}
	}
	for _, f := range fs {
		if _, ok := u.byID[appid][f.OpenID]; !ok {
			u.order[appid] = append(u.order[appid], f.OpenID)
		}
		u.byID[appid][f.OpenID] = f
	}
}

// SetFollowerCount gives appid n more followers made by GeneratedFollower
// (numbered on from the ones it made before) and the GeneratedTags.
func (s *Server) SetFollowerCount(appid string, n int) {
	u := s.users
	u.mu.Lock()
	from := u.generated[appid]
	u.generated[appid] = from + n
	u.mu.Unlock()
	fs := make([]FakeUser, n)
	for i := range fs {
		fs[i] = GeneratedFollower(appid, from+i)
	}
	s.AddFollowers(appid, fs...)
	for id, name := range GeneratedTags {
		s.SetTag(appid, id, name)
	}
}

// SetTag names a tag of appid.
func (s *Server) SetTag(appid string, id int, name string) {
	u := s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.tags[appid] == nil {
		u.tags[appid] = map[int]string{}
	}
	u.tags[appid][id] = name
}

// RemoveFollowers makes these openids stop following appid: they leave the
// list, and user info answers subscribe 0 for them.
func (s *Server) RemoveFollowers(appid string, openids ...string) {
	u := s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, id := range openids {
		delete(u.byID[appid], id)
	}
	u.order[appid] = slices.DeleteFunc(u.order[appid], func(id string) bool { return slices.Contains(openids, id) })
}

// Calls returns how many requests reached path (one of the Path
// constants), whatever they were answered.
func (s *Server) Calls(path string) int {
	u := s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[path]
}

// SetDailyQuota lets n more calls to path succeed; the ones after answer
// 45009 (the daily quota is spent) until SetDailyQuota(path, -1) lifts it.
func (s *Server) SetDailyQuota(path string, n int) {
	u := s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	if n < 0 {
		delete(u.quota, path)
		return
	}
	u.quota[path] = n
}

// FailNext makes the next n calls to path answer errcode (45011 for the
// minute quota, -1 for "system busy", ...), after the token check.
func (s *Server) FailNext(path string, errcode, n int) {
	u := s.users
	u.mu.Lock()
	defer u.mu.Unlock()
	for range n {
		u.failNext[path] = append(u.failNext[path], errcode)
	}
}

// userCall counts a request to path, checks its token and the injected
// errors, and returns the token's appid, or writes the error answer and
// returns ok == false.
func (s *Server) userCall(w http.ResponseWriter, r *http.Request, path, method string) (appid string, ok bool) {
	u := s.users
	u.mu.Lock()
	u.calls[path]++
	u.mu.Unlock()
	if r.Method != method {
		if method == http.MethodGet {
			writeErr(w, 43001)
		} else {
			writeErr(w, 43002)
		}
		return "", false
	}
	info, ok := s.tokenOf(w, r)
	if !ok {
		return "", false
	}
	u.mu.Lock()
	code := 0
	if q := u.failNext[path]; len(q) > 0 {
		code, u.failNext[path] = q[0], q[1:]
	} else if left, limited := u.quota[path]; limited {
		if left == 0 {
			code = 45009
		} else {
			u.quota[path] = left - 1
		}
	}
	u.mu.Unlock()
	if code != 0 {
		writeErr(w, code)
		return "", false
	}
	return info.appID, true
}

// userAnswer is a user as user/info and batchget answer it.
type userAnswer struct {
	Subscribe      int    `json:"subscribe"`
	OpenID         string `json:"openid"`
	Language       string `json:"language,omitempty"`
	SubscribeTime  int64  `json:"subscribe_time,omitempty"`
	UnionID        string `json:"unionid,omitempty"`
	Remark         string `json:"remark"`
	GroupID        int    `json:"groupid"`
	TagIDs         []int  `json:"tagid_list"`
	SubscribeScene string `json:"subscribe_scene,omitempty"`
	QRScene        int    `json:"qr_scene"`
	QRSceneStr     string `json:"qr_scene_str"`
}

// answerUser returns what WeChat answers about openid of appid.
func (u *users) answerUser(appid, openid string) userAnswer {
	f, ok := u.byID[appid][openid]
	if !ok && u.unionIDs {
		return userAnswer{Subscribe: 1, OpenID: openid, Language: "zh_CN", UnionID: "u" + openid, TagIDs: []int{}}
	}
	if !ok {
		return userAnswer{OpenID: openid, TagIDs: []int{}}
	}
	tags := f.TagIDs
	if tags == nil {
		tags = []int{}
	}
	return userAnswer{Subscribe: 1, OpenID: f.OpenID, Language: "zh_CN", SubscribeTime: f.SubscribeTime,
		UnionID: f.UnionID, Remark: f.Remark, TagIDs: tags, SubscribeScene: f.SubscribeScene,
		QRScene: f.QRScene, QRSceneStr: f.QRSceneStr}
}

func (s *Server) handleUserGet(w http.ResponseWriter, r *http.Request) {
	appid, ok := s.userCall(w, r, PathUserGet, http.MethodGet)
	if !ok {
		return
	}
	next := r.URL.Query().Get("next_openid")
	u := s.users
	u.mu.Lock()
	order := u.order[appid]
	start := 0
	if next != "" {
		i := slices.Index(order, next)
		if i < 0 {
			u.mu.Unlock()
			writeErr(w, 40003)
			return
		}
		start = i + 1
	}
	page := slices.Clone(order[min(start, len(order)):min(start+UserPageSize, len(order))])
	total := len(order)
	u.mu.Unlock()
	ans := map[string]any{"total": total, "count": len(page), "next_openid": ""}
	if len(page) > 0 {
		ans["data"] = map[string]any{"openid": page}
		ans["next_openid"] = page[len(page)-1]
	}
	writeJSON(w, ans)
}

func (s *Server) handleUserBatchGet(w http.ResponseWriter, r *http.Request) {
	appid, ok := s.userCall(w, r, PathUserBatchGet, http.MethodPost)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || len(body) == 0 {
		writeErr(w, 44002)
		return
	}
	var req struct {
		UserList []struct {
			OpenID string `json:"openid"`
			Lang   string `json:"lang"`
		} `json:"user_list"`
	}
	if json.Unmarshal(body, &req) != nil {
		writeErr(w, 47001)
		return
	}
	if len(req.UserList) == 0 || len(req.UserList) > 100 {
		writeJSON(w, map[string]any{"errcode": 40032, "errmsg": "invalid openid list size, at most 100 (" + strconv.Itoa(len(req.UserList)) + ")"})
		return
	}
	u := s.users
	u.mu.Lock()
	out := make([]userAnswer, 0, len(req.UserList))
	for _, it := range req.UserList {
		if it.OpenID == "" {
			u.mu.Unlock()
			writeErr(w, 40003)
			return
		}
		out = append(out, u.answerUser(appid, it.OpenID))
	}
	u.mu.Unlock()
	writeJSON(w, map[string]any{"user_info_list": out})
}

func (s *Server) handleTagsGet(w http.ResponseWriter, r *http.Request) {
	appid, ok := s.userCall(w, r, PathTagsGet, http.MethodGet)
	if !ok {
		return
	}
	u := s.users
	u.mu.Lock()
	type tag struct {
		ID    int    `json:"id"`
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	tags := []tag{}
	for id, name := range u.tags[appid] {
		n := 0
		for _, f := range u.byID[appid] {
			if slices.Contains(f.TagIDs, id) {
				n++
			}
		}
		tags = append(tags, tag{ID: id, Name: name, Count: n})
	}
	u.mu.Unlock()
	slices.SortFunc(tags, func(a, b tag) int { return a.ID - b.ID })
	writeJSON(w, map[string]any{"tags": tags})
}
