package main

// The fault suite drives a running wejourney the way WeChat does — follows
// from new members, each callback retried like WeChat retries (no 200 within
// 5 s, a refused connection or another status: the same request again 5 s
// later, three times; any 200 ends it) — while the database, Redis or the
// process fail, and checks what members and operators would notice: nothing
// answered 200 is lost, WeChat's retries get every follow in, every member
// gets the welcome and the follow-up exactly once, and overdue follow-ups go
// out within 10 s of recovery. Each scenario runs in plaintext and in safe
// mode (AES).
//
// The database and Redis outages need real servers (WEJOURNEY_TEST_DATABASE_URL,
// WEJOURNEY_TEST_REDIS_URL, as .ci/run sets them) and skip without them; the
// kill -9 scenario (TestFaultKill, about 50 s of WeChat's real retry timing)
// runs on the embedded defaults too, but only when those variables are set,
// so a bare `go test ./...` stays fast; the quick kill test is
// TestKillDuringWaitSendsFollowUpOnce. Run only these with
//
//	go test -count=1 ./cmd/wejourney -run TestFault -v

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/faultproxy"
	"github.com/wejourney/wejourney/model"
)

// TestFaultDatabaseOutage puts a cuttable proxy between wejourney and its
// database and cuts it for 8 s while follows flow.
func TestFaultDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite: about a minute")
	}
	if os.Getenv(envTestDB) == "" {
		t.Skipf("database outage: needs a server database to cut; set %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable (.ci/run does)", envTestDB)
	}
	for _, mode := range faultModes {
		t.Run(mode.name, func(t *testing.T) {
			direct := testDatabaseURL(t)
			u, err := url.Parse(direct)
			if err != nil {
				t.Fatal(err)
			}
			port := "5432"
			if u.Scheme == "mysql" {
				port = "3306"
			}
			proxy, err := faultproxy.New(hostPort(u, port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })
			u.Host = proxy.Addr()
			tg := startFaultApp(t, mode, u.String(), testRedisURL(t), direct)
			runFaultScenario(t, tg, mode, false, func() time.Time {
				proxy.Cut()
				<-time.After(faultOutage)
				proxy.Restore()
				logProxy(t, proxy)
				return time.Now()
			})
		})
	}
}

// TestFaultRedisRestartedEmpty puts a cuttable proxy between wejourney and
// Redis, cuts it, empties the Redis database (a restart without
// persistence: every queued and delayed task is gone) and restores it 8 s
// later, while follows flow.
func TestFaultRedisRestartedEmpty(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite: about a minute")
	}
	if os.Getenv(envTestRedis) == "" {
		t.Skipf("Redis outage: needs a real Redis to cut; set %s=redis://127.0.0.1:6379/15 (.ci/run does)", envTestRedis)
	}
	for _, mode := range faultModes {
		t.Run(mode.name, func(t *testing.T) {
			raw := testRedisURL(t)
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			proxy, err := faultproxy.New(hostPort(u, "6379"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })
			u.Host = proxy.Addr()
			opt, err := redis.ParseURL(raw)
			if err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClient(opt) // straight to Redis, past the proxy
			t.Cleanup(func() { rdb.Close() })
			dbURL := testDatabaseURL(t)
			tg := startFaultApp(t, mode, dbURL, u.String(), dbURL)
			runFaultScenario(t, tg, mode, false, func() time.Time {
				proxy.Cut()
				cut := time.Now()
				if err := rdb.FlushDB(context.Background()).Err(); err != nil {
					t.Errorf("emptying Redis: %v", err)
				}
				<-time.After(time.Until(cut.Add(faultOutage)))
				proxy.Restore()
				logProxy(t, proxy)
				return time.Now()
			})
		})
	}
}

// waitRunningStep polls until some step visit is running (claimed by the
// worker) and returns how many are, or 0 after within.
func waitRunningStep(t *testing.T, db *gorm.DB, within time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var n int64
		if err := db.Model(&model.StepVisit{}).Where("status = ?", model.VisitRunning).Count(&n).Error; err != nil {
			t.Fatalf("counting running visits: %v", err)
		}
		if n > 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logProxy shows that the outage was real: connections were refused.
func logProxy(t *testing.T, p *faultproxy.Proxy) {
	t.Helper()
	fwd, refused := p.Stats()
	t.Logf("proxy to %s: %d connections forwarded, %d refused while cut", p.Target(), fwd, refused)
	if refused == 0 {
		t.Errorf("wejourney never tried to reach %s during the outage: the fault was not exercised", p.Target())
	}
}

// TestFaultKill runs the real binary, kills `wejourney serve` with SIGKILL
// while follows flow and restarts it on the same address, database and Redis
// a few seconds later.
func TestFaultKill(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite: builds and runs the binary")
	}
	if os.Getenv(envTestDB) == "" {
		t.Skipf("kill -9 fault scenario: about 50 s of WeChat's real retry timing, so it runs only with real servers configured; set %s (and %s), as .ci/run does", envTestDB, envTestRedis)
	}
	bin := buildBinary(t)
	for _, mode := range faultModes {
		t.Run(mode.name, func(t *testing.T) {
			fake := fakewx.New(fakewx.Config{})
			t.Cleanup(fake.Close)
			addr, dbURL, env := serveEnv(t, bin, fake.URL, faultJourneysDir(t), mode.aesKey)
			proc := startProcess(t, bin, env, addr)
			tg := faultTarget{base: "http://" + addr, fake: fake, db: openDirect(t, dbURL)}
			runFaultScenario(t, tg, mode, true, func() time.Time {
				// The worst moment: while a step runs (claimed, its task
				// active in the queue, maybe its message in flight).
				running := waitRunningStep(t, tg.db, 2*time.Second)
				if err := proc.Process.Kill(); err != nil {
					t.Fatalf("kill -9: %v", err)
				}
				proc.Wait()
				<-time.After(faultKillDown)
				startProcess(t, bin, env, addr)
				t.Logf("killed with %d step visits running, restarted after %v", running, faultKillDown)
				return time.Now()
			})
		})
	}
}
