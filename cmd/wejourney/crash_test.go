package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain starts building the binary for the process tests while the
// in-process tests run: the process tests are parallel, so they start last,
// and would otherwise wait seconds for the build.
func TestMain(m *testing.M) {
	flag.Parse()
	gin.SetMode(gin.ReleaseMode) // as main sets it: no route table printed per app

	if !testing.Short() {
		go buildOnce.Do(build)
	}
	code := m.Run()
	buildOnce.Do(func() {}) // wait for a build still under way
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// buildBinary builds cmd/wejourney once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(build)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// build builds the binary into a temporary directory (binPath, buildErr).
func build() {
	dir, err := os.MkdirTemp("", "wejourney-bin")
	if err != nil {
		buildErr = err
		return
	}
	binPath = filepath.Join(dir, "wejourney")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		buildErr = fmt.Errorf("go build: %v\n%s", err, out)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveEnv prepares a fresh database (migrated when it is a server's) and
// Redis for a `wejourney serve` process, and returns its address and
// database URL and environment: the default account with real-looking credentials, in safe
// mode when aesKey is set, its API calls aimed at fakeURL.
func serveEnv(t *testing.T, bin, fakeURL, journeysDir, aesKey string) (addr, dbURL string, env []string) {
	t.Helper()
	dbURL = testDatabaseURL(t)
	redisURL := testRedisURL(t)
	if !strings.HasPrefix(dbURL, "sqlite:") {
		// serve migrates SQLite itself; a server database is migrated first.
		mig := exec.Command(bin, "migrate")
		mig.Env = append(os.Environ(), "WEJOURNEY_DATABASE_URL="+dbURL, "WEJOURNEY_SECRET_KEY="+testSecretKey)
		if out, err := mig.CombinedOutput(); err != nil {
			t.Fatalf("migrate: %v\n%s", err, out)
		}
	}
	addr = freeAddr(t)
	return addr, dbURL, []string{
		"WEJOURNEY_HTTP_ADDR=" + addr, "WEJOURNEY_DATABASE_URL=" + dbURL, "WEJOURNEY_REDIS_URL=" + redisURL,
		"WEJOURNEY_JOURNEYS_DIR=" + journeysDir, "WEJOURNEY_WECHAT_APPID=" + testAppID,
		"WEJOURNEY_WECHAT_APPSECRET=test-secret", "WEJOURNEY_WECHAT_TOKEN=" + testToken,
		"WEJOURNEY_WECHAT_AES_KEY=" + aesKey, "WEJOURNEY_WECHAT_API_BASE=" + fakeURL,
		"WEJOURNEY_ADMIN_PASSWORD=admin-pass", "WEJOURNEY_SECRET_KEY=" + testSecretKey,
	}
}

// startProcess runs `wejourney serve` and waits until it answers /readyz.
func startProcess(t *testing.T, bin string, env []string, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = t.TempDir()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // keep the pipe drained; show the log with -v
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			if testing.Verbose() {
				t.Log(s.Text())
			}
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("wejourney did not start listening on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killWait is the wait of the kill test's journey: long enough that the
// process is killed mid-wait, short enough to keep the test quick.
const killWait = 2 * time.Second

// TestKillDuringWaitSendsFollowUpOnce kills the process with SIGKILL while a
// member waits, restarts it on the same database (and Redis, when real), and
// checks that the follow-up comes exactly once, not before the wait ended.
func TestKillDuringWaitSendsFollowUpOnce(t *testing.T) {
	parallel(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	fake := fakewx.New(fakewx.Config{})
	defer fake.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "welcome.yaml"), []byte(fmt.Sprintf(`
key: welcome-crash
trigger: { event: wechat.subscribe }
entry: { once: true }
steps:
  - id: hello
    send: { channel: wechat.text, text: "欢迎" }
    next: pause
  - id: pause
    wait: %v
    next: later
  - id: later
    send: { channel: wechat.text, text: "稍后的问候" }
`, killWait)), 0o600)
	addr, dbURL, env := serveEnv(t, bin, fake.URL, dir, testAESKey)
	first := startProcess(t, bin, env, addr)
	sim, err := wxsim.New(wxsim.Config{Target: "http://" + addr, AppID: testAppID, Token: testToken, AESKey: testAESKey})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, err := sim.Send(context.Background(), wxsim.Event{Kind: wxsim.KindSubscribe, OpenID: "o_crash"}); err != nil || status != 200 {
		t.Fatalf("subscribe: %d %v", status, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fake.Wait(ctx, func(m []fakewx.Message) bool { return len(m) >= 1 }); err != nil {
		t.Fatalf("no welcome: %v", err)
	}
	welcomeAt := fake.Messages()[0].At
	// Mid-wait: once the wait step is the member's current step, kill -9.
	dialect, dsn, _ := config.ParseDatabaseURL(dbURL)
	db, err := model.Open(dialect, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s, _ := db.DB(); s.Close() }()
	waiting := func() bool {
		var n int64
		db.Model(&model.StepVisit{}).Where("step_id = ? AND status = ?", "pause", model.VisitWaiting).Count(&n)
		return n == 1
	}
	for deadline := time.Now().Add(5 * time.Second); !waiting(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the member never started waiting")
		}
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	if since := time.Since(welcomeAt); since >= killWait {
		t.Logf("killed %v after the welcome, after the wait ended: the kill was not mid-wait", since)
	}
	second := startProcess(t, bin, env, addr)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := fake.Wait(ctx2, func(m []fakewx.Message) bool { return len(m) >= 2 }); err != nil {
		var vs []model.StepVisit
		db.Find(&vs)
		t.Logf("visits: %+v", vs)
		t.Fatalf("the follow-up never came after the restart: %v", err)
	}
	// Nothing more happens: the enrollment completed (no visit is left to
	// run), then the process stops gracefully, finishing whatever it had
	// in flight; only then are the messages counted.
	completed := func() bool {
		var n int64
		db.Model(&model.Enrollment{}).Where("status = ?", model.EnrollmentCompleted).Count(&n)
		return n == 1
	}
	for deadline := time.Now().Add(10 * time.Second); !completed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the enrollment never completed after the follow-up")
		}
	}
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	msgs := fake.MessagesTo("o_crash")
	var got []string
	for _, m := range msgs {
		got = append(got, m.Text)
	}
	if len(got) != 2 || got[0] != "欢迎" || got[1] != "稍后的问候" {
		t.Fatalf("messages = %q, want the welcome and the follow-up, once each", got)
	}
	if late := msgs[1].At.Sub(welcomeAt); late < killWait {
		t.Errorf("the follow-up came %v after the welcome: the wait (%v) ended early", late, killWait)
	}
	// The database agrees: one delivery per send step, both sent, and no
	// step visit left open.
	var n int64
	db.Model(&model.Delivery{}).Where("status = ?", model.DeliverySent).Count(&n)
	if n != 2 {
		t.Errorf("sent deliveries = %d, want 2", n)
	}
	db.Model(&model.StepVisit{}).Where("status IN ?", []string{model.VisitScheduled, model.VisitWaiting, model.VisitRunning}).Count(&n)
	if n != 0 {
		t.Errorf("open step visits = %d, want 0", n)
	}
}
