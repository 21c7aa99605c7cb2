package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/util"

	"github.com/wejourney/wejourney/config"
	"github.com/wejourney/wejourney/internal/fakewecom"
	"github.com/wejourney/wejourney/internal/fakewx"
	"github.com/wejourney/wejourney/journey"
)

// The WeCom app of `bench --welcomes`.
const (
	benchCorpID     = "wwbench000000001"
	benchAgentID    = "1000001"
	benchWeComToken = "bench-wecom-token"
	benchWeComAES   = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	benchAPIKey     = "bench-api-key"
)

// welcomeJourney answers every WeCom add with a welcome; marketingJourney
// sends a template message for every campaign event the brand posts.
const (
	welcomeJourney = `key: bench-wecom-welcome
name: 压测企微欢迎语
trigger: { event: wecom.contact_added }
steps:
  - id: welcome
    send: { channel: wecom.welcome, text: "欢迎添加 {{ .event.state }}" }
`
	marketingJourney = `key: bench-marketing
name: 压测营销群发
trigger: { event: campaign.sent }
steps:
  - id: push
    send: { channel: wechat.template, template_id: TPL_CAMPAIGN, data: { first: "双十二 {{ .event.batch }}" } }
`
)

// welcomesConfig adds the WeCom app, its fake API and the events-API key
// to the bench's configuration.
func welcomesConfig(cfg *config.Config, wecomURL string) {
	cfg.WeComCorpID, cfg.WeComAgentID, cfg.WeComSecret = benchCorpID, benchAgentID, "bench-wecom-secret"
	cfg.WeComToken, cfg.WeComAESKey, cfg.WeComAPIBase = benchWeComToken, benchWeComAES, wecomURL
	cfg.APIKey, cfg.EventsRate = benchAPIKey, "0"
}

// welcomesResult is what `bench --welcomes` measured.
type welcomesResult struct {
	posted, postErrors  int           // marketing events accepted, requests refused
	postTook            time.Duration // posting them
	queuedAtStart       int           // marketing sends not yet made when the first welcome callback went
	tasksAtStart        int           // tasks in the marketing queue then (routing the campaign events)
	queuedAtEnd         int           // … when the last welcome was used
	welcomes, errors    int           // welcome callbacks sent, not answered "success"
	latency             []time.Duration
	lost, doubled, late int // codes never used, used twice (41051), used after 20 s (41050)
	marketingSent       int
	marketingDrained    time.Duration
}

// runWelcomesBench posts o.marketing campaign events (one template message
// each, on the marketing queue), then, while those sends are queued, sends
// o.welcomes WeCom contact-added callbacks with fresh welcome codes at
// o.welcomeRate, and reports how soon each code reached send_welcome_msg.
//
// The marketing queue is paused while the campaign is posted and resumed as
// the first welcome goes, as when a scheduled campaign falls due at once: all
// of its routing and sends are queued when the welcomes begin.
func runWelcomesBench(ctx context.Context, base string, rdb redis.UniversalClient, fake *fakewx.Server, wc *fakewecom.Server, o benchOpts, stdout io.Writer) error {
	var res welcomesResult
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if err := insp.PauseQueue(journey.QueueMarketing); err != nil {
		return fmt.Errorf("--welcomes: pause the marketing queue: %w", err)
	}
	paused := true
	resume := func() error {
		if !paused {
			return nil
		}
		paused = false
		if err := insp.UnpauseQueue(journey.QueueMarketing); err != nil {
			return fmt.Errorf("--welcomes: resume the marketing queue: %w", err)
		}
		return nil
	}
	defer resume()
	client := benchClient(o)
	marketingSent := func() int {
		n := 0
		for _, m := range fake.Messages() {
			if m.TemplateID == "TPL_CAMPAIGN" {
				n++
			}
		}
		return n
	}

	// 1. The marketing burst, through the events API, 1,000 a request.
	start := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sem  = make(chan struct{}, 4)
		perr error
	)
	for first := 0; first < o.marketing; first += 1000 {
		n := min(1000, o.marketing-first)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var sb strings.Builder
			sb.WriteString(`{"events": [`)
			for i := first; i < first+n; i++ {
				if i > first {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `{"id": "mkt-%d", "type": "campaign.sent", "member": {"openid": "om_%d", "appid": "wxbench000000001"}, "props": {"batch": "%d"}}`, i, i, first/1000)
			}
			sb.WriteString("]}")
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/events", strings.NewReader(sb.String()))
			req.Header.Set("Authorization", "Bearer "+benchAPIKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.postErrors++
				perr = err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				res.postErrors++
				perr = fmt.Errorf("POST /api/v1/events: %s", resp.Status)
				return
			}
			res.posted += n
		}()
	}
	wg.Wait()
	res.postTook = time.Since(start)
	if res.posted == 0 && perr != nil {
		return fmt.Errorf("--marketing: %w", perr)
	}

	// 2. The welcomes, while the marketing sends are queued.
	if info, err := insp.GetQueueInfo(journey.QueueMarketing); err == nil {
		res.tasksAtStart = info.Size
	}
	if err := resume(); err != nil {
		return err
	}
	res.queuedAtStart = res.posted - marketingSent()
	codes := make([]string, o.welcomes)
	sentAt := make([]time.Time, o.welcomes)
	every := time.Duration(float64(time.Second) / o.welcomeRate)
	tick := time.NewTicker(every)
	var cwg sync.WaitGroup
	for i := range o.welcomes {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
		// WeCom knows the contact it reports, so its lookup answers.
		wc.AddContact(fakewecom.Contact{ExternalUserID: fmt.Sprintf("wm_bench_%d", i), Name: fmt.Sprintf("bench %d", i)})
		codes[i] = wc.IssueWelcomeCode()
		sentAt[i] = time.Now()
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			ok := postWeComAdd(ctx, client, base, fmt.Sprintf("wm_bench_%d", i), codes[i])
			if !ok {
				mu.Lock()
				res.errors++
				mu.Unlock()
			}
		}()
	}
	tick.Stop()
	cwg.Wait()
	res.welcomes = o.welcomes

	// 3. Wait for every code to be used (20 s is WeCom's limit).
	deadline := time.Now().Add(fakewecom.WelcomeCodeTTL + 5*time.Second)
	used := map[string][]fakewecom.WelcomeCall{}
	for {
		clear(used)
		for _, w := range wc.Welcomes() {
			used[w.Code] = append(used[w.Code], w)
		}
		if len(used) >= o.welcomes || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	res.queuedAtEnd = res.posted - marketingSent()
	for i, code := range codes {
		calls := used[code]
		if len(calls) == 0 {
			res.lost++
			continue
		}
		if len(calls) > 1 {
			res.doubled++
		}
		if calls[0].Errcode == 41050 {
			res.late++
		}
		res.latency = append(res.latency, calls[0].At.Sub(sentAt[i]))
	}
	// 4. Let the marketing drain, for the record.
	for res.marketingSent = marketingSent(); res.marketingSent < res.posted && time.Since(start) < o.settle; res.marketingSent = marketingSent() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	res.marketingDrained = time.Since(start)

	fmt.Fprintf(stdout, "\nwelcomes: %d WeCom adds with a welcome_code at %.0f/s while %d marketing template sends are queued\n",
		o.welcomes, o.welcomeRate, o.marketing)
	fmt.Fprintf(stdout, "  marketing posted   %d events in %s (%d requests refused), through POST /api/v1/events\n",
		res.posted, res.postTook.Round(10*time.Millisecond), res.postErrors)
	fmt.Fprintf(stdout, "  marketing queued   %d sends not yet made when the first welcome callback went (%d routing tasks in the marketing queue, paused while the campaign was posted), %d when the last welcome was used\n",
		res.queuedAtStart, res.tasksAtStart, res.queuedAtEnd)
	fmt.Fprintf(stdout, "  callback → welcome p50 %s  p99 %s  max %s   (the code reaching send_welcome_msg; WeCom takes it within 20 s)\n",
		pct(res.latency, 50), pct(res.latency, 99), pct(res.latency, 100))
	fmt.Fprintf(stdout, "  welcome codes      lost %d, used twice %d, used too late %d; callbacks not answered success %d\n",
		res.lost, res.doubled, res.late, res.errors)
	fmt.Fprintf(stdout, "  marketing sent     %d of %d, %s after the first was posted\n",
		res.marketingSent, res.posted, res.marketingDrained.Round(10*time.Millisecond))
	return nil
}

// postWeComAdd sends a contact-added callback of the bench's WeCom app,
// encrypted and signed as WeCom does, and reports whether it was answered
// "success".
func postWeComAdd(ctx context.Context, client *http.Client, base, externalID, code string) bool {
	xml := fmt.Sprintf(`<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>`+
		`<ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[rep_bench]]></UserID>`+
		`<ExternalUserID><![CDATA[%s]]></ExternalUserID><State><![CDATA[store_001]]></State>`+
		`<WelcomeCode><![CDATA[%s]]></WelcomeCode></xml>`, benchCorpID, time.Now().Unix(), externalID, code)
	enc, err := util.EncryptMsg([]byte(util.RandomStr(16)), []byte(xml), benchCorpID, benchWeComAES)
	if err != nil {
		return false
	}
	ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), util.RandomStr(8)
	q := url.Values{"msg_signature": {util.Signature(benchWeComToken, ts, nonce, string(enc))}, "timestamp": {ts}, "nonce": {nonce}}
	body := "<xml><ToUserName><![CDATA[" + benchCorpID + "]]></ToUserName><Encrypt><![CDATA[" + string(enc) + "]]></Encrypt></xml>"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/wechat/work/"+benchCorpID+"/"+benchAgentID+"?"+q.Encode(), strings.NewReader(body))
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && string(answer) == "success"
}

// checkWelcomes refuses --welcomes with flags it cannot run with.
func (o benchOpts) checkWelcomes() error {
	switch {
	case o.welcomes < 0 || o.marketing < 0:
		return errors.New("--welcomes and --marketing: want 0 or more")
	case o.welcomes == 0:
		return nil
	case o.welcomeRate <= 0:
		return fmt.Errorf("--welcome-rate: want welcomes per second above 0, got %v", o.welcomeRate)
	case o.web > 0 || o.workers > 0:
		return errors.New("--welcomes runs on the embedded server or on --target: drop --web and --workers")
	case o.target != "" && o.redisURL == "":
		return errors.New("--welcomes with --target: --redis-url must name the server's Redis (the bench pauses its marketing queue while it posts the campaign); --write-journeys DIR prints the server's configuration")
	case o.steps > 0:
		return errors.New("--welcomes and --steps are separate runs: pick one")
	case o.role != RoleAll:
		return fmt.Errorf("--welcomes: the embedded server must run the journeys (--role all), got %q", o.role)
	}
	return nil
}
