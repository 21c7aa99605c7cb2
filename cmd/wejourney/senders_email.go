package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/channels"
	"github.com/wejourney/wejourney/channels/email"
	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/model"
)

// emailTokenSecret is the settings row whose value signs the email
// channel's tracking and unsubscribe tokens when WEJOURNEY_SECRET_KEY is
// not set (the same in every process), and verifies older tokens once it
// is.
const emailTokenSecret = "email_token_secret"

// addEmailSender registers the SMTP sender of WEJOURNEY_SMTP_URL on the
// email channel; without it, nothing (the log sender serves email).
func addEmailSender(senders *channels.Registry, d senderDeps) error {
	if d.cfg.SMTPURL == "" {
		return nil
	}
	tokens, err := emailTokens(context.Background(), d.db, d.cfg)
	if err != nil {
		return err
	}
	s, err := email.New(email.Config{SMTPURL: d.cfg.SMTPURL, From: d.cfg.EmailFrom, PublicURL: publicURL(d.cfg), Tokens: tokens})
	if err != nil {
		return err
	}
	senders.Add(s)
	return nil
}

// emailConfig gives the handler the verifier of email tokens, for the
// open pixel, click redirect and unsubscribe routes. They are served
// whatever WEJOURNEY_SMTP_URL says: links of mail sent before it was
// unset still work.
func (a *App) emailConfig(ctx context.Context, hc *handler.Config) error {
	tokens, err := emailTokens(ctx, a.DB, a.Cfg)
	if err != nil {
		return err
	}
	hc.EmailTokens = tokens
	return nil
}

// emailTokens returns the signer of email tokens. Its keys: one derived
// from each WEJOURNEY_SECRET_KEY key (the first signs), then the install's
// random emailTokenSecret settings row (signs when there is no secret
// key). With no database (`journeys validate`, which sends nothing) and no
// secret key, a random key of this process alone.
func emailTokens(ctx context.Context, db *gorm.DB, cfg config.Config) (*email.Tokens, error) {
	secrets, err := cfg.SecretKeys()
	if err != nil {
		return nil, fmt.Errorf("WEJOURNEY_SECRET_KEY: %w", err)
	}
	var keys [][]byte
	for _, k := range secrets {
		m := hmac.New(sha256.New, k)
		m.Write([]byte("wejourney email tokens v1"))
		keys = append(keys, m.Sum(nil))
	}
	if db != nil {
		db = db.WithContext(ctx)
		if err := model.InsertIgnore(db).Create(&model.Setting{Key: emailTokenSecret, Value: randomHex(32)}).Error; err != nil {
			return nil, fmt.Errorf("seed email token secret: %w", err)
		}
		var s model.Setting
		if err := db.Where(&model.Setting{Key: emailTokenSecret}).First(&s).Error; err != nil {
			return nil, fmt.Errorf("load email token secret: %w", err)
		}
		keys = append(keys, []byte(s.Value))
	}
	if len(keys) == 0 {
		k := make([]byte, 32)
		rand.Read(k)
		keys = append(keys, k)
	}
	return email.NewTokens(keys...)
}

// publicURL is WEJOURNEY_PUBLIC_URL, or http:// and the listen address.
func publicURL(cfg config.Config) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	return "http://" + cfg.HTTPAddr
}
