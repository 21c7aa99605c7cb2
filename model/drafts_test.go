package model

import (
	"errors"
	"testing"
	"time"
)

// TestJourneyDrafts saves, replaces, reads and deletes a draft on each
// database: one draft per key, the last save wins.
func TestJourneyDrafts(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			db := testDB(t, dialect)
			if err := Migrate(db); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if _, err := GetDraft(ctx, db, "welcome"); !errors.Is(err, ErrNoDraft) {
				t.Fatalf("a draft before any save: %v", err)
			}
			at := time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC)
			for i, src := range []string{"key: welcome\n", "key: welcome\nname: 欢迎\n"} {
				if err := SaveDraft(ctx, db, JourneyDraft{Key: "welcome", Source: src, UpdatedBy: "op", UpdatedAt: at.Add(time.Duration(i) * time.Minute)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := SaveDraft(ctx, db, JourneyDraft{Key: "other", Source: "key: other\n", UpdatedBy: "admin", UpdatedAt: at}); err != nil {
				t.Fatal(err)
			}
			d, err := GetDraft(ctx, db, "welcome")
			if err != nil || d.Source != "key: welcome\nname: 欢迎\n" || d.UpdatedBy != "op" || !d.UpdatedAt.Equal(at.Add(time.Minute)) {
				t.Fatalf("the draft after two saves: %+v, %v", d, err)
			}
			var n int64
			db.Model(&JourneyDraft{}).Count(&n)
			if n != 2 {
				t.Errorf("%d drafts, want one per key (2)", n)
			}
			if err := DeleteDraft(ctx, db, "welcome"); err != nil {
				t.Fatal(err)
			}
			if _, err := GetDraft(ctx, db, "welcome"); !errors.Is(err, ErrNoDraft) {
				t.Errorf("the deleted draft: %v", err)
			}
			if _, err := GetDraft(ctx, db, "other"); err != nil {
				t.Errorf("deleting one draft took another: %v", err)
			}
		})
	}
}
