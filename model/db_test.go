package model

import (
	"errors"
	"path/filepath"
	"testing"

	"gorm.io/gorm"
)

func TestMigrate(t *testing.T) {
	db, err := Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckMigrated(db); !errors.Is(err, ErrNotMigrated) {
		t.Fatalf("CheckMigrated on an empty database = %v, want ErrNotMigrated", err)
	}
	for i := range 2 { // applying again is a no-op
		if err := Migrate(db); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	if err := CheckMigrated(db); err != nil {
		t.Fatalf("CheckMigrated after Migrate: %v", err)
	}
	var applied []string
	db.Table("schema_migrations").Pluck("id", &applied)
	if len(applied) != len(Migrations()) {
		t.Errorf("schema_migrations holds %v, want one row per migration (%d)", applied, len(Migrations()))
	}
	// The unique dedupe key is what makes WeChat's retries no-ops.
	ev := Event{DedupeKey: "k", Type: "t", Source: "s"}
	if err := db.Create(&ev).Error; err != nil {
		t.Fatal(err)
	}
	ev2 := Event{DedupeKey: "k", Type: "t", Source: "s"}
	if err := db.Create(&ev2).Error; !errors.Is(err, gorm.ErrDuplicatedKey) {
		t.Errorf("second event with the same dedupe key: %v, want a duplicated-key error", err)
	}
}
