package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// The fault suite's traffic and timings. WeChat's own retry timings (5 s
// timeout, 5 s delay, 3 retries) are wxsim's defaults and are not shortened.
const (
	faultRate      = 12               // follows per second, each from a new member
	faultFollowFor = 20 * time.Second // how long follows flow
	faultOutageAt  = 5 * time.Second  // when the fault starts, after the first follow
	faultOutage    = 8 * time.Second  // how long the database or Redis stays away
	faultKillDown  = 3 * time.Second  // how long a killed serve stays dead before the restart
	faultWait      = 3 * time.Second  // the journey's wait between welcome and follow-up
	faultRecovery  = 10 * time.Second // overdue work must be done this long after recovery
	faultBacklog   = 45 * time.Second // bound on waiting for the backlog after the last follow
	faultWelcome   = "欢迎关注"
	faultFollowUp  = "三秒后的问候"
)

// faultJourney answers a follow with a welcome, waits, and follows up.
var faultJourney = `
key: fault-welcome
trigger: { event: wechat.subscribe }
entry: { once: true }
steps:
  - id: hello
    send: { channel: wechat.text, text: "` + faultWelcome + `" }
    next: pause
  - id: pause
    wait: 3s
    next: later
  - id: later
    send: { channel: wechat.text, text: "` + faultFollowUp + `" }
`

// faultMode is a callback mode: the account is configured with the AES key
// in safe mode and without one in plaintext mode, so WeChat sends what the
// account asks for.
type faultMode struct {
	name   string
	aesKey string
}

var faultModes = []faultMode{{"plaintext", ""}, {"safe", testAESKey}}

// faultTarget is a running wejourney under test.
type faultTarget struct {
	base string         // where WeChat sends callbacks: http://host:port
	fake *fakewx.Server // WeChat's API, as wejourney sees it
	db   *gorm.DB       // a direct connection (never through a proxy), for the assertions
}

// faultJourneysDir writes the fault journey into a fresh directory.
func faultJourneysDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fault.yaml"), []byte(faultJourney), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// faultLogger discards wejourney's log unless WEJOURNEY_FAULT_LOG is set: an
// outage logs a line per failed callback.
func faultLogger() *slog.Logger {
	if os.Getenv("WEJOURNEY_FAULT_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// openDirect opens the database at rawURL for the test's own queries.
func openDirect(t *testing.T, rawURL string) *gorm.DB {
	t.Helper()
	dialect, dsn, err := config.ParseDatabaseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	db, err := model.Open(dialect, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dialect, err)
	}
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	return db
}

// hostPort returns u's host:port, with the scheme's default port when none
// is given.
func hostPort(u *url.URL, defaultPort string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), defaultPort)
}

// startFaultApp runs wejourney in this process (all roles, the production
// sweep interval) on databaseURL and redisURL, which may lead through a
// faultproxy; directURL is the same database without the proxy.
func startFaultApp(t *testing.T, mode faultMode, databaseURL, redisURL, directURL string) faultTarget {
	t.Helper()
	fake := fakewx.New(fakewx.Config{})
	t.Cleanup(fake.Close)
	cfg := config.Defaults()
	cfg.DatabaseURL = databaseURL
	cfg.RedisURL = redisURL
	cfg.JourneysDir = faultJourneysDir(t)
	cfg.WeChatAppID, cfg.WeChatAppSecret, cfg.WeChatToken, cfg.WeChatAESKey = testAppID, "test-secret", testToken, mode.aesKey
	cfg.WeChatAPIBase = fake.URL
	cfg.AdminPassword = "admin-pass"
	cfg.SecretKey = testSecretKey
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app, err := NewApp(ctx, cfg, Options{Listener: ln, Logger: faultLogger(), AutoMigrate: true})
	if err != nil {
		t.Fatalf("NewApp: %v", err)
	}
	t.Cleanup(app.Close)
	if err := app.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return faultTarget{base: "http://" + app.Addr, fake: fake, db: openDirect(t, directURL)}
}

// runFaultScenario sends follows from new members through a WeChat-like
// retrying sender for faultFollowFor; faultOutageAt after the first it calls
// outage, which breaks something, repairs it and returns when it was
// repaired. Then it waits for the backlog and checks that nothing answered
// 200 was lost, every follow got in, every member got the welcome and the
// follow-up once each, and overdue work ran within faultRecovery of the
// repair.
//
// killed says the outage killed the process (see checkFaultOutcome).
func runFaultScenario(t *testing.T, tg faultTarget, mode faultMode, killed bool, outage func() time.Time) {
	t.Helper()
	sim, err := wxsim.New(wxsim.Config{Target: tg.base, AppID: testAppID, Token: testToken, AESKey: mode.aesKey})
	if err != nil {
		t.Fatal(err)
	}
	sender := sim.Retrier(wxsim.RetryConfig{}) // WeChat's timings, not shortened
	cfg := sender.Config()
	chain := time.Duration(cfg.Retries+1)*cfg.Timeout + time.Duration(cfg.Retries)*cfg.Delay
	ctx, cancel := context.WithTimeout(context.Background(), faultFollowFor+chain+5*time.Second)
	defer cancel()

	var (
		mu         sync.Mutex
		deliveries []wxsim.Delivery
		wg         sync.WaitGroup
	)
	start := time.Now()
	flowDone := make(chan struct{})
	go func() { // the follows, paced by a ticker, for a bounded time
		defer close(flowDone)
		tick := time.NewTicker(time.Second / faultRate)
		defer tick.Stop()
		for i := 0; time.Since(start) < faultFollowFor; i++ {
			ev := wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: fmt.Sprintf("o_fault_%s_%04d", mode.name, i), Scene: "store_fault"}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := sender.Deliver(ctx, ev)
				if err != nil {
					t.Errorf("building the follow of %s: %v", ev.OpenID, err)
					return
				}
				mu.Lock()
				deliveries = append(deliveries, d)
				mu.Unlock()
			}()
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()

	<-time.After(time.Until(start.Add(faultOutageAt)))
	down := time.Now()
	recovered := outage()
	t.Logf("fault from +%.1fs to +%.1fs (%.1fs)", down.Sub(start).Seconds(), recovered.Sub(start).Seconds(), recovered.Sub(down).Seconds())
	<-flowDone
	wg.Wait()
	t.Logf("%d follows sent, the last retry ended at +%.1fs", len(deliveries), time.Since(start).Seconds())

	// The backlog: wait until the database has no open work left (every
	// stored event routed, every step visit finished); a message is sent
	// before its visit finishes, so what fakewx holds then is final.
	deadline := time.Now().Add(faultBacklog)
	for {
		n := openWork(t, tg.db)
		if n == 0 {
			t.Logf("backlog done at +%.1fs", time.Since(start).Seconds())
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the backlog was not done %v after the last follow: %d events unrouted or step visits open", faultBacklog, n)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stored := storedFollows(t, tg.db)
	checkFaultOutcome(t, tg, deliveries, stored, recovered, killed)
}

// storedFollows counts the stored wechat.subscribe events per openid.
func storedFollows(t *testing.T, db *gorm.DB) map[string]int {
	t.Helper()
	var evs []model.Event
	if err := db.Select("id", "member").Where("type = ?", "wechat.subscribe").Find(&evs).Error; err != nil {
		t.Fatalf("reading stored follows: %v", err)
	}
	out := map[string]int{}
	for _, ev := range evs {
		out[ev.Member.OpenID]++
	}
	return out
}

// openWork counts unrouted events and step visits not yet finished.
func openWork(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var events, visits int64
	if err := db.Model(&model.Event{}).Where("routed_at IS NULL").Count(&events).Error; err != nil {
		t.Fatalf("counting unrouted events: %v", err)
	}
	if err := db.Model(&model.StepVisit{}).Where("status IN ?", []string{model.VisitScheduled, model.VisitWaiting, model.VisitRunning}).
		Count(&visits).Error; err != nil {
		t.Fatalf("counting open visits: %v", err)
	}
	return events + visits
}

// problems collects one kind of failure: how many members, a few examples.
type problems struct {
	what     string
	n        int
	examples []string
}

func (p *problems) add(format string, args ...any) {
	p.n++
	if len(p.examples) < 5 {
		p.examples = append(p.examples, fmt.Sprintf(format, args...))
	}
}

func (p *problems) report(t *testing.T, of int) {
	t.Helper()
	if p.n > 0 {
		t.Errorf("%d of %d members: %s; e.g.\n\t%s", p.n, of, p.what, strings.Join(p.examples, "\n\t"))
	}
}

// checkFaultOutcome asserts what a member and an operator would notice.
//
// inFlightMayBeLost is set when the process was killed: a message whose send
// was cut short by the kill is recorded "unknown" and not sent again (at most
// one message per step visit), so a missing message with that record is
// logged, not failed.
func checkFaultOutcome(t *testing.T, tg faultTarget, deliveries []wxsim.Delivery, stored map[string]int, recovered time.Time, inFlightMayBeLost bool) {
	t.Helper()
	inFlight := problems{what: "a message was cut short by the kill and is recorded \"unknown\" (never re-sent)"}
	sort.Slice(deliveries, func(i, j int) bool { return deliveries[i].Event.OpenID < deliveries[j].Event.OpenID })
	var (
		lost      = problems{what: "answered 200 but the follow was never stored (lost)"}
		gaveUp    = problems{what: "WeChat gave up after 4 attempts (or the test's deadline ended the retries)"}
		notIn     = problems{what: "the follow is not stored although WeChat's retries went on"}
		doubled   = problems{what: "the follow is stored more than once"}
		welcome   = problems{what: "did not get the welcome exactly once"}
		followUp  = problems{what: "did not get the follow-up exactly once"}
		other     = problems{what: "got a message the journey does not send"}
		early     = problems{what: "the follow-up came before the wait ended"}
		lateHello = problems{what: fmt.Sprintf("the welcome came more than %v after the follow was stored and the fault was over", faultRecovery)}
		lateWait  = problems{what: fmt.Sprintf("the follow-up came more than %v after its wait ended and the fault was over", faultRecovery)}
	)
	attempts := map[int]int{}
	answers := map[string]int{}
	var worstWait, worstHello time.Duration
	for _, d := range deliveries {
		openid := d.Event.OpenID
		attempts[len(d.Attempts)]++
		var trail []string
		for _, a := range d.Attempts {
			s := "no answer"
			if a.Err == nil {
				s = fmt.Sprintf("%d %q", a.Status, a.Body)
			}
			answers[s]++
			trail = append(trail, s)
		}
		n := stored[openid]
		switch {
		case d.Acknowledged() && n == 0:
			lost.add("%s: %s", openid, strings.Join(trail, ", "))
		case !d.Acknowledged():
			gaveUp.add("%s: %s after %s", openid, d.Outcome, strings.Join(trail, ", "))
			if n == 0 {
				notIn.add("%s", openid)
			}
		}
		if n > 1 {
			doubled.add("%s: %d events", openid, n)
		}
		if n == 0 {
			continue // nothing was stored, so nothing is owed to this member
		}
		var hello, later []fakewx.Message
		for _, m := range tg.fake.MessagesTo(openid) {
			switch m.Text {
			case faultWelcome:
				hello = append(hello, m)
			case faultFollowUp:
				later = append(later, m)
			default:
				other.add("%s: %q", openid, m.Text)
			}
		}
		for _, c := range []struct {
			step string
			got  []fakewx.Message
			p    *problems
		}{{"hello", hello, &welcome}, {"later", later, &followUp}} {
			switch {
			case len(c.got) == 0 && inFlightMayBeLost && deliveryStatus(t, tg.db, openid, c.step) == model.DeliveryUnknown:
				// The process died with the message handed to the channel
				// and not yet to WeChat: recorded "unknown", never re-sent
				// (at most one message per step visit).
				inFlight.add("%s: step %s", openid, c.step)
			case len(c.got) != 1:
				c.p.add("%s: %d messages from step %s; %s", openid, len(c.got), c.step, memberTrace(t, tg.db, openid))
			}
		}
		if len(hello) == 0 || len(later) == 0 {
			continue
		}
		ackedAt := d.AckedAt()
		if ackedAt.IsZero() {
			ackedAt = d.Attempts[len(d.Attempts)-1].End
		}
		if late := hello[0].At.Sub(latest(ackedAt, recovered)); late > worstHello {
			worstHello = late
		}
		if due := latest(ackedAt, recovered).Add(faultRecovery); hello[0].At.After(due) {
			lateHello.add("%s: welcome %.1fs after the follow was stored and the fault was over", openid, hello[0].At.Sub(latest(ackedAt, recovered)).Seconds())
		}
		waitEnd := hello[0].At.Add(faultWait)
		if later[0].At.Before(waitEnd.Add(-250 * time.Millisecond)) {
			early.add("%s: follow-up %v after the welcome", openid, later[0].At.Sub(hello[0].At))
		}
		owed := latest(waitEnd, recovered)
		if late := later[0].At.Sub(owed); late > worstWait {
			worstWait = late
		}
		if later[0].At.After(owed.Add(faultRecovery)) {
			lateWait.add("%s: follow-up %.1fs after its wait ended and the fault was over (wait ended %+.1fs from recovery)",
				openid, later[0].At.Sub(owed).Seconds(), waitEnd.Sub(recovered).Seconds())
		}
	}
	t.Logf("attempts per follow: %v; answers: %v; stored follows %d; worst delay past max(stored, recovery) of a welcome %.1fs, past max(wait end, recovery) of a follow-up %.1fs",
		attempts, answers, len(stored), worstHello.Seconds(), worstWait.Seconds())
	if inFlight.n > 0 {
		t.Logf("%d of %d members: %s; e.g. %s", inFlight.n, len(deliveries), inFlight.what, strings.Join(inFlight.examples, "; "))
	}
	for _, p := range []*problems{&lost, &gaveUp, &notIn, &doubled, &welcome, &followUp, &other, &early, &lateHello, &lateWait} {
		p.report(t, len(deliveries))
	}
	if len(deliveries) < int(faultFollowFor.Seconds())*faultRate/2 {
		t.Errorf("only %d follows were sent in %v: the load generator fell behind", len(deliveries), faultFollowFor)
	}
}

// deliveryStatus returns the status of the delivery of openid's visit to
// step, or "" when there is none.
func deliveryStatus(t *testing.T, db *gorm.DB, openid, step string) string {
	t.Helper()
	var status []string
	if err := db.Model(&model.Delivery{}).
		Joins("JOIN step_visits ON step_visits.id = deliveries.step_visit_id").
		Joins("JOIN members ON members.id = deliveries.member_id").
		Where("members.open_id = ? AND step_visits.step_id = ?", openid, step).
		Pluck("deliveries.status", &status).Error; err != nil {
		t.Fatalf("reading deliveries: %v", err)
	}
	if len(status) != 1 {
		return ""
	}
	return status[0]
}

// memberTrace describes what the database says happened to a member: each
// step visit with its status, due time, lease and attempts, and each
// delivery's status.
func memberTrace(t *testing.T, db *gorm.DB, openid string) string {
	t.Helper()
	var m model.Member
	if err := db.Where("open_id = ?", openid).First(&m).Error; err != nil {
		return "no member row: " + err.Error()
	}
	var visits []model.StepVisit
	db.Where("member_id = ?", m.ID).Order("id").Find(&visits)
	var deliveries []model.Delivery
	db.Where("member_id = ?", m.ID).Order("id").Find(&deliveries)
	status := map[int64]string{}
	for _, d := range deliveries {
		status[d.StepVisitID] += " delivery " + d.Status
	}
	var b strings.Builder
	for _, v := range visits {
		fmt.Fprintf(&b, "[%s %s due %s attempts %d", v.StepID, v.Status, v.DueAt.Local().Format("15:04:05.000"), v.Attempts)
		if v.LeaseUntil != nil {
			fmt.Fprintf(&b, " lease until %s", v.LeaseUntil.Local().Format("15:04:05.000"))
		}
		if v.Outcome != "" {
			fmt.Fprintf(&b, " outcome %s", v.Outcome)
		}
		b.WriteString(status[v.ID] + "] ")
	}
	fmt.Fprintf(&b, "(checked %s)", time.Now().Format("15:04:05.000"))
	return b.String()
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
