package handler

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels/email"
	"github.com/wejourney/wejourney/model"
)

// recordingStore keeps the events it is given, or fails with err.
type recordingStore struct {
	mu  sync.Mutex
	evs []*model.Event
	err error
}

func (s *recordingStore) Ingest(_ context.Context, evs ...*model.Event) (int, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, 0, s.err
	}
	for _, ev := range evs {
		ev.ID = int64(len(s.evs) + 1)
		s.evs = append(s.evs, ev)
	}
	return len(evs), 0, nil
}

func newTrackRouter(t *testing.T, store EventStore, tokens EmailTokens) (http.Handler, *gorm.DB) {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	return New(Config{DB: db, Ingestor: store, Accounts: model.NewAccounts(db, nil), EmailTokens: tokens,
		Admin: NewAdmin(AdminConfig{DB: db, Secret: []byte("secret")})}), db
}

func serve(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// A member is named by the delivery's address when it is theirs, and by
// their own identity when the address belongs to another member.
func TestEmailTrackingNamesTheMember(t *testing.T) {
	t.Parallel()
	tokens, _ := email.NewTokens([]byte("k"))
	store := &recordingStore{}
	h, db := newTrackRouter(t, store, tokens)
	db.Create(&model.MemberIdentity{Kind: model.IdentityEmail, Value: "a@example.com", MemberID: 1})
	db.Create(&model.Delivery{ID: 10, StepVisitID: 1, Channel: "email", JourneyID: 3, MemberID: 1, To: "A@example.com", Status: "sent"})
	// Member 2 was sent to an address another member holds.
	db.Create(&model.MemberIdentity{Kind: model.IdentityOpenID, Value: "wx1/o_two", MemberID: 2})
	db.Create(&model.MemberIdentity{Kind: model.IdentityEmail, Value: "shared@example.com", MemberID: 9})
	db.Create(&model.Delivery{ID: 11, StepVisitID: 2, Channel: "email", JourneyID: 3, MemberID: 2, To: "shared@example.com", Status: "sent"})

	if w := serve(h, http.MethodGet, "/t/o/"+tokens.Sign(email.Claims{Kind: email.Open, DeliveryID: 10, MemberID: 1}), ""); w.Code != 200 || w.Header().Get("Content-Type") != "image/gif" {
		t.Fatalf("pixel: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if w := serve(h, http.MethodGet, "/t/c/"+tokens.Sign(email.Claims{Kind: email.Click, DeliveryID: 11, MemberID: 2, URL: "https://x.example/a"}), ""); w.Code != http.StatusFound {
		t.Fatalf("click: %d", w.Code)
	}
	if len(store.evs) != 2 {
		t.Fatalf("%d events; want 2", len(store.evs))
	}
	if got := store.evs[0].Member; got != (model.MemberRef{Email: "A@example.com"}) || store.evs[0].DedupeKey != "email:o:10" ||
		store.evs[0].Props["journey_id"] != int64(3) {
		t.Errorf("open event: %+v %q %v", got, store.evs[0].DedupeKey, store.evs[0].Props)
	}
	if got := store.evs[1].Member; got != (model.MemberRef{AppID: "wx1", OpenID: "o_two"}) || store.evs[1].Props["url"] != "https://x.example/a" {
		t.Errorf("click event: %+v %v", got, store.evs[1].Props)
	}
	// A token of a delivery and member both unknown: the link still works,
	// nothing is recorded, and unsubscribing answers 404.
	if w := serve(h, http.MethodGet, "/t/c/"+tokens.Sign(email.Claims{Kind: email.Click, DeliveryID: 99, MemberID: 99, URL: "https://x.example/b"}), ""); w.Code != http.StatusFound {
		t.Errorf("click of an unknown delivery: %d", w.Code)
	}
	if w := serve(h, http.MethodPost, "/u/"+tokens.Sign(email.Claims{Kind: email.Unsubscribe, DeliveryID: 99, MemberID: 99}), "List-Unsubscribe=One-Click"); w.Code != http.StatusNotFound {
		t.Errorf("unsubscribe of an unknown delivery: %d", w.Code)
	}
}

// When events cannot be stored, the pixel and the link still answer; an
// unsubscribe answers 503 so that it is tried again.
func TestEmailTrackingStoreFailure(t *testing.T) {
	t.Parallel()
	tokens, _ := email.NewTokens([]byte("k"))
	h, db := newTrackRouter(t, &recordingStore{err: errors.New("database is locked")}, tokens)
	db.Create(&model.Delivery{ID: 10, StepVisitID: 1, Channel: "email", MemberID: 1, To: "a@example.com", Status: "sent"})
	cl := email.Claims{DeliveryID: 10, MemberID: 1}
	sign := func(k email.Kind, u string) string { c := cl; c.Kind, c.URL = k, u; return tokens.Sign(c) }
	if w := serve(h, http.MethodGet, "/t/o/"+sign(email.Open, ""), ""); w.Code != 200 {
		t.Errorf("pixel: %d", w.Code)
	}
	if w := serve(h, http.MethodGet, "/t/c/"+sign(email.Click, "https://x.example/"), ""); w.Code != http.StatusFound || w.Header().Get("Location") != "https://x.example/" {
		t.Errorf("click: %d %q", w.Code, w.Header().Get("Location"))
	}
	if w := serve(h, http.MethodPost, "/u/"+sign(email.Unsubscribe, ""), "List-Unsubscribe=One-Click"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("one-click: %d; want 503", w.Code)
	}
	if w := serve(h, http.MethodPost, "/u/"+sign(email.Unsubscribe, ""), "confirm=1"); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "try again") {
		t.Errorf("form: %d %s", w.Code, w.Body.String())
	}
	if w := serve(h, http.MethodGet, "/u/"+sign(email.Unsubscribe, ""), ""); w.Code != 200 || !strings.Contains(w.Body.String(), "a***@example.com") {
		t.Errorf("page: %d %s", w.Code, w.Body.String())
	}
}

// Without email tokens configured, and for tokens of another kind, the
// routes answer 404.
func TestEmailTrackingBadTokens(t *testing.T) {
	t.Parallel()
	tokens, _ := email.NewTokens([]byte("k"))
	other, _ := email.NewTokens([]byte("other"))
	h, _ := newTrackRouter(t, &recordingStore{}, tokens)
	off, _ := newTrackRouter(t, &recordingStore{}, nil)
	open := tokens.Sign(email.Claims{Kind: email.Open, DeliveryID: 1, MemberID: 1})
	for _, c := range []struct {
		h            http.Handler
		method, path string
	}{
		{off, http.MethodGet, "/t/o/" + open},
		{h, http.MethodGet, "/t/c/" + open},
		{h, http.MethodGet, "/u/" + open},
		{h, http.MethodPost, "/u/" + open},
		{h, http.MethodGet, "/t/o/" + other.Sign(email.Claims{Kind: email.Open, DeliveryID: 1, MemberID: 1})},
		{h, http.MethodGet, "/t/o/" + strings.Repeat("x", email.MaxToken+10)},
		{h, http.MethodGet, "/t/c/%00%ff"},
	} {
		if w := serve(c.h, c.method, c.path, ""); w.Code != http.StatusNotFound {
			t.Errorf("%s %.40s: %d; want 404", c.method, c.path, w.Code)
		}
	}
}

// A test email (a test send, a test run sending to a tester) has no
// delivery: its links carry a negative id of their own, and its
// unsubscribe names the member by their identity, once per test email.
func TestEmailTrackingTestSend(t *testing.T) {
	t.Parallel()
	tokens, _ := email.NewTokens([]byte("k"))
	store := &recordingStore{}
	h, db := newTrackRouter(t, store, tokens)
	db.Create(&model.MemberIdentity{MemberID: 1, Kind: model.IdentityEmail, Value: "tester@example.com"})
	for _, id := range []int64{-11, -12} {
		tok := tokens.Sign(email.Claims{Kind: email.Unsubscribe, DeliveryID: id, MemberID: 1})
		if w := serve(h, http.MethodPost, "/u/"+tok, "List-Unsubscribe=One-Click"); w.Code != http.StatusOK {
			t.Fatalf("one-click unsubscribe of test email %d: %d %s", id, w.Code, w.Body)
		}
	}
	if len(store.evs) != 2 || store.evs[0].DedupeKey == store.evs[1].DedupeKey || store.evs[1].Member.Email != "tester@example.com" ||
		store.evs[1].Props["journey_id"] != nil {
		t.Fatalf("events %+v: want two unsubscribes of the tester, each its own, of no journey", store.evs)
	}
}
