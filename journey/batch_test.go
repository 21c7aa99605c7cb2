package journey_test

import (
	"fmt"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// batchWelcome welcomes a follower, waits, then sends a second message;
// an unfollow ends it.
const batchWelcome = `key: batch-welcome
name: batch
trigger: { event: wechat.subscribe }
exit:
  - event: wechat.unsubscribe
steps:
  - id: hello
    send: { channel: wechat.text, text: "hi {{ .event.scene }}" }
    next: pause
  - id: pause
    wait: 1h
    next: again
  - id: again
    send: { channel: wechat.text, text: "again" }
`

// batchBundle is an engine with a recording sender and an ingestor on a
// fresh database of one dialect.
type batchBundle struct {
	db  *gorm.DB
	e   *journey.Engine
	ing *journey.Ingestor
	rec *sendRecorder
}

func setupBatch(t *testing.T, dialect string) *batchBundle {
	t.Helper()
	db := openTestDB(t, dialect)
	logger := testLogger(t)
	b := &batchBundle{db: db, rec: &sendRecorder{}}
	b.ing = journey.NewIngestor(journey.IngestorConfig{DB: db, Logger: logger})
	t.Cleanup(b.ing.Close)
	q, insp := newTestQueue(t)
	b.e = journey.New(journey.Config{DB: db, Queue: q, Inspector: insp, Senders: b.rec.sender(), Logger: logger, BaseContext: t.Context()})
	c, err := b.e.Parse("batch.yaml", []byte(batchWelcome))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.e.Publish(t.Context(), c, "test"); err != nil {
		t.Fatal(err)
	}
	return b
}

// store ingests events (one group commit) and returns their ids.
func (b *batchBundle) store(t *testing.T, evs ...*model.Event) []int64 {
	t.Helper()
	if _, _, err := b.ing.Ingest(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

// perMember counts the recorded messages by openid and text.
func (b *batchBundle) perMember() map[string]int {
	n := map[string]int{}
	for _, m := range b.rec.messages() {
		n[m.To.OpenID+" "+m.Text]++
	}
	return n
}

// A group commit of 100 follows is routed as batches: every member is
// created once with its identity, each event names its own member, and each
// follower gets exactly one welcome and waits for the next step.
func TestRouteBatchWelcomesEveryFollowerOnce(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			b := setupBatch(t, dialect)
			var evs []*model.Event
			for i := range 100 {
				evs = append(evs, withKey(wechatEvent("wechat.subscribe", fmt.Sprintf("o%d", i), map[string]any{"scene": "store"}), fmt.Sprint("s", i)))
			}
			if err := b.e.Route(t.Context(), b.store(t, evs...)...); err != nil {
				t.Fatalf("Route: %v", err)
			}
			got := b.perMember()
			for i := range 100 {
				if n := got[fmt.Sprintf("o%d hi store", i)]; n != 1 {
					t.Errorf("o%d got the welcome %d times; want once", i, n)
				}
			}
			if len(got) != 100 {
				t.Errorf("%d distinct messages; want the 100 welcomes only: %v", len(got), got)
			}
			var rows []struct {
				OpenID string
				Member int64
				Event  *int64
			}
			if err := b.db.Table("members").Select("members.open_id AS open_id, members.id AS member, events.member_id AS event").
				Joins("JOIN member_identities ON member_identities.member_id = members.id").
				Joins("LEFT JOIN events ON events.member_id = members.id").Scan(&rows).Error; err != nil {
				t.Fatal(err)
			}
			if len(rows) != 100 {
				t.Errorf("%d member × identity × event rows; want 100 (one member, one identity, one event per follower)", len(rows))
			}
			var waiting, unrouted int64
			b.db.Model(&model.StepVisit{}).Where("step_id = ? AND status = ?", "pause", model.VisitWaiting).Count(&waiting)
			b.db.Model(&model.Event{}).Where("routed_at IS NULL OR member_id IS NULL").Count(&unrouted)
			if waiting != 100 || unrouted != 0 {
				t.Errorf("%d visits waiting at pause, %d events unrouted or without member; want 100, 0", waiting, unrouted)
			}
		})
	}
}

// Two workers routing the same events at once (a sweep re-enqueued them
// while their task ran) route each once: one member, one welcome each.
func TestRouteBatchTwiceAtOnce(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			b := setupBatch(t, dialect)
			var evs []*model.Event
			for i := range 80 {
				evs = append(evs, withKey(wechatEvent("wechat.subscribe", fmt.Sprintf("o%d", i), map[string]any{"scene": "x"}), fmt.Sprint("s", i)))
			}
			ids := b.store(t, evs...)
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := b.e.Route(t.Context(), ids...); err != nil {
						t.Errorf("Route: %v", err)
					}
				}()
			}
			wg.Wait()
			for k, n := range b.perMember() {
				if n != 1 {
					t.Errorf("%s: sent %d times; want once", k, n)
				}
			}
			if n := len(b.rec.messages()); n != 80 {
				t.Errorf("%d messages; want 80", n)
			}
			var members, enrollments int64
			b.db.Model(&model.Member{}).Count(&members)
			b.db.Model(&model.Enrollment{}).Count(&enrollments)
			if members != 80 || enrollments != 80 {
				t.Errorf("%d members, %d enrollments; want 80, 80", members, enrollments)
			}
		})
	}
}

// A batch routes a member's events in the order they were stored, with its
// earlier events another batch stored and has not routed yet: a follow and
// then an unfollow leave the member unsubscribed and out of the journey,
// never welcomed (the unfollow came before the welcome could go out).
func TestRouteBatchKeepsEachMembersOrder(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			b := setupBatch(t, dialect)
			b.store(t, withKey(wechatEvent("wechat.subscribe", "leaver", map[string]any{"scene": "x"}), "early"))
			var evs []*model.Event
			for i := range 10 {
				evs = append(evs, withKey(wechatEvent("wechat.subscribe", fmt.Sprintf("o%d", i), map[string]any{"scene": "x"}), fmt.Sprint("s", i)))
			}
			evs = append(evs, withKey(wechatEvent("wechat.unsubscribe", "leaver", nil), "late"))
			if err := b.e.Route(t.Context(), b.store(t, evs...)...); err != nil {
				t.Fatalf("Route: %v", err)
			}
			var m model.Member
			if err := b.db.Where("open_id = ?", "leaver").First(&m).Error; err != nil {
				t.Fatal(err)
			}
			var enr model.Enrollment
			if err := b.db.Where("member_id = ?", m.ID).First(&enr).Error; err != nil {
				t.Fatal(err)
			}
			if m.Subscribed || enr.Status != model.EnrollmentExited {
				t.Errorf("leaver: subscribed %v, enrollment %s; want false, exited (follow routed before unfollow)", m.Subscribed, enr.Status)
			}
			got := b.perMember()
			if got["leaver hi x"] != 0 || len(got) != 10 {
				t.Errorf("messages %v; want one welcome for each of o0…o9 and none for leaver", got)
			}
			var unrouted int64
			b.db.Model(&model.Event{}).Where("routed_at IS NULL").Count(&unrouted)
			if unrouted != 0 {
				t.Errorf("%d events unrouted; want 0 (the earlier follow is routed with the batch)", unrouted)
			}
		})
	}
}

// Members that overlap within a batch (one event names an openid and a
// unionid, another names only that unionid) are routed event by event, in
// order: they are one member.
func TestRouteBatchOverlappingMembersAreOne(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			b := setupBatch(t, dialect)
			both := withKey(wechatEvent("wechat.subscribe", "o-both", map[string]any{"scene": "x"}), "both")
			both.Member.UnionID = "u-1"
			only := withKey(&model.Event{Type: "order.paid", Source: "api", Member: model.MemberRef{UnionID: "u-1"}}, "only")
			other := withKey(wechatEvent("wechat.subscribe", "o-other", map[string]any{"scene": "x"}), "other")
			if err := b.e.Route(t.Context(), b.store(t, both, only, other)...); err != nil {
				t.Fatalf("Route: %v", err)
			}
			var members int64
			b.db.Model(&model.Member{}).Count(&members)
			var ids []int64
			b.db.Model(&model.Event{}).Distinct("member_id").Where("dedupe_key IN ?", []string{"both", "only"}).Pluck("member_id", &ids)
			if members != 2 || len(ids) != 1 {
				t.Errorf("%d members, the unionid's events on %d members; want 2 members, the two events on one", members, len(ids))
			}
		})
	}
}

// Step tasks that arrive together run as one batch, each visit once even
// when its task is delivered twice: every member gets the step's message
// once and moves on.
func TestStepTasksTogetherRunOnce(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			b := setupBatch(t, dialect)
			var evs []*model.Event
			for i := range 50 {
				evs = append(evs, withKey(wechatEvent("wechat.subscribe", fmt.Sprintf("o%d", i), map[string]any{"scene": "x"}), fmt.Sprint("s", i)))
			}
			if err := b.e.Route(t.Context(), b.store(t, evs...)...); err != nil {
				t.Fatal(err)
			}
			// The wait is over: move the due times back instead of the clock.
			if err := b.db.Model(&model.StepVisit{}).Where("step_id = ?", "pause").
				Update("due_at", gorm.Expr("created_at")).Error; err != nil {
				t.Fatal(err)
			}
			var ids []int64
			b.db.Model(&model.StepVisit{}).Where("step_id = ?", "pause").Pluck("id", &ids)
			var wg sync.WaitGroup
			for _, id := range append(ids, ids...) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := b.e.RunStep(t.Context(), id); err != nil {
						t.Errorf("RunStep(%d): %v", id, err)
					}
				}()
			}
			wg.Wait()
			got := b.perMember()
			for i := range 50 {
				if n := got[fmt.Sprintf("o%d again", i)]; n != 1 {
					t.Errorf("o%d got the second message %d times; want once", i, n)
				}
			}
			var completed int64
			b.db.Model(&model.Enrollment{}).Where("status = ?", model.EnrollmentCompleted).Count(&completed)
			if completed != 50 {
				t.Errorf("%d enrollments completed; want 50", completed)
			}
		})
	}
}

// A member who follows twice within one batch enters the journey once and
// is welcomed once: the second follow finds the first's entry active.
func TestRouteBatchTwoFollowsOneEntry(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			b := setupBatch(t, dialect)
			evs := []*model.Event{
				withKey(wechatEvent("wechat.subscribe", "twice", map[string]any{"scene": "a"}), "t1"),
				withKey(wechatEvent("wechat.subscribe", "other", map[string]any{"scene": "a"}), "o1"),
				withKey(wechatEvent("wechat.subscribe", "twice", map[string]any{"scene": "b"}), "t2"),
			}
			if err := b.e.Route(t.Context(), b.store(t, evs...)...); err != nil {
				t.Fatalf("Route: %v", err)
			}
			var enrollments int64
			b.db.Model(&model.Enrollment{}).Joins("JOIN members ON members.id = enrollments.member_id").
				Where("members.open_id = ?", "twice").Count(&enrollments)
			got := b.perMember()
			if enrollments != 1 || got["twice hi a"] != 1 || got["twice hi b"] != 0 || got["other hi a"] != 1 {
				t.Errorf("twice: %d enrollments, messages %v; want 1 enrollment and one welcome each (scene a: the first follow)", enrollments, got)
			}
		})
	}
}

// A new member's first two events, routed by two tasks at once (each
// alone: the single-event path), make one member: the transaction that
// finds the other just added the member's identity runs again and finds it
// (on MySQL and MariaDB, whose repeatable-read snapshot hides the other's
// commit, it used to make a second member without identities).
func TestFirstEventsSideBySideMakeOneMember(t *testing.T) {
	t.Parallel()
	for _, dialect := range ingestDialects {
		t.Run(dialect, func(t *testing.T) {
			b := setupBatch(t, dialect)
			const n = 30
			for i := range n {
				openid := fmt.Sprintf("race%d", i)
				ids := b.store(t,
					withKey(wechatEvent("wechat.subscribe", openid, map[string]any{"scene": "store"}), "s-"+openid),
					withKey(wechatEvent("wechat.scan", openid, map[string]any{"scene": "poster"}), "p-"+openid))
				var wg sync.WaitGroup
				for _, id := range ids {
					wg.Go(func() {
						if err := b.e.Route(t.Context(), id); err != nil {
							t.Errorf("Route(%d): %v", id, err)
						}
					})
				}
				wg.Wait()
			}
			var members, orphans int64
			b.db.Model(&model.Member{}).Count(&members)
			b.db.Model(&model.Member{}).Where("id NOT IN (SELECT member_id FROM member_identities)").Count(&orphans)
			if members != n || orphans != 0 {
				t.Errorf("%d members (%d without identities) for %d new followers; want %d, none without", members, orphans, n, n)
			}
			var stale int64
			b.db.Model(&model.Member{}).Where("last_scene <> ?", "poster").Count(&stale)
			if stale != 0 {
				t.Errorf("%d members whose last scene is not the scan's (poster): a member's events applied out of order", stale)
			}
		})
	}
}
