package model

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// Two admins demoting each other at once: one change goes through, the
// other is refused, and one enabled admin is always left.
func TestLastAdminStays(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			db := testDB(t, dialect)
			if err := Migrate(db); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			for _, n := range []string{"a", "b"} {
				if _, err := CreateAdminUser(ctx, db, n, "h", RoleAdmin); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := CreateAdminUser(ctx, db, "a", "h", RoleViewer); !errors.Is(err, ErrUserExists) {
				t.Errorf("adding a again: %v, want ErrUserExists", err)
			}
			for round := range 5 {
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i, n := range []string{"a", "b"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						switch round % 3 {
						case 0:
							_, errs[i] = SetUserRole(ctx, db, n, RoleOperator)
						case 1:
							_, errs[i] = SetUserDisabled(ctx, db, n, time.Now())
						default:
							_, errs[i] = RemoveAdminUser(ctx, db, n)
						}
					}()
				}
				wg.Wait()
				var admins int64
				db.Model(&AdminUser{}).Where("role = ? AND disabled_at IS NULL", RoleAdmin).Count(&admins)
				if admins != 1 {
					t.Fatalf("round %d: %d enabled admins left (errors %v)", round, admins, errs)
				}
				ok := 0
				for _, err := range errs {
					if err == nil {
						ok++
					} else if !errors.Is(err, ErrLastAdmin) && dialect != "sqlite" {
						t.Errorf("round %d: %v, want nil or ErrLastAdmin", round, err)
					}
				}
				if ok > 1 {
					t.Fatalf("round %d: both changes went through", round)
				}
				// Back to two admins for the next round.
				db.Exec("DELETE FROM admin_users")
				for _, n := range []string{"a", "b"} {
					if _, err := CreateAdminUser(ctx, db, n, "h", RoleAdmin); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}
