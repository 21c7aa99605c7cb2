package journey

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// Task types carried by asynq. Payloads are row ids only.
const (
	// TypeRouteEvents routes stored events: payload {"ids": [...]}.
	TypeRouteEvents = "events:route"
	// TypeRunStep runs one due step visit: payload is the visit id.
	TypeRunStep = "step:run"
)

// Queues of the engine's tasks. wejourney's worker runs one asynq server
// per queue, each with slots of its own, so a burst of marketing holding
// every slot never delays a welcome or a reply; one server taking all three
// uses Queues.
const (
	// QueueUrgent carries what the platform takes only within seconds: the
	// routing of a WeCom add with its welcome_code (WeCom accepts it for
	// 20 s), and the steps that send on an urgent channel (wecom.welcome).
	QueueUrgent = "urgent"
	// QueueReply carries the routing of members' own actions (WeChat,
	// WeCom, mini-program, email and SMS replies) and the steps of the
	// journeys they trigger.
	QueueReply = "reply"
	// QueueMarketing carries the rest: brand events from the events API,
	// imports, engine events, and the steps of journeys they, schedules or
	// segments trigger. It is asynq's default queue.
	QueueMarketing = "default"
)

// Queues is the asynq.Config.Queues of a worker running the engine's
// tasks, to be used with StrictPriority: urgent before reply before
// marketing.
func Queues() map[string]int {
	return map[string]int{QueueUrgent: 6, QueueReply: 3, QueueMarketing: 1}
}

// queueNames are the engine's queues, most urgent first.
var queueNames = []string{QueueUrgent, QueueReply, QueueMarketing}

// Retry delays of the engine's tasks: the first retry after RetryDelayMin,
// doubling up to RetryDelayMax.
const (
	RetryDelayMin = time.Second
	RetryDelayMax = 8 * time.Second
)

// RetryDelay is the asynq.Config.RetryDelayFunc of a worker running the
// engine's tasks. Routing and step tasks fail together when the database or
// Redis is down, and every one of them is idempotent, so they are retried
// soon: 1 s, 2 s, 4 s, then every 8 s. asynq's default (15 s and more,
// growing with n^4) would let waits end tens of seconds late after a short
// outage. Other task types keep asynq's default.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	switch t.Type() {
	case TypeRunStep, TypeRouteEvents:
		if n < 0 {
			n = 0
		}
		if n >= 4 { // 1s<<4 is already past the cap
			return RetryDelayMax
		}
		return min(RetryDelayMin<<n, RetryDelayMax)
	}
	return asynq.DefaultRetryDelayFunc(n, err, t)
}

type routePayload struct {
	IDs []int64 `json:"ids"`
}

// NewRouteEventsTask returns a task that routes the events with these ids,
// on queue ("": QueueMarketing).
func NewRouteEventsTask(ids []int64, queue string) *asynq.Task {
	b, _ := json.Marshal(routePayload{IDs: ids}) // a slice of ints always marshals
	if queue == "" {
		queue = QueueMarketing
	}
	return asynq.NewTask(TypeRouteEvents, b, asynq.MaxRetry(5), asynq.Timeout(2*time.Minute), asynq.Queue(queue))
}

// EventQueue is the queue an event is routed on: QueueUrgent for a WeCom
// add carrying a welcome_code, QueueMarketing for what the brand's systems,
// imports and the engine emit, QueueReply for every other member action.
func EventQueue(ev *model.Event) string {
	if code, _ := ev.Props["welcome_code"].(string); code != "" {
		return QueueUrgent
	}
	switch ev.Source {
	case events.API{}.Name(), events.Import{}.Name(), events.Engine{}.Name():
		return QueueMarketing
	}
	return QueueReply
}

// HandleRouteEventsTask routes the task's events (see Engine.Route).
func (e *Engine) HandleRouteEventsTask(ctx context.Context, t *asynq.Task) error {
	var p routePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("journey: bad %s payload: %v: %w", TypeRouteEvents, err, asynq.SkipRetry)
	}
	if q, _ := asynq.GetQueueName(ctx); q == QueueUrgent {
		// Not gathered with other tasks: a welcome waits for no batch,
		// and takes the database ahead of other work.
		return e.route(urgentContext(ctx), p.IDs)
	}
	return e.Route(ctx, p.IDs...)
}

// NewRunStepTask returns a task that runs the step visit at due, on queue
// ("": QueueMarketing). Its task id names the visit and due time, so the
// sweeper and the engine enqueueing the same visit twice yields one task.
func NewRunStepTask(visitID int64, due time.Time, queue string) (*asynq.Task, []asynq.Option) {
	if queue == "" {
		queue = QueueMarketing
	}
	return asynq.NewTask(TypeRunStep, []byte(strconv.FormatInt(visitID, 10))),
		[]asynq.Option{
			asynq.Queue(queue),
			asynq.TaskID(StepTaskID(visitID, due)),
			asynq.ProcessAt(due),
			asynq.MaxRetry(10),
			asynq.Timeout(time.Minute),
		}
}

// StepTaskID is the asynq task id of the step task for visitID due at due.
func StepTaskID(visitID int64, due time.Time) string {
	return fmt.Sprintf("visit:%d@%d", visitID, due.UnixMilli())
}

// HandleRunStepTask runs the task's step visit (see Engine.RunStep).
func (e *Engine) HandleRunStepTask(ctx context.Context, t *asynq.Task) error {
	id, err := strconv.ParseInt(string(t.Payload()), 10, 64)
	if err != nil {
		return fmt.Errorf("journey: bad %s payload %q: %w", TypeRunStep, t.Payload(), asynq.SkipRetry)
	}
	if q, _ := asynq.GetQueueName(ctx); q == QueueUrgent {
		return e.runSteps(urgentContext(ctx), []int64{id})[0]
	}
	return e.RunStep(ctx, id)
}

// Register adds the engine's task handlers to mux.
func (e *Engine) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeRouteEvents, e.HandleRouteEventsTask)
	mux.HandleFunc(TypeRunStep, e.HandleRunStepTask)
}
