package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// TestLongMenuViewAmongFollows: follows arriving at about 300/s, with a
// menu view whose URL is 300 characters long every 30th callback. The long
// URL makes a dedupe key longer than its column; it must neither fail its
// own callback nor the follows committed with it.
func TestLongMenuViewAmongFollows(t *testing.T) {
	parallel(t)
	h := newHarness(t, testJourneys)
	const (
		callbacks = 450
		rate      = 300 // per second
	)
	longURL := "https://shop.example.com/landing?utm=" + strings.Repeat("a", 300-len("https://shop.example.com/landing?utm="))
	if len(longURL) != 300 {
		t.Fatalf("url of %d characters", len(longURL))
	}
	type sent struct {
		ev     wxsim.Event
		status int
		body   string
		err    error
	}
	results := make([]sent, callbacks)
	var followers []string
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	start := time.Now()
	for i := range callbacks {
		<-tick.C
		ev := wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: fmt.Sprintf("o_lk_%04d", i), Scene: fmt.Sprintf("event_%d", i)}
		if i%30 == 29 {
			ev = wxsim.Event{Kind: wxsim.KindView, OpenID: fmt.Sprintf("o_view_%04d", i), URL: longURL}
		} else {
			followers = append(followers, ev.OpenID)
		}
		results[i].ev = ev
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // WeChat's patience
			defer cancel()
			results[i].status, results[i].body, results[i].err = h.safe.Send(ctx, ev)
		}()
	}
	wg.Wait()
	t.Logf("%d callbacks sent in %v", callbacks, time.Since(start))
	for _, r := range results {
		if r.err != nil || r.status != 200 {
			t.Errorf("%s from %s: status %d %q, %v; want 200", r.ev.Kind, r.ev.OpenID, r.status, r.body, r.err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if n := h.count(&model.Event{}, "1 = 1"); n != callbacks {
		t.Fatalf("%d events stored after every callback was answered; want %d", n, callbacks)
	}
	h.eventually("every event routed", 60*time.Second, func() bool {
		return h.count(&model.Event{}, "routed_at IS NULL") == 0
	})
	if n := h.count(&model.Event{}, "error <> '' OR member_id IS NULL"); n != 0 {
		t.Errorf("%d events failed to route", n)
	}
	var views []model.Event
	if err := h.db.Where("type = ?", "wechat.menu_view").Find(&views).Error; err != nil {
		t.Fatal(err)
	}
	if len(views) != callbacks/30 {
		t.Errorf("%d menu views stored; want %d", len(views), callbacks/30)
	}
	for _, v := range views {
		if v.Props["url"] != longURL {
			t.Errorf("view %d stored url %v; want the whole 300-character url", v.ID, v.Props["url"])
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := h.fake.Wait(ctx, func(all []fakewx.Message) bool {
		got := map[string]bool{}
		for _, m := range all {
			got[m.ToUser] = true
		}
		for _, o := range followers {
			if !got[o] {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("waiting for every follower's welcome: %v", err)
	}
	// Routing and runs are done (every event routed, every welcome sent):
	// anything doubled would be there now.
	h.eventually("no step left running", 10*time.Second, func() bool {
		return h.count(&model.StepVisit{}, "status IN ?", []string{model.VisitRunning, model.VisitScheduled}) == 0
	})
	for _, o := range followers {
		if msgs := h.fake.MessagesTo(o); len(msgs) != 1 {
			t.Errorf("%s got %d messages; want one welcome", o, len(msgs))
		}
	}
}
