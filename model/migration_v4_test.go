package model

import (
	"testing"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
)

// Members from before v4 keep what was known of their subscription: a
// follower is subscribed, one who unfollowed is unsubscribed, one known only
// from a brand event is unknown (WeChat is asked at the first send).
func TestV4BackfillsSubscriptions(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := testDB(t, dialect)
			if err := gormigrate.New(db, migrateOptions(), Migrations()).MigrateTo(v3ID); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			for _, row := range []struct {
				openid     string
				subscribed bool
				at         *time.Time
			}{{"o-follows", true, &now}, {"o-left", false, &now}, {"o-brand", false, nil}} {
				if err := db.Exec("INSERT INTO members (app_id, open_id, subscribed, subscribed_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
					"wxapp", row.openid, row.subscribed, row.at, now, now).Error; err != nil {
					t.Fatal(err)
				}
			}
			if err := Migrate(db); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"o-follows": SubscriptionSubscribed, "o-left": SubscriptionUnsubscribed, "o-brand": SubscriptionUnknown}
			var ms []Member
			if err := db.Find(&ms).Error; err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if got := m.Subscription(""); got != want[m.OpenID] {
					t.Errorf("%s: subscription %q after v4; want %q", m.OpenID, got, want[m.OpenID])
				}
			}
		})
	}
}
