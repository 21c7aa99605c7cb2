package wechat

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// AllowanceLeft is what a member's customer-service allowance with one
// Official Account still allows at a moment (Allowance.Left).
type AllowanceLeft struct {
	// Known is false when the member has no record: never seen
	// interacting, or the record expired. Sends are then attempted.
	Known bool
	// Messages is how many customer-service messages may still be sent.
	Messages int
	// Until is when the last open window closes (zero: none open).
	Until time.Time
}

// Left reads, without spending, what the member's allowance with appid
// still allows at now: the messages left in its open windows, and when
// the last of them closes.
func (a *Allowance) Left(ctx context.Context, appid, openid string, now time.Time) (AllowanceLeft, error) {
	h, err := a.rdb.HGetAll(ctx, allowanceKey(appid, openid)).Result()
	if err != nil {
		return AllowanceLeft{}, fmt.Errorf("wechat: read customer-service allowance: %w", err)
	}
	if len(h) == 0 {
		return AllowanceLeft{}, nil
	}
	out := AllowanceLeft{Known: true}
	for _, k := range []string{WindowEvent, WindowMessage} {
		until, _ := strconv.ParseInt(h[k+"u"], 10, 64)
		left, _ := strconv.Atoi(h[k+"l"])
		if until <= now.UnixMilli() || left <= 0 {
			continue
		}
		out.Messages += left
		if u := time.UnixMilli(until).UTC(); u.After(out.Until) {
			out.Until = u
		}
	}
	return out, nil
}
