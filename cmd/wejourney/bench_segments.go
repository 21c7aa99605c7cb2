package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/clock"
	"github.com/wejourney/wejourney/model"
)

// segmentsJourneyKey is the segment journey `bench --segments` runs.
const segmentsJourneyKey = "bench-segment"

// segmentsExpr is its segment: members with 1,000 points or more who did
// not opt out.
const segmentsExpr = `member.attrs.points >= 1000 && !("opted_out" in member.tags)`

// segmentsEvery is how often the segment is evaluated (the journey's
// every: 1h).
const segmentsEvery = time.Hour

// segmentsJourney is that journey: the members who enter wait (their
// enrollment does not change the member).
var segmentsJourney = fmt.Sprintf(`key: %s
name: 压测积分分群
trigger: { segment: '%s', every: 1h }
steps:
  - { id: hold, wait: 30d }
`, segmentsJourneyKey, segmentsExpr)

// segmentsAppID is the Official Account of the members it loads.
const segmentsAppID = "wxbench000000001"

// segmentsBatch is how many members one INSERT of the segments bench
// creates (7 parameters a row, within SQLite's 32,766).
const segmentsBatch = 4000

// segmentsCities are the values of the attribute the segment does not read.
var segmentsCities = []string{"上海", "北京", "广州", "深圳", "杭州", "成都"}

// checkSegments refuses --segments and --changed values the segment run
// cannot take.
func (o benchOpts) checkSegments() error {
	switch {
	case o.segments < 0:
		return fmt.Errorf("--segments: want 0 (off) or more members, got %d", o.segments)
	case o.segments > 0 && o.target != "":
		return errors.New("--segments loads members into the bench's own database: drop --target (and pass --database-url)")
	case o.segments > 0 && (o.changed < 3 || o.changed > o.segments/2):
		return fmt.Errorf("--changed: want 3 to half of --segments (%d) members, got %d", o.segments/2, o.changed)
	}
	return nil
}

// segmentMember is what the bench loaded for one member: its points and
// whether it opted out. Member i matches the segment when i%50 == 0 and
// i%200 != 0 (1.5 %); i%200 == 0 have the points but opted out.
type segmentMember struct {
	points   int
	optedOut bool
	city     string
}

func (m segmentMember) matches() bool { return m.points >= 1000 && !m.optedOut }

func (m segmentMember) attrs() string {
	b, _ := json.Marshal(map[string]any{"points": m.points, "city": m.city})
	return string(b)
}

func (m segmentMember) tags() string {
	if m.optedOut {
		return `["bench","opted_out"]`
	}
	return `["bench"]`
}

// runSegmentsBench loads o.segments members straight into the database,
// publishes a segment journey, times its first evaluation (every member),
// changes o.changed of them (a third newly match, a third stop matching, the
// rest change an attribute the segment does not read), moves the engine's
// clock past every and times the second evaluation. It fails when the
// second evaluation re-checks other members than the changed ones or
// enters other than those who newly match.
func runSegmentsBench(ctx context.Context, o benchOpts, stdout, stderr io.Writer) error {
	st, err := openScenarioStore(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	db := st.db.WithContext(ctx)
	clk := clock.NewSimulated(time.Now())
	e := st.engine(ctx, clk)

	fmt.Fprintf(stdout, "wejourney bench --segments — %s %s, %d CPUs (GOMAXPROCS %d), %s\n",
		st.dialect, st.desc, runtime.NumCPU(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	loaded, prefix, took, err := loadSegmentMembers(ctx, db, o.segments, rng, stderr)
	if err != nil {
		return err
	}
	matched := 0
	for _, m := range loaded {
		if m.matches() {
			matched++
		}
	}
	fmt.Fprintf(stdout, "loaded: %d members (attrs.points, attrs.city, tags; updated a day ago) in %s (%.0f members/s); %d of them in the segment\n",
		o.segments, took.Round(10*time.Millisecond), float64(o.segments)/max(took.Seconds(), 1e-9), matched)
	if ok, err := analyzeBenchTables(ctx, db); err != nil {
		return err
	} else if ok {
		fmt.Fprintln(stdout, "  then VACUUM (ANALYZE) of wejourney's tables")
	}
	var live int64
	if err := db.Model(&model.Member{}).Where("merged_into IS NULL").Count(&live).Error; err != nil {
		return err
	}

	// A run before --reset left its evaluation's mark (--reset keeps the
	// settings table): the journey starts afresh.
	j, err := publishBenchJourney(ctx, e, db, "segment:", segmentsJourneyKey, segmentsJourneyKey+".yaml", segmentsJourney)
	if err != nil {
		return err
	}

	start := time.Now()
	entered1, checked1, err := e.RunSegmentsChecked(ctx)
	if err != nil {
		return fmt.Errorf("first evaluation: %w", err)
	}
	took1 := time.Since(start)
	fmt.Fprintf(stdout, "segment %s (%s, every 1h)\n", segmentsJourneyKey, segmentsExpr)
	fmt.Fprintf(stdout, "  first evaluation   members checked %d (want %d, every member), entered %d (want %d), %.2f s\n",
		checked1, live, entered1, matched, took1.Seconds())
	if int64(checked1) != live || entered1 != matched {
		return fmt.Errorf("segments: the first evaluation checked %d members and entered %d; want %d and %d", checked1, entered1, live, matched)
	}

	ch, err := changeSegmentMembers(ctx, db, prefix, loaded, o.changed, rng)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  changed            %d members in %.2f s: %d newly match, %d stop matching (%d fewer points, %d opted out), %d another city\n",
		o.changed, ch.took.Seconds(), ch.joined, ch.left, ch.left-ch.optedOut, ch.optedOut, ch.other)
	clk.Advance(segmentsEvery + time.Minute)
	fmt.Fprintf(stdout, "  clock              advanced %s (past every)\n", segmentsEvery+time.Minute)

	plan := captureMemberQuery(st.db)
	start = time.Now()
	entered2, checked2, err := e.RunSegmentsChecked(ctx)
	took2 := time.Since(start)
	plan.stop()
	if err != nil {
		return fmt.Errorf("second evaluation: %w", err)
	}
	var inSegment, enrolled int64
	if err := db.Model(&model.SegmentMember{}).Where("journey_id = ?", j.ID).Count(&inSegment).Error; err != nil {
		return err
	}
	if err := db.Model(&model.Enrollment{}).Where("journey_id = ?", j.ID).Count(&enrolled).Error; err != nil {
		return err
	}
	wantIn := matched - ch.left + ch.joined
	fmt.Fprintf(stdout, "  second evaluation  members re-checked %d (want %d, the changed ones; not %d), newly entered %d (want %d), %.3f s\n",
		checked2, o.changed, live, entered2, ch.joined, took2.Seconds())
	fmt.Fprintf(stdout, "  in the segment     %d (want %d); enrollments %d (want %d)\n", inSegment, wantIn, enrolled, matched+ch.joined)
	if lines, err := plan.explain(ctx); err != nil {
		fmt.Fprintf(stdout, "  plan               (EXPLAIN failed: %v)\n", err)
	} else {
		fmt.Fprintf(stdout, "  plan of the second evaluation's member query:\n")
		for _, l := range lines {
			fmt.Fprintf(stdout, "    %s\n", l)
		}
	}
	var errs []error
	if checked2 != o.changed {
		errs = append(errs, fmt.Errorf("segments: the second evaluation re-checked %d members; want %d (the changed ones)", checked2, o.changed))
	}
	if entered2 != ch.joined {
		errs = append(errs, fmt.Errorf("segments: the second evaluation entered %d members; want %d (those who newly match)", entered2, ch.joined))
	}
	if inSegment != int64(wantIn) || enrolled != int64(matched+ch.joined) {
		errs = append(errs, fmt.Errorf("segments: %d members in the segment and %d enrollments; want %d and %d", inSegment, enrolled, wantIn, matched+ch.joined))
	}
	return errors.Join(errs...)
}

// loadSegmentMembers inserts n members with their openid identity, points,
// a city and tags, updated a day ago (before any evaluation's overlap), in
// batches. It returns what it loaded, by index, and their openids' prefix.
func loadSegmentMembers(ctx context.Context, db *gorm.DB, n int, rng *rand.Rand, progress io.Writer) ([]segmentMember, string, time.Duration, error) {
	start := time.Now()
	prefix := "osg_" + randomHex(4) + "_"
	ts := start.Add(-24 * time.Hour).UTC()
	bar := progressbar.NewOptions(n, progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("loading members with points"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("members"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
	loaded := make([]segmentMember, n)
	for lo := 0; lo < n; lo += segmentsBatch {
		hi := min(lo+segmentsBatch, n)
		var sb strings.Builder
		sb.WriteString("INSERT INTO members (app_id, open_id, attrs, tags, subscribed, created_at, updated_at) VALUES ")
		args := make([]any, 0, 7*(hi-lo))
		for i := lo; i < hi; i++ {
			if i > lo {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?, ?, ?, ?)")
			m := segmentMember{points: rng.IntN(1000), optedOut: i%200 == 0, city: segmentsCities[rng.IntN(len(segmentsCities))]}
			if i%50 == 0 {
				m.points = 1000 + rng.IntN(9000)
			}
			loaded[i] = m
			args = append(args, segmentsAppID, fmt.Sprintf("%s%d", prefix, i), m.attrs(), m.tags(), true, ts, ts)
		}
		if err := insertBenchMembers(db, sb.String(), args); err != nil {
			return nil, "", 0, fmt.Errorf("--segments: batch from %d: %w", lo, err)
		}
		bar.Add(hi - lo)
	}
	bar.Finish()
	return loaded, prefix, time.Since(start), nil
}

// segmentChanges says what changeSegmentMembers changed.
type segmentChanges struct {
	joined, left, optedOut, other int
	took                          time.Duration
}

// changeSegmentMembers changes k distinct loaded members as a brand's
// update would (attrs, tags and updated_at, now): a third of k who did not
// match now do, a third who did no longer do (half with fewer points, half
// opted out), and the rest move to another city, which the segment does
// not read.
func changeSegmentMembers(ctx context.Context, db *gorm.DB, prefix string, loaded []segmentMember, k int, rng *rand.Rand) (segmentChanges, error) {
	var ch segmentChanges
	var in, out []int
	for i, m := range loaded {
		if m.matches() {
			in = append(in, i)
		} else {
			out = append(out, i)
		}
	}
	rng.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
	rng.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	ch.joined = k / 3
	ch.left = min(k/3, len(in))
	ch.other = k - ch.joined - ch.left
	if ch.joined+ch.other > len(out) {
		return ch, fmt.Errorf("--changed: %d is too many for %d members", k, len(loaded))
	}
	picked := make([]int, 0, k)
	picked = append(picked, out[:ch.joined]...)
	picked = append(picked, in[:ch.left]...)
	picked = append(picked, out[ch.joined:ch.joined+ch.other]...)
	changed := make(map[int]segmentMember, k)
	for n, i := range picked {
		m := loaded[i]
		switch {
		case n < ch.joined:
			m.points, m.optedOut = 1000+rng.IntN(9000), false
		case n < ch.joined+ch.left && n%2 == 0:
			m.optedOut = true
			ch.optedOut++
		case n < ch.joined+ch.left:
			m.points = rng.IntN(1000)
		default:
			for c := m.city; c == m.city; {
				m.city = segmentsCities[rng.IntN(len(segmentsCities))]
			}
		}
		changed[i] = m
	}

	start := time.Now()
	ids := make(map[string]int64, k)
	values := make([]string, 0, k)
	for _, i := range picked {
		values = append(values, fmt.Sprintf("%s/%s%d", segmentsAppID, prefix, i))
	}
	for lo := 0; lo < len(values); lo += 500 {
		var rows []model.MemberIdentity
		if err := db.Where("kind = ? AND value IN ?", model.IdentityOpenID, values[lo:min(lo+500, len(values))]).Find(&rows).Error; err != nil {
			return ch, fmt.Errorf("--changed: find members: %w", err)
		}
		for _, r := range rows {
			ids[r.Value] = r.MemberID
		}
	}
	now := time.Now().UTC()
	err := db.Transaction(func(tx *gorm.DB) error {
		for n, i := range picked {
			id, ok := ids[values[n]]
			if !ok {
				return fmt.Errorf("no member %s", values[n])
			}
			m := changed[i]
			if err := tx.Exec("UPDATE members SET attrs = ?, tags = ?, updated_at = ? WHERE id = ?", m.attrs(), m.tags(), now, id).Error; err != nil {
				return err
			}
			loaded[i] = m
		}
		return nil
	})
	if err != nil {
		return ch, fmt.Errorf("--changed: %w", err)
	}
	ch.took = time.Since(start)
	return ch, nil
}

// memberQuery captures the first query over members by updated_at the
// engine runs while it is registered, to EXPLAIN it after.
type memberQuery struct {
	db   *gorm.DB
	mu   sync.Mutex
	sql  string
	vars []any
}

// memberQueryCallback is the name of memberQuery's gorm callback.
const memberQueryCallback = "bench:segment_member_query"

func captureMemberQuery(db *gorm.DB) *memberQuery {
	q := &memberQuery{db: db}
	db.Callback().Query().After("gorm:query").Register(memberQueryCallback, func(tx *gorm.DB) {
		s := tx.Statement.SQL.String()
		if tx.Statement.Table != "members" || !strings.Contains(s, "updated_at >") {
			return
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.sql == "" {
			q.sql, q.vars = s, append([]any(nil), tx.Statement.Vars...)
		}
	})
	return q
}

func (q *memberQuery) stop() {
	q.db.Callback().Query().Remove(memberQueryCallback)
}

// explain returns the database's plan of the captured query, one line a
// row.
func (q *memberQuery) explain(ctx context.Context) ([]string, error) {
	q.mu.Lock()
	s, vars := q.sql, q.vars
	q.mu.Unlock()
	if s == "" {
		return nil, errors.New("the evaluation ran no query over members by updated_at")
	}
	sqlDB, err := q.db.DB()
	if err != nil {
		return nil, err
	}
	prefix := "EXPLAIN "
	if q.db.Dialector.Name() == "sqlite" {
		prefix = "EXPLAIN QUERY PLAN "
	}
	rows, err := sqlDB.QueryContext(ctx, prefix+s, vars...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var lines []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		// SQLite: id, parent, notused, detail; the detail says it all.
		lines = append(lines, vals[len(vals)-1].String)
	}
	return lines, rows.Err()
}
