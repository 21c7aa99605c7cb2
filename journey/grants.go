package journey

import (
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/events"
	"github.com/wejourney/wejourney/model"
)

// maxGrantTemplate and maxGrantScene are the lengths
// model.SubscribeGrant's columns hold.
const (
	maxGrantTemplate = 128
	maxGrantScene    = 64
)

// recordGrant records the subscription-message authorisation a routed
// event carries (wechat.subscribe_message_authorized,
// miniprogram.subscribe_authorized: one template per event, so one grant
// per event, keyed by the event id) for member m, inside the routing
// transaction; any other event records nothing. Routing the same event
// again records nothing more.
//
// An Official Account 一次性订阅 authorisation does not accumulate under
// one scene (WeChat allows one message per member, template and scene
// however often they confirm), so one is not recorded while the member
// holds an unused one of the same template and scene.
func recordGrant(tx *gorm.DB, ev *model.Event, m *model.Member, now time.Time) error {
	appid, templateID, scene, source, ok := events.SubscribeAuthorization(ev)
	if !ok || m == nil || m.ID == 0 || ev.ID == 0 {
		return nil
	}
	if !model.Fits(templateID, maxGrantTemplate) || !model.Fits(appid, model.MaxAppID) {
		return nil // no template WeChat hands out is this long
	}
	scene = model.FitKey(scene, maxGrantScene)
	if source == events.SubscribeOnce {
		var n int64
		err := tx.Model(&model.SubscribeGrant{}).Where("member_id = ? AND app_id = ? AND template_id = ? AND scene = ? AND source = ? AND delivery_id IS NULL",
			m.ID, appid, templateID, scene, source).Count(&n).Error
		if err != nil {
			return fmt.Errorf("journey: subscribe grants of member %d: %w", m.ID, err)
		}
		if n > 0 {
			return nil
		}
	}
	at := ev.At
	if at.IsZero() {
		at = now
	}
	eventID := ev.ID
	g := &model.SubscribeGrant{MemberID: m.ID, AppID: appid, TemplateID: templateID, Scene: scene,
		Source: source, EventID: &eventID, GrantedAt: at.UTC()}
	if err := model.AddGrant(tx, g); err != nil {
		return fmt.Errorf("journey: event %d: %w", ev.ID, err)
	}
	return nil
}
