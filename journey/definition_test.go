package journey

import (
	"fmt"
	"testing"
)

func TestProbe(t *testing.T) {
	for _, src := range []string{
		"key: a\nfoo: 1\ntrigger: {event: x}\nsteps:\n  - id: s\n    wait: 10m\n",
		"key: a\ntrigger: {event: x}\nsteps:\n  - id: s\n    wait: 10x\n  - id: t\n    wait: 5m\n    next: nope\n",
		"key: a\ntrigger: {event: x}\nsteps:\n  - id: s\n    send: {channel: wechat.text, txt: hi}\n  - id: t\n    wait: 5m\n    next: nope\n",
		"trigger: {event: x, where: 'event.scene startsWith'}\nsteps:\n  - id: s\n    wait: 5m\n    bogus: 1\n  - id: t\n    branch: []\n",
	} {
		_, err := Parse("f.yaml", []byte(src))
		fmt.Printf("%v\n-----\n", err)
	}
}
