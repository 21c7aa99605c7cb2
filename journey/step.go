package journey

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"maps"
	"os"
	"slices"
	"strings"
	"text/template"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/internal/redact"
	"github.com/wejourney/wejourney/model"
)

// holdLimit is how early a step task may arrive and still be held in process
// until its due time; earlier ones are re-scheduled. asynq keeps due times in
// whole seconds and may deliver a task up to a second early.
const holdLimit = 2 * time.Second

// ReplyWindow is how long after entering a journey a member's own action
// triggers a send still counts as the reply to it: quiet hours do not hold
// it, frequency caps do not cap it.
const ReplyWindow = time.Minute

// maxChain bounds how many due-now steps one task runs back to back; a
// journey that loops longer without waiting fails.
const maxChain = 50

// setLease moves the lease of visit id to until, if the visit is still
// running under the claim that made attempts (every claim increments it),
// waiting at most timeout.
func (e *Engine) setLease(id int64, attempts int, until time.Time, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(e.cfg.BaseContext, timeout)
	defer cancel()
	e.slot.lock(ctx)
	defer e.slot.unlock(ctx)
	return e.cfg.DB.WithContext(ctx).Model(&model.StepVisit{}).
		Where("id = ? AND status = ? AND attempts = ?", id, model.VisitRunning, attempts).
		Update("lease_until", until).Error
}

// releaseClaim gives back the claim on a visit whose run failed (usually the
// database went away mid-step), so the task's next retry or the sweeper runs
// it as soon as the database is back instead of after the lease. It retries
// every second in the background until it succeeds, the lease would have
// ended anyway, or the engine stops. Only this claim is released: every
// claim increments attempts. A send already handed to a channel is not
// repeated by the re-run (its delivery row is found and settled).
func (e *Engine) releaseClaim(v *model.StepVisit) {
	id, attempts := v.ID, v.Attempts
	until := time.Now().Add(e.cfg.Lease)
	release := func() bool {
		return e.setLease(id, attempts, e.now().Add(-time.Millisecond), 2*time.Second) == nil
	}
	if release() {
		return
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for time.Now().Before(until) {
			select {
			case <-e.cfg.BaseContext.Done():
				return
			case <-t.C:
				if release() {
					return
				}
			}
		}
	}()
}

// stepResult is what executing a step decided.
type stepResult struct {
	outcome   string
	next      string
	status    string // model.VisitDone or model.VisitFailed
	endReason string // when next is empty
	retryAt   time.Time
	retryErr  error
	why       string // why it waits until retryAt; default "retry"
	// deliveries are status changes of delivery rows, written in the same
	// transaction as the visit's outcome.
	deliveries []deliveryUpdate
	// keepAttempts gives back the attempt the claim counted: the visit
	// waits for a quota, it did not fail.
	keepAttempts bool
}

type deliveryUpdate struct {
	id      int64
	channel string
	fields  map[string]any
}

func applyDeliveries(tx *gorm.DB, us []deliveryUpdate) error {
	for _, u := range us {
		if err := tx.Model(&model.Delivery{}).Where("id = ?", u.id).Updates(u.fields).Error; err != nil {
			return fmt.Errorf("journey: record delivery: %w", err)
		}
	}
	return nil
}

// finish records the visit's outcome on its own and returns the next visit
// (nil when the enrollment ended or another worker already finished this
// visit).
func (e *Engine) finish(ctx context.Context, c *Compiled, enr *model.Enrollment, m *model.Member, v *model.StepVisit, r stepResult, now time.Time) (*model.StepVisit, error) {
	var next *model.StepVisit
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := applyDeliveries(tx, r.deliveries); err != nil {
			return err
		}
		step, err := finishTransition(tx, enr, v, model.VisitRunning, r.status, r.outcome, r.next, r.endReason, now)
		if err != nil || step == "" {
			return err
		}
		next, err = newVisit(tx, c, enr, m, v.Seq+1, step, now, e.cfg.Lease)
		return err
	})
	if errors.Is(err, errConflict) {
		return nil, nil
	}
	if err == nil {
		e.counted(r)
	}
	return next, err
}

// counted adds a finished visit and its deliveries to the metrics.
func (e *Engine) counted(r stepResult) {
	e.metrics.steps.WithLabelValues(r.status).Inc()
	for _, d := range r.deliveries {
		if st, ok := d.fields["status"].(string); ok {
			e.metrics.deliveries.WithLabelValues(d.channel, st).Inc()
		}
	}
}

// reschedule puts a claimed visit back to scheduled at r.retryAt, on its own.
func (e *Engine) reschedule(ctx context.Context, v *model.StepVisit, r stepResult) error {
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return rescheduleVisit(tx, v, r)
	})
	if err != nil {
		return err
	}
	e.rescheduled(v, r)
	return nil
}

// rescheduleVisit records r's deliveries and puts the claimed visit back to
// scheduled at r.retryAt, inside tx.
func rescheduleVisit(tx *gorm.DB, v *model.StepVisit, r stepResult) error {
	upd := map[string]any{"status": model.VisitScheduled, "due_at": r.retryAt, "lease_until": nil}
	if r.keepAttempts && v.Attempts > 0 {
		upd["attempts"] = v.Attempts - 1
	}
	if r.retryErr != nil {
		upd["error"] = redact.String(r.retryErr.Error())
	}
	if err := applyDeliveries(tx, r.deliveries); err != nil {
		return err
	}
	if err := tx.Model(&model.StepVisit{}).Where("id = ? AND status = ?", v.ID, model.VisitRunning).Updates(upd).Error; err != nil {
		return fmt.Errorf("journey: reschedule visit: %w", err)
	}
	return nil
}

// rescheduled logs and schedules a visit rescheduleVisit put back, once
// its transaction committed.
func (e *Engine) rescheduled(v *model.StepVisit, r stepResult) {
	why := r.why
	if why == "" {
		why = "retry"
	}
	e.log.Info("step rescheduled", "visit", v.ID, "step", v.StepID, "why", why, "due", r.retryAt, "err", r.retryErr)
	v.DueAt = r.retryAt
	e.schedule(v)
}

// send renders the step's message and delivers it on its channel, then on
// the fallback channel when the member is unreachable. The caller holds the
// database slot.
func (e *Engine) send(ctx context.Context, snd *Send, cs *Step, enr *model.Enrollment, v *model.StepVisit, m *model.Member, vars env, now time.Time) stepResult {
	msg, bad := e.renderSend(snd, v, enr, vars)
	if bad != nil {
		return *bad
	}
	r := e.deliver(ctx, cs, enr, v, m, snd.Channel, msg, now)
	return e.afterSend(ctx, snd, cs, enr, v, m, msg, r, now)
}

// renderSend renders the step's message; a template that fails gives the
// step's (failed) result instead.
func (e *Engine) renderSend(snd *Send, v *model.StepVisit, enr *model.Enrollment, vars env) (channels.Message, *stepResult) {
	rd := renderer{vars: vars}
	msg := channels.Message{
		Text:       rd.render(snd.texts["text"]),
		Subject:    rd.render(snd.texts["subject"]),
		URL:        rd.render(snd.texts["url"]),
		TemplateID: snd.TemplateID,
		Template:   snd.Template,
		Category:   cmp.Or(snd.Category, model.CategoryMarketing),
		Data:       map[string]string{},
		Extra:      map[string]string{},
	}
	for k, t := range snd.data {
		msg.Data[k] = rd.render(t)
	}
	for k, t := range snd.texts {
		if name, ok := cutExtra(k); ok {
			msg.Extra[name] = rd.render(t)
		}
	}
	if snd.html != nil {
		msg.Extra["html"] = rd.renderHTML(snd.html)
	}
	if rd.err != nil {
		e.log.Error("message template failed; nothing sent", "visit", v.ID, "step", v.StepID, "err", rd.err)
		r := rd.failed()
		return msg, &r
	}
	// What a WeCom add carries: the welcome code, the rep and the app.
	for _, k := range []string{"welcome_code", "user_id", "wecom_app"} {
		if v, ok := enr.Event[k].(string); ok && msg.Extra[k] == "" {
			msg.Extra[k] = v
		}
	}
	return msg, nil
}

// afterSend applies the step's fallbacks to the result r of its first
// channel: another channel (delivered here) or another step when the member
// is unreachable. The caller holds the database slot.
func (e *Engine) afterSend(ctx context.Context, snd *Send, cs *Step, enr *model.Enrollment, v *model.StepVisit, m *model.Member, msg channels.Message, r stepResult, now time.Time) stepResult {
	for _, ch := range snd.fbChans {
		if r.outcome != ReasonUnreachable {
			break
		}
		before := r.deliveries
		r = e.deliver(ctx, cs, enr, v, m, ch, msg, now)
		r.deliveries = append(before, r.deliveries...)
		if r.outcome == "sent" || r.outcome == "sandbox" {
			r.outcome = "fallback:" + ch
		}
	}
	if r.outcome == ReasonUnreachable && snd.fallback != "" {
		r.status, r.next, r.outcome = model.VisitDone, snd.fallback, "fallback:"+snd.fallback
	}
	return r
}

// handover is one message about to be handed to one channel: its delivery
// row, recorded (as sending) before the channel has it.
type handover struct {
	d         model.Delivery
	msg       channels.Message
	caps      channels.Capabilities
	hasSender bool
}

// newHandover prepares msg for channel: the recipient, the channel's
// capabilities and the delivery row to record.
func (e *Engine) newHandover(cs *Step, enr *model.Enrollment, v *model.StepVisit, m *model.Member, channel string, msg channels.Message, now time.Time) *handover {
	h := &handover{msg: msg}
	h.msg.Channel = channel
	h.msg.To = recipientOf(m)
	if e.cfg.Senders != nil {
		h.caps, h.hasSender = e.cfg.Senders.Capabilities(channel)
	}
	to := ""
	if h.caps.Address != nil {
		to = h.caps.Address(h.msg.To)
	}
	payload, _ := json.Marshal(h.msg)
	h.d = model.Delivery{StepVisitID: v.ID, Channel: channel, EnrollmentID: enr.ID, JourneyID: enr.JourneyID,
		MemberID: m.ID, To: to, Status: model.DeliverySending, Payload: string(payload), CreatedAt: now, Category: h.msg.Category,
		EnteredDay: enr.EnteredDay}
	return h
}

// deliver hands one message to one channel, at most once per visit and
// channel. The caller holds the database slot; it is given up while the
// channel sends.
func (e *Engine) deliver(ctx context.Context, cs *Step, enr *model.Enrollment, v *model.StepVisit, m *model.Member, channel string, msg channels.Message, now time.Time) stepResult {
	ok := stepResult{status: model.VisitDone, next: cs.Next, endReason: ReasonCompleted}
	h := e.newHandover(cs, enr, v, m, channel, msg, now)
	d := &h.d
	db := e.cfg.DB.WithContext(ctx)
	res := model.InsertIgnore(db).Create(d)
	if res.Error != nil {
		return stepResult{retryAt: now.Add(e.backoff(v.Attempts)), retryErr: res.Error}
	}
	if res.RowsAffected == 0 {
		// An earlier attempt of this visit got this far.
		if err := db.Where("step_visit_id = ? AND channel = ?", v.ID, channel).First(d).Error; err != nil {
			return stepResult{retryAt: now.Add(e.backoff(v.Attempts)), retryErr: err}
		}
		switch d.Status {
		case model.DeliverySent, model.DeliverySandbox:
			ok.outcome = d.Status
			return ok
		case model.DeliveryUnknown:
			ok.outcome = "unknown"
			return ok
		case model.DeliverySending:
			// The process died while the provider had the message. Only a
			// channel that dedupes by our idempotency key may be asked again.
			if !h.caps.Resend {
				ok.outcome = "unknown"
				ok.deliveries = []deliveryUpdate{{d.ID, channel, map[string]any{"status": model.DeliveryUnknown}}}
				return ok
			}
		}
		db.Model(d).Updates(map[string]any{"status": model.DeliverySending, "error": ""})
	}
	e.slot.unlock(ctx)
	r := e.handOver(ctx, h, cs, v, m, now)
	e.slot.lock(ctx)
	return r
}

// handOver sends a message whose delivery row is recorded and returns the
// step's result: the delivery's new status goes with it, to be written
// with the visit's outcome. It uses no database, except to record WeChat's
// word that the member does not follow (markUnsubscribed, rare).
func (e *Engine) handOver(ctx context.Context, h *handover, cs *Step, v *model.StepVisit, m *model.Member, now time.Time) stepResult {
	ok := stepResult{status: model.VisitDone, next: cs.Next, endReason: ReasonCompleted}
	d, channel, msg, caps := &h.d, h.d.Channel, h.msg, h.caps
	msg.DeliveryID = d.ID
	msg.IdempotencyKey = fmt.Sprintf("wj-%d", d.ID)
	var (
		result channels.Result
		err    error
	)
	if err = refusal(msg, caps, h.hasSender, m); err == nil {
		// A member whose subscription is unknown (known only from a brand
		// event or an import) is tried: WeChat's answer settles it.
		result, err = e.cfg.Senders.Send(ctx, msg)
		if caps.NeedsSubscribed && unfollowed(err) {
			e.markUnsubscribed(ctx, m, msg.To.AppID)
		}
	}
	sentAt := e.now()
	if err == nil {
		status := model.DeliverySent
		if result.Sandbox {
			status = model.DeliverySandbox
		}
		// Should this update be lost with its transaction, the row stays
		// "sending" and is never re-sent.
		ok.deliveries = []deliveryUpdate{{d.ID, channel, map[string]any{"status": status, "provider_id": result.ProviderID, "sent_at": sentAt}}}
		ok.outcome = status
		return ok
	}
	var cerr *channels.Error
	code := 0
	if errors.As(err, &cerr) {
		code = cerr.Code
	}
	status := model.DeliveryFailed
	if ambiguous(err) && !caps.Resend {
		status = model.DeliveryUnknown
	}
	upd := []deliveryUpdate{{d.ID, channel, map[string]any{"status": status, "error": redact.String(err.Error()), "error_code": code}}}
	e.log.Warn("delivery failed", "visit", v.ID, "channel", channel, "member", m.ID, "err", err)
	switch {
	case status == model.DeliveryUnknown:
		ok.outcome, ok.deliveries = "unknown", upd
		return ok
	case errors.Is(err, channels.ErrUnreachable):
		return stepResult{status: model.VisitDone, outcome: ReasonUnreachable, endReason: ReasonUnreachable, deliveries: upd}
	case errors.Is(err, channels.ErrPermanent):
		return stepResult{status: model.VisitFailed, outcome: "failed", endReason: ReasonFailed, deliveries: upd}
	case errors.Is(err, channels.ErrQuota):
		// A spent quota is no fault of the message: it waits for the
		// quota, however long, and the wait spends no attempt.
		wait := time.Minute
		if cerr != nil && cerr.RetryAfter > 0 {
			wait = cerr.RetryAfter
		}
		upd[0].fields["status"] = model.DeliveryHeld
		r := stepResult{retryAt: now.Add(wait), retryErr: err, deliveries: upd, why: "quota: held until " + now.Add(wait).Format(time.RFC3339)}
		r.keepAttempts = true
		return r
	case v.Attempts >= e.cfg.MaxAttempts:
		return stepResult{status: model.VisitFailed, outcome: "failed", endReason: ReasonFailed, deliveries: upd}
	default:
		return stepResult{retryAt: now.Add(e.backoff(v.Attempts)), retryErr: err, deliveries: upd}
	}
}

// recipientOf names member m on every channel.
func recipientOf(m *model.Member) channels.Recipient {
	return channels.Recipient{MemberID: m.ID, AppID: m.AppID, OpenID: m.OpenID, UnionID: m.UnionID,
		ExternalUserID: m.ExternalUserID, Phone: m.Phone, Email: m.Email, MPAppID: m.MPAppID, MPOpenID: m.MPOpenID}
}

// refusal is why msg is not handed to its channel's sender for member m
// (an error of channels' classes), or nil: the channel has no sender, m
// opted out of the channel's marketing messages, or m unfollowed the
// Official Account the channel needs.
func refusal(msg channels.Message, caps channels.Capabilities, hasSender bool, m *model.Member) error {
	switch {
	case !hasSender:
		return fmt.Errorf("journey: %w %q: %w", channels.ErrNoSender, msg.Channel, channels.ErrPermanent)
	case caps.OptOut != "" && msg.Category != model.CategoryTransactional && m.OptedOut(caps.OptOut):
		return &channels.Error{Class: channels.ErrUnreachable, Msg: "member opted out of marketing " + caps.OptOut + "; not sent"}
	case caps.NeedsSubscribed && m.Subscription(msg.To.AppID) == model.SubscriptionUnsubscribed:
		return &channels.Error{Class: channels.ErrUnreachable, Code: 43004, Msg: "member has unfollowed"}
	}
	return nil
}

// unfollowed reports whether WeChat answered that the member does not
// follow the account (43004) or refuses its messages (43101).
func unfollowed(err error) bool {
	var cerr *channels.Error
	return errors.As(err, &cerr) && (cerr.Code == 43004 || cerr.Code == 43101)
}

// markUnsubscribed records that the member does not follow the Official
// Account appid ("": their own), as WeChat just answered, so that no later
// send to them is attempted until they follow again. It takes the database
// slot, and commits on its own: what WeChat said holds whatever becomes of
// the visit.
func (e *Engine) markUnsubscribed(ctx context.Context, m *model.Member, appid string) {
	e.slot.lock(ctx)
	defer e.slot.unlock(ctx)
	err := e.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var cur model.Member
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("id", "app_id", "subscribed", "subscriptions").
			First(&cur, m.ID).Error; err != nil {
			return err
		}
		if cur.Subscription(appid) == model.SubscriptionUnsubscribed {
			return nil
		}
		cur.SetSubscription(appid, model.SubscriptionUnsubscribed)
		subs, err := json.Marshal(cur.Subscriptions)
		if err != nil {
			return err
		}
		return tx.Model(&model.Member{}).Where("id = ?", m.ID).
			Updates(map[string]any{"subscriptions": string(subs), "subscribed": cur.Subscribed}).Error
	})
	if err != nil {
		e.log.Warn("recording that WeChat says the member does not follow", "member", m.ID, "appid", appid, "err", err)
	}
	// m is not changed: the visits of one member share it and send side by
	// side. A later round of this batch may try WeChat once more; the next
	// batch loads the member as recorded here.
}

// ambiguous reports whether a failed send may still have reached the
// provider (a timeout after the request left).
func ambiguous(err error) bool {
	var cerr *channels.Error
	if errors.As(err, &cerr) {
		return false // the provider answered
	}
	return errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err)
}

func (e *Engine) backoff(attempt int) time.Duration {
	d := time.Second << min(attempt, 10)
	return min(d, 10*time.Minute)
}

// applyUpdate changes the member's tags and attributes, reading and writing
// the member in one transaction (concurrent updates from other journeys are
// kept), and stores a member.attribute_changed event per attribute it
// changed (deduped by the visit: a retried step stores none twice). It
// returns those events' ids, to be routed once it committed.
func (e *Engine) applyUpdate(db *gorm.DB, m *model.Member, u *Update, visit int64, now time.Time) ([]int64, error) {
	var ids []int64
	err := db.Transaction(func(tx *gorm.DB) error {
		var cur model.Member
		if err := tx.Select("id", "tags", "attrs").First(&cur, m.ID).Error; err != nil {
			return fmt.Errorf("journey: load member: %w", err)
		}
		for _, t := range u.AddTags {
			if !slices.Contains(cur.Tags, t) {
				cur.Tags = append(cur.Tags, t)
			}
		}
		cur.Tags = slices.DeleteFunc(cur.Tags, func(t string) bool { return slices.Contains(u.RemoveTags, t) })
		if cur.Attrs == nil {
			cur.Attrs = map[string]any{}
		}
		before := maps.Clone(cur.Attrs)
		for k, val := range u.Set {
			cur.Attrs[k] = val
		}
		cur.UpdatedAt = now
		if err := tx.Model(&cur).Select("tags", "attrs", "updated_at").Updates(&cur).Error; err != nil {
			return fmt.Errorf("journey: update member: %w", err)
		}
		if ref := m.Ref(); len(u.Set) > 0 && ref.Key() != "" {
			var err error
			if ids, err = emitAttributeChanges(tx, fmt.Sprintf("attr:visit:%d", visit), ref, before, cur.Attrs, now); err != nil {
				return err
			}
		}
		m.Tags, m.Attrs, m.UpdatedAt = cur.Tags, cur.Attrs, now
		return nil
	})
	return ids, err
}

// renderer executes message templates; missing values render empty. The
// first template that fails is kept in err: a broken message is not sent.
type renderer struct {
	vars env
	err  error
}

func (r *renderer) render(t *template.Template) string {
	if t == nil {
		return ""
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]any(r.vars)); err != nil {
		if r.err == nil {
			r.err = err
		}
		return ""
	}
	return strings.ReplaceAll(b.String(), "<no value>", "")
}

// renderHTML renders an HTML template (values escaped) with the
// renderer's variables.
func (r *renderer) renderHTML(t *htmltemplate.Template) string {
	var b strings.Builder
	if err := t.Execute(&b, map[string]any(r.vars)); err != nil {
		if r.err == nil {
			r.err = err
		}
		return ""
	}
	return strings.ReplaceAll(b.String(), "&lt;no value&gt;", "")
}

// failed is the step's result when a template failed.
func (r *renderer) failed() stepResult {
	return stepResult{status: model.VisitFailed, outcome: "template error", endReason: ReasonFailed}
}

func mergeMaps(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			if v != "" {
				out[k] = v
			}
		}
	}
	return out
}
