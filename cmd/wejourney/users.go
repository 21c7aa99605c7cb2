package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/user"
	"strings"

	"gorm.io/gorm"

	"github.com/wejourney/wejourney/handler"
	"github.com/wejourney/wejourney/model"
)

// usersCmd runs `wejourney users add|list|role|remove`: the console's
// users and their roles (admin, operator, viewer). The last enabled admin
// cannot be removed or demoted.
func usersCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	const usage = "usage: wejourney users add USER [--role viewer|operator|admin] [--password-stdin] | list | role USER ROLE | remove USER"
	fs := subcommandFlags(args, map[string]string{
		"add":    "users add USER [--role viewer|operator|admin] [--password-stdin] [--config FILE]",
		"list":   "users list [--config FILE]",
		"role":   "users role USER viewer|operator|admin [--config FILE]",
		"remove": "users remove USER [--config FILE]",
	}, "users add|list|role|remove [flags]",
		"add USER: adds a console user with a role (default viewer) and an initial password.\n"+
			"list: lists the users, their roles and whether they are disabled.\n"+
			"role USER ROLE: changes a user's role (viewer reads; operator runs journeys; admin also manages users, keys, accounts).\n"+
			"remove USER: removes a user; their sessions end. The last admin cannot be removed or demoted.", stderr)
	role := fs.String("role", model.RoleViewer, "viewer, operator or admin (add)")
	fromStdin := fs.Bool("password-stdin", false, "read the initial password from the first line of standard input (add)")
	cfg, pos, err := parseSubcommand(fs, args, usage, stdout)
	if err != nil {
		return err
	}
	run := func(f func(db *gorm.DB) error) error { return withCredentialsDB(ctx, cfg, f) }
	switch args[0] {
	case "add":
		if len(pos) != 1 {
			return errors.New("usage: wejourney users add USER [--role viewer|operator|admin] [--password-stdin]")
		}
		name := pos[0]
		if err := model.CheckUsername(name); err != nil {
			return err
		}
		if model.RoleRank(*role) == 0 {
			return fmt.Errorf("--role: %w, got %q", model.ErrBadRole, *role)
		}
		pw, err := readNewPassword(stdin, stderr, name, *fromStdin)
		if err != nil {
			return err
		}
		if err := handler.CheckNewPassword(pw); err != nil {
			return err
		}
		hash, err := handler.HashPassword(pw)
		if err != nil {
			return err
		}
		return run(func(db *gorm.DB) error {
			if _, err := model.CreateAdminUser(ctx, db, name, hash, *role); err != nil {
				return err
			}
			cliAudit(ctx, db, stderr, handler.AuditUserAdd, name, map[string]any{"role": *role})
			fmt.Fprintf(stdout, "added user %s with role %s\n", name, *role)
			return nil
		})
	case "list":
		if len(pos) > 0 {
			return errors.New("usage: wejourney users list")
		}
		return run(func(db *gorm.DB) error {
			us, err := model.ListAdminUsers(ctx, db)
			if err != nil {
				return err
			}
			w := newTable(stdout)
			fmt.Fprintln(w, "USER\tROLE\tSTATUS\tCREATED")
			for _, u := range us {
				status := "enabled"
				if u.DisabledAt != nil {
					status = "disabled"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.Username, u.Role, status, when(&u.CreatedAt))
			}
			return w.Flush()
		})
	case "role":
		if len(pos) != 2 {
			return errors.New("usage: wejourney users role USER viewer|operator|admin")
		}
		name, to := pos[0], pos[1]
		return run(func(db *gorm.DB) error {
			before, err := model.SetUserRole(ctx, db, name, to)
			if err != nil {
				return err
			}
			cliAudit(ctx, db, stderr, handler.AuditUserRole, name, map[string]any{"from": before.Role, "to": to})
			fmt.Fprintf(stdout, "%s is now %s (was %s)\n", name, to, before.Role)
			return nil
		})
	case "remove":
		if len(pos) != 1 {
			return errors.New("usage: wejourney users remove USER")
		}
		return run(func(db *gorm.DB) error {
			before, err := model.RemoveAdminUser(ctx, db, pos[0])
			if err != nil {
				return err
			}
			cliAudit(ctx, db, stderr, handler.AuditUserRemove, pos[0], map[string]any{"role": before.Role})
			fmt.Fprintf(stdout, "removed user %s; their sessions have ended\n", pos[0])
			return nil
		})
	}
	return fmt.Errorf("unknown users command %q; %s", args[0], usage)
}

// cliAudit records a command's change in the audit log, as the operating
// system user who ran it (via "cli"). The change is made: a failure to
// record it is a warning.
func cliAudit(ctx context.Context, db *gorm.DB, stderr io.Writer, action, object string, detail map[string]any) {
	actor := "cli"
	if u, err := user.Current(); err == nil && u.Username != "" {
		actor = u.Username
	}
	e := model.AuditEntry{Actor: actor, Via: model.ViaCLI, Action: action, Object: object}
	if detail != nil {
		if b, err := json.Marshal(detail); err == nil {
			e.Detail = string(b)
		}
	}
	if err := model.RecordAudit(ctx, db, e); err != nil {
		fmt.Fprintf(stderr, "warning: %s done, but not recorded in the audit log: %v\n", strings.ReplaceAll(action, ".", " "), err)
	}
}
