package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/internal/wxsim"
	"github.com/wejourney/wejourney/model"
)

// stepsJourney is the journey `bench --steps` measures: ten steps per
// member (sends, two 1 s waits, two updates, a branch and a 50/50 split).
// A follower goes s1 → pause1 → tag → subscribed → ab → a|b → pause2 →
// s8 → stage9 → done: ten step visits and four messages (s1, a or b, s8,
// done). The branch's else arm (straight to done) is never taken by a
// follower: it is there so that the branch evaluates a condition. Four
// customer-service messages within seconds of a follow are more than
// WeChat allows (3 a minute): the bench raises the allowance to 10.
const stepsJourney = `key: bench-steps
name: 压测十步旅程
trigger: { event: wechat.subscribe }
steps:
  - id: s1
    send: { channel: wechat.text, text: "s1" }
    next: pause1
  - id: pause1
    wait: 1s
    next: tag
  - id: tag
    update:
      add_tags: [stepped]
      set: { stage: 2 }
    next: subscribed
  - id: subscribed
    branch:
      - when: 'member.subscribed'
        next: ab
      - next: done
  - id: ab
    split:
      - { weight: 50, next: a }
      - { weight: 50, next: b }
  - id: a
    send: { channel: wechat.text, text: "a" }
    next: pause2
  - id: b
    send: { channel: wechat.text, text: "b" }
    next: pause2
  - id: pause2
    wait: 1s
    next: s8
  - id: s8
    send: { channel: wechat.text, text: "s8" }
    next: stage9
  - id: stage9
    update:
      set: { stage: 9 }
    next: done
  - id: done
    send: { channel: wechat.text, text: "done" }
`

// stepsJourneyKey is the key of stepsJourney.
const stepsJourneyKey = "bench-steps"

// stepsPerMember and messagesPerMember are what one follower of
// stepsJourney executes and receives.
const (
	stepsPerMember    = 10
	messagesPerMember = 4
)

// stepsPollEvery is how often the steps bench counts completed enrollments.
const stepsPollEvery = 200 * time.Millisecond

// stepsResult is what the steps bench measured.
type stepsResult struct {
	members     int           // follows sent
	errors      int           // callbacks not answered "success"
	callbacks   float64       // callbacks/s of the burst
	enrollments int64         // enrollments in bench-steps
	completed   int64         // of which completed
	visits      int64         // step visits done in bench-steps
	uneven      int64         // completed enrollments with other than stepsPerMember done visits
	took        time.Duration // first callback → last enrollment completed
	lost        int           // members with fewer than messagesPerMember messages
	doubled     int           // members with more than messagesPerMember messages
	wrong       int           // members with messagesPerMember messages that are not s1, a|b, s8, done
	armA, armB  int           // members who received "a" or "b"
}

// runStepsBench sends n follows as fast as possible into stepsJourney,
// waits up to settle after the last callback until every enrollment has
// completed, and reports the step executions per second and what the fake
// WeChat API received.
func runStepsBench(ctx context.Context, db *gorm.DB, fake *fakewx.Server, sim *wxsim.Client, client *http.Client, o benchOpts, stdout io.Writer) error {
	res, err := measureSteps(ctx, db, fake, sim, client, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nsteps: %d follows as fast as possible into %s (%d steps per member: 4 sends, 2 waits of 1s, 2 updates, a branch, a 50/50 split), concurrency %d\n",
		res.members, stepsJourneyKey, stepsPerMember, o.concurrency)
	fmt.Fprintf(stdout, "  callbacks/s        %8.0f   (errors %d)\n", res.callbacks, res.errors)
	fmt.Fprintf(stdout, "  enrollments        %d, completed %d, not completed %d\n", res.enrollments, res.completed, res.enrollments-res.completed)
	fmt.Fprintf(stdout, "  step visits done   %d   (want %d = %d × %d; completed enrollments with other than %d: %d)\n",
		res.visits, int64(res.members)*stepsPerMember, res.members, stepsPerMember, stepsPerMember, res.uneven)
	fmt.Fprintf(stdout, "  step executions/s  %8.0f   (%d step visits ÷ %s from the first callback to the last enrollment completed; 2 s of it are the waits)\n",
		float64(res.visits)/max(res.took.Seconds(), 1e-9), res.visits, res.took.Round(10*time.Millisecond))
	fmt.Fprintf(stdout, "  messages/member    want %d (s1, a or b, s8, done): lost %d, doubled %d, wrong %d; split a %d, b %d\n",
		messagesPerMember, res.lost, res.doubled, res.wrong, res.armA, res.armB)
	return nil
}

// measureSteps runs the steps bench and counts what happened.
func measureSteps(ctx context.Context, db *gorm.DB, fake *fakewx.Server, sim *wxsim.Client, client *http.Client, o benchOpts) (stepsResult, error) {
	res := stepsResult{members: o.steps}
	db = db.WithContext(ctx)
	var j model.Journey
	if err := db.Where(&model.Journey{Key: stepsJourneyKey}).First(&j).Error; err != nil {
		return res, fmt.Errorf("--steps: the journey %s was not published: %w", stepsJourneyKey, err)
	}
	f, err := prepareFollows(sim, "obs", o.steps)
	if err != nil {
		return res, err
	}
	start := time.Now()
	load := runLoad(ctx, client, f.reqs, 0, o.concurrency)
	res.callbacks, res.errors = load.throughput(), load.errors

	enrollments := func() *gorm.DB { return db.Model(&model.Enrollment{}).Where("journey_id = ?", j.ID) }
	deadline := time.Now().Add(o.settle)
	lastCompleted := time.Now()
	for {
		if err := enrollments().Where("status = ?", model.EnrollmentCompleted).Count(&res.completed).Error; err != nil {
			return res, fmt.Errorf("--steps: count completed enrollments: %w", err)
		}
		lastCompleted = time.Now()
		if res.completed >= int64(o.steps) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(stepsPollEvery):
		}
	}
	// When the last enrollment completed, to better than the poll: its end time.
	var ended []time.Time
	if err := enrollments().Where("status = ? AND ended_at IS NOT NULL", model.EnrollmentCompleted).
		Order("ended_at DESC").Limit(1).Pluck("ended_at", &ended).Error; err == nil && len(ended) == 1 && ended[0].After(start) {
		lastCompleted = ended[0]
	}
	res.took = lastCompleted.Sub(start)

	// A doubled message would arrive just after the last: look once more.
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(time.Second):
	}
	if err := enrollments().Count(&res.enrollments).Error; err != nil {
		return res, fmt.Errorf("--steps: count enrollments: %w", err)
	}
	if err := db.Model(&model.StepVisit{}).Where("journey_id = ? AND status = ?", j.ID, model.VisitDone).Count(&res.visits).Error; err != nil {
		return res, fmt.Errorf("--steps: count step visits: %w", err)
	}
	uneven := db.Model(&model.StepVisit{}).Select("enrollment_id").
		Where("journey_id = ? AND status = ?", j.ID, model.VisitDone).
		Group("enrollment_id").Having("COUNT(*) <> ?", stepsPerMember)
	if err := enrollments().Where("status = ? AND id IN (?)", model.EnrollmentCompleted, uneven).Count(&res.uneven).Error; err != nil {
		return res, fmt.Errorf("--steps: count enrollments with uneven visits: %w", err)
	}
	res.tally(f.openids, fake.Messages())
	return res, nil
}

// tally counts, per follower, the messages received: lost, doubled, not
// the expected ones, and the split's arms.
func (r *stepsResult) tally(openids []string, msgs []fakewx.Message) {
	texts := make(map[string][]string, len(openids))
	for _, m := range msgs {
		texts[m.ToUser] = append(texts[m.ToUser], m.Text)
	}
	for _, id := range openids {
		got := texts[id]
		switch {
		case len(got) < messagesPerMember:
			r.lost++
		case len(got) > messagesPerMember:
			r.doubled++
		case got[0] != "s1" || (got[1] != "a" && got[1] != "b") || got[2] != "s8" || got[3] != "done":
			r.wrong++
		case got[1] == "a":
			r.armA++
		default:
			r.armB++
		}
	}
}

// checkSteps refuses --steps with flags it cannot run with.
func (o benchOpts) checkSteps() error {
	switch {
	case o.steps < 0:
		return fmt.Errorf("--steps: want 0 (off) or more members, got %d", o.steps)
	case o.steps > 0 && o.target != "":
		return errors.New("--steps counts step visits in the embedded server's database: drop --target")
	case o.steps > 0 && o.role != RoleAll:
		return fmt.Errorf("--steps: the embedded server must run the journeys (--role all), got %q", o.role)
	}
	return nil
}
