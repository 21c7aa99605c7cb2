package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wejourney/wejourney/config"
)

// TestBenchClusterFlags checks the refusals of cluster mode's flags: each
// names the flag to change.
func TestBenchClusterFlags(t *testing.T) {
	t.Parallel()
	const pg, rd = "postgres://postgres@127.0.0.1:5432/wj?sslmode=disable", "redis://127.0.0.1:6379/11"
	ok := benchOpts{n: 1, rate: 1, burst: 10, concurrency: 1, role: RoleAll, web: 2, workers: 2, databaseURL: pg, redisURL: rd}
	cases := []struct {
		name string
		edit func(*benchOpts)
		want string // "" for accepted
	}{
		{"postgres", func(*benchOpts) {}, ""},
		{"mysql", func(o *benchOpts) { o.databaseURL = "mysql://root@127.0.0.1:3306/wj" }, ""},
		{"kill a worker", func(o *benchOpts) { o.killWorker = true }, ""},
		{"another binary", func(o *benchOpts) { o.bin = "/usr/local/bin/wejourney" }, ""},
		{"no database", func(o *benchOpts) { o.databaseURL = "" }, "--database-url"},
		{"sqlite", func(o *benchOpts) { o.databaseURL = "sqlite:bench.db" }, "--database-url"},
		{"bad database URL", func(o *benchOpts) { o.databaseURL = "oracle://x" }, "--database-url"},
		{"no redis", func(o *benchOpts) { o.redisURL = "" }, "--redis-url"},
		{"target", func(o *benchOpts) { o.target = "http://127.0.0.1:1" }, "--target"},
		{"role web", func(o *benchOpts) { o.role = RoleWeb }, "--role"},
		{"role given", func(o *benchOpts) { o.roleSet = true }, "--role"},
		{"steps", func(o *benchOpts) { o.steps = 10 }, "--steps"},
		{"no web", func(o *benchOpts) { o.web = 0 }, "--web"},
		{"negative web", func(o *benchOpts) { o.web = -1 }, "--web"},
		{"no workers", func(o *benchOpts) { o.workers = 0 }, "--workers"},
		{"kill the only worker", func(o *benchOpts) { o.killWorker, o.workers = true, 1 }, "--kill-worker"},
		{"kill without a burst", func(o *benchOpts) { o.killWorker, o.burst = true, 0 }, "--kill-worker"},
		{"kill outside cluster mode", func(o *benchOpts) { o.killWorker, o.web, o.workers = true, 0, 0 }, "--kill-worker"},
		{"bin outside cluster mode", func(o *benchOpts) { o.bin, o.web, o.workers = "/bin/true", 0, 0 }, "--bin"},
		{"embedded", func(o *benchOpts) { o.web, o.workers, o.databaseURL, o.redisURL = 0, 0, "", "" }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.edit(&o)
			err := errors.Join(o.check(), o.checkSteps(), o.checkCluster())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("want an error naming %s, got %v", c.want, err)
			}
		})
	}

	// --role given on the command line, even as its default, is refused
	// before anything is started or connected to.
	err := benchCmd(context.Background(), []string{"--web", "1", "--workers", "1", "--role", "all",
		"--database-url", pg, "--redis-url", "redis://127.0.0.1:1/0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--role") {
		t.Fatalf("bench --web 1 --workers 1 --role all: want an error naming --role, got %v", err)
	}
}

// TestBenchClusterKillWorker runs cluster mode end to end: 2 web and 2
// worker processes of the built binary on a database of their own
// (wj_clustertest on the server of WEJOURNEY_TEST_DATABASE_URL) and Redis
// database 12, the first worker killed -9 in the middle of the burst. No
// message may be doubled, and none lost but those the killed worker had in
// flight: recorded unknown, never re-sent, as the engine promises (at most
// one message per step).
func TestBenchClusterKillWorker(t *testing.T) {
	base, redisBase := os.Getenv(envTestDB), os.Getenv(envTestRedis)
	if base == "" || redisBase == "" {
		t.Skipf("cluster mode needs a server database and a real Redis; set %s and %s (.ci/run does)", envTestDB, envTestRedis)
	}
	parallel(t)
	bin := buildBinary(t)
	dbURL := clusterTestDatabase(t, base)
	ru, err := url.Parse(redisBase)
	if err != nil {
		t.Fatalf("%s: %v", envTestRedis, err)
	}
	ru.Path = "/12"
	var out bytes.Buffer
	err = benchCmd(context.Background(), []string{"--web", "2", "--workers", "2", "--kill-worker", "--bin", bin,
		"--database-url", dbURL, "--redis-url", ru.String(), "--reset",
		"-n", "200", "--rate", "100", "--burst", "1000", "--concurrency", "32", "--settle", "90s", "--bare=false"}, &out, io.Discard)
	report := out.String()
	if m := regexp.MustCompile(`their logs are in (\S+)`).FindStringSubmatch(report); m != nil {
		t.Cleanup(func() { os.RemoveAll(filepath.Dir(m[1])) })
	}
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, report)
	}
	t.Log(report)
	for _, w := range []string{
		"cluster of 2 web + 2 worker processes",
		"killed -9 worker 1 (pid ",
		"at 500 of 1,000 burst callbacks acknowledged",
		"processes          2 web + 2 worker processes, worker 1 killed -9 at 500 of 1,000 callbacks acknowledged",
		"paced: 200 follows at 100/s",
		"burst: 1000 follows as fast as possible",
	} {
		if !strings.Contains(report, w) {
			t.Errorf("the report lacks %q", w)
		}
	}
	runs := regexp.MustCompile(`messages lost (\d+), doubled (\d+)`).FindAllStringSubmatch(report, -1)
	if len(runs) != 2 {
		t.Fatalf("want the lost and doubled messages of the paced and the burst run, got %d lines", len(runs))
	}
	if runs[0][1] != "0" || runs[0][2] != "0" {
		t.Errorf("paced run (no worker killed yet): %s", runs[0][0])
	}
	if runs[1][2] != "0" {
		t.Errorf("burst run: %s; want no message doubled", runs[1][0])
	}
	lost, _ := strconv.Atoi(runs[1][1])
	count := func(label string) int {
		m := regexp.MustCompile(`lost, ` + label + ` +(\d+)`).FindStringSubmatch(report)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	unknown, unacked := count("delivery unknown"), count("not acknowledged")
	if lost != unknown+unacked {
		t.Errorf("burst run: %d messages lost, of which %d were in flight in the killed worker (delivery unknown) and %d never acknowledged; want no other loss",
			lost, unknown, unacked)
	}
}

// clusterTestDatabase returns the URL of the database wj_clustertest on
// the server of base (PostgreSQL or MySQL), created if missing; the bench
// empties it (--reset).
func clusterTestDatabase(t *testing.T, base string) string {
	t.Helper()
	const name = "wj_clustertest"
	dialect, dsn, err := config.ParseDatabaseURL(base)
	if err != nil {
		t.Fatalf("%s: %v", envTestDB, err)
	}
	driver, create := "pgx", "CREATE DATABASE "+name
	switch dialect {
	case "postgres":
	case "mysql":
		driver, create = "mysql", "CREATE DATABASE IF NOT EXISTS "+name
	default:
		t.Fatalf("%s: cluster mode wants PostgreSQL or MySQL, got %q", envTestDB, dialect)
	}
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	exists := false
	if dialect == "postgres" {
		var one int
		exists = admin.QueryRow("SELECT 1 FROM pg_database WHERE datname = $1", name).Scan(&one) == nil
	}
	if !exists {
		if _, err := admin.Exec(create); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
