package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/wechat"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/model"
)

// addSubscribeSender registers wechat.subscribe_message: sent through the
// app's WeChat client, spending the authorisations in the database's
// subscribe_grants.
func addSubscribeSender(senders *channels.Registry, d senderDeps) {
	senders.Add(d.wechat.Subscriptions(dbGrants{db: d.db, now: time.Now}))
}

// dbGrants implements wechat.Grants over model.ClaimGrant and
// model.ReleaseGrant.
type dbGrants struct {
	db  *gorm.DB // nil: a sender built only to name its channels
	now func() time.Time
}

var _ wechat.Grants = dbGrants{}

// errNoGrantStore is a claim without a database (`journeys validate`).
var errNoGrantStore = errors.New("subscription messages: no database")

// Claim implements wechat.Grants.
func (g dbGrants) Claim(ctx context.Context, memberID int64, appid, templateID string, deliveryID int64) (wechat.Grant, bool, error) {
	if g.db == nil {
		return wechat.Grant{}, false, errNoGrantStore
	}
	row, ok, err := model.ClaimGrant(g.db.WithContext(ctx), memberID, appid, templateID, deliveryID, g.now())
	if err != nil || !ok {
		return wechat.Grant{}, false, err
	}
	return wechat.Grant{Source: row.Source, Scene: row.Scene}, true, nil
}

// Release implements wechat.Grants.
func (g dbGrants) Release(ctx context.Context, deliveryID int64) error {
	if g.db == nil {
		return errNoGrantStore
	}
	return model.ReleaseGrant(g.db.WithContext(ctx), deliveryID)
}

// subscribeLinkSecret is the settings row whose value signs Official
// Account 一次性订阅消息 links, the same in every process.
const subscribeLinkSecret = "subscribe_link_secret"

// subscribeLinkConfig seeds (once) and loads the key that signs subscribe
// links, and fills in the handler's SubscribeLinks.
func subscribeLinkConfig(ctx context.Context, db *gorm.DB, publicURL, defaultAppID string, hc *handler.Config) error {
	db = db.WithContext(ctx)
	if err := model.InsertIgnore(db).Create(&model.Setting{Key: subscribeLinkSecret, Value: randomHex(32)}).Error; err != nil {
		return fmt.Errorf("seed subscribe link secret: %w", err)
	}
	var secret model.Setting
	if err := db.Where(&model.Setting{Key: subscribeLinkSecret}).First(&secret).Error; err != nil {
		return fmt.Errorf("load subscribe link secret: %w", err)
	}
	hc.SubscribeLinks = &handler.SubscribeLinkConfig{Secret: []byte(secret.Value), PublicURL: publicURL, DefaultAppID: defaultAppID}
	return nil
}
