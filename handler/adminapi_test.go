package handler

import (
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/journey"
	"github.com/wejourney/wejourney/model"
)

// adminAPI is a fresh router on its own SQLite database, with an admin API
// key "adm-key" and an events key "ev-key".
type adminAPI struct {
	h     http.Handler
	db    *gorm.DB
	quiet *slog.Logger
}

// newAdminAPI returns the router of a fresh database; seed runs on the
// database before the router is made, configure on its Config.
func newAdminAPI(t *testing.T, seed func(db *gorm.DB), configure func(*Config)) adminAPI {
	t.Helper()
	db, err := model.Open("sqlite", filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s, _ := db.DB(); s.Close() })
	if err := model.Migrate(db); err != nil {
		t.Fatal(err)
	}
	db.Create(&model.APIKey{Name: "admin", Hash: HashAPIKey("adm-key"), Scope: model.ScopeAdmin})
	db.Create(&model.APIKey{Name: "events", Hash: HashAPIKey("ev-key"), Scope: model.ScopeEvents})
	if seed != nil {
		seed(db)
	}
	quiet := slog.New(slog.DiscardHandler)
	ing := journey.NewIngestor(journey.IngestorConfig{DB: db})
	t.Cleanup(ing.Close)
	a := NewAdmin(AdminConfig{DB: db, Secret: []byte("secret"), Logger: quiet})
	t.Cleanup(a.Close)
	cfg := Config{DB: db, Ingestor: ing, Accounts: model.NewAccounts(db, nil), Admin: a, Logger: quiet}
	if configure != nil {
		configure(&cfg)
	}
	return adminAPI{h: New(cfg), db: db, quiet: quiet}
}
