package model

import (
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// AddGrant records a subscription-message authorisation; a grant whose
// EventID is already recorded is ignored (the event was routed before).
func AddGrant(db *gorm.DB, g *SubscribeGrant) error {
	if g.GrantedAt.IsZero() {
		return errors.New("model: grant without GrantedAt")
	}
	if err := InsertIgnore(db).Create(g).Error; err != nil {
		return fmt.Errorf("model: record subscribe grant: %w", err)
	}
	return nil
}

// ClaimGrant spends one unused authorisation of the member for (appid,
// templateID) on deliveryID, oldest first, and reports whether there was
// one, returning it (its Source: "oa_once", "oa_popup", "miniprogram";
// its Scene, which an oa_once send must repeat). A delivery
// that already claimed one (a retry of the same delivery) gets it again;
// a delivery holding a grant of another (appid, template) claims nothing.
func ClaimGrant(db *gorm.DB, memberID int64, appid, templateID string, deliveryID int64, now time.Time) (grant SubscribeGrant, ok bool, err error) {
	var found bool
	err = db.Transaction(func(tx *gorm.DB) error {
		var mine []SubscribeGrant
		if err := tx.Where("delivery_id = ?", deliveryID).Limit(1).Find(&mine).Error; err != nil {
			return err
		}
		if len(mine) > 0 {
			// The delivery holds one already: it is this one, or the
			// delivery spent another account's and claims nothing here.
			g := mine[0]
			if g.MemberID == memberID && g.AppID == appid && g.TemplateID == templateID {
				found, grant = true, g
			}
			return nil
		}
		for range 3 { // another delivery may take the grant first
			var g SubscribeGrant
			err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).
				Where("member_id = ? AND app_id = ? AND template_id = ? AND delivery_id IS NULL", memberID, appid, templateID).
				Order("id").Limit(1).Find(&g).Error
			if err != nil {
				return err
			}
			if g.ID == 0 {
				return nil
			}
			res := tx.Model(&SubscribeGrant{}).Where("id = ? AND delivery_id IS NULL", g.ID).
				Updates(map[string]any{"delivery_id": deliveryID, "used_at": now.UTC()})
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 1 {
				found, grant = true, g
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return SubscribeGrant{}, false, fmt.Errorf("model: claim subscribe grant: %w", err)
	}
	return grant, found, nil
}

// ReleaseGrant gives back the authorisation deliveryID claimed, when the
// provider refused the message before it counted.
func ReleaseGrant(db *gorm.DB, deliveryID int64) error {
	err := db.Model(&SubscribeGrant{}).Where("delivery_id = ?", deliveryID).
		Updates(map[string]any{"delivery_id": nil, "used_at": nil}).Error
	if err != nil {
		return fmt.Errorf("model: release subscribe grant: %w", err)
	}
	return nil
}
