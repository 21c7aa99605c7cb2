package graph

import (
	"encoding/xml"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// welcome is a small journey: a send, a wait_for with a timeout, a
// branch, a split and a reminder loop back to the wait.
func welcome() Graph {
	return Graph{
		Nodes: []Node{
			{ID: "hello", Title: "send", Lines: []string{"wechat.text: hi <b>&"}, Counts: []string{"reached 4"}},
			{ID: "wait_order", Title: "wait_for", Lines: []string{"order.paid · 2d"}},
			{ID: "check", Title: "branch"},
			{ID: "vip", Title: "split", Lines: []string{"50% / 50%"}},
			{ID: "a", Title: "send"},
			{ID: "b", Title: "send"},
			{ID: "remind", Title: "send"},
		},
		Edges: []Edge{
			{From: "hello", To: "wait_order", Kind: EdgeNext},
			{From: "wait_order", To: "check", Kind: EdgeNext},
			{From: "wait_order", To: "remind", Kind: EdgeTimeout, Label: "timeout"},
			{From: "check", To: "vip", Kind: EdgeArm, Label: `event.props.total > 100 && member.tags contains "vip"`},
			{From: "check", To: "a", Kind: EdgeArm, Label: "else"},
			{From: "vip", To: "a", Kind: EdgeArm, Label: "50%"},
			{From: "vip", To: "b", Kind: EdgeArm, Label: "50%"},
			{From: "remind", To: "wait_order", Kind: EdgeNext},
			{From: "b", To: "nowhere", Kind: EdgeNext},
		},
	}
}

func TestPlaceLayersAndLoops(t *testing.T) {
	l := Place(welcome())
	if len(l.Boxes) != 7 {
		t.Fatalf("%d boxes, want 7", len(l.Boxes))
	}
	if len(l.Lines) != 8 {
		t.Errorf("%d lines, want 8 (the edge to an unknown step left out)", len(l.Lines))
	}
	layer := func(id string) int { b, _ := l.Box(id); return b.Layer }
	for _, c := range []struct{ above, below string }{{"hello", "wait_order"}, {"wait_order", "check"}, {"check", "vip"}, {"vip", "a"}, {"vip", "b"}, {"wait_order", "remind"}} {
		if layer(c.above) >= layer(c.below) {
			t.Errorf("%s (layer %d) is not above %s (layer %d)", c.above, layer(c.above), c.below, layer(c.below))
		}
	}
	for _, ln := range l.Lines {
		if want := ln.From == "remind" && ln.To == "wait_order"; ln.Back != want {
			t.Errorf("edge %s→%s back=%v, want %v", ln.From, ln.To, ln.Back, want)
		}
	}
	for i, a := range l.Boxes {
		if a.X < 0 || a.Y < 0 || a.X+a.W > l.Width || a.Y+a.H > l.Height {
			t.Errorf("box %s (%d,%d %dx%d) is outside %dx%d", a.ID, a.X, a.Y, a.W, a.H, l.Width, l.Height)
		}
		for _, b := range l.Boxes[i+1:] {
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("boxes %s and %s overlap", a.ID, b.ID)
			}
		}
	}
}

func TestWriteSVG(t *testing.T) {
	var b strings.Builder
	if err := Place(welcome()).WriteSVG(&b, `Journey "welcome" <1>`); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	// Well-formed XML: escaped text cannot break it.
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("the SVG is not well-formed: %v\n%s", err, svg)
			}
			break
		}
	}
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, `viewBox="0 0 `) || !strings.Contains(svg, `width="100%"`) {
		t.Errorf("the SVG does not scale with viewBox: %.200s", svg)
	}
	if n := strings.Count(svg, "<rect"); n != 7 {
		t.Errorf("%d boxes drawn, want 7", n)
	}
	for _, id := range []string{"hello", "wait_order", "check", "vip", "a", "b", "remind"} {
		if !strings.Contains(svg, `data-step="`+id+`"`) {
			t.Errorf("no box for step %s", id)
		}
	}
	if n := len(regexp.MustCompile(`<path class="e `).FindAllString(svg, -1)); n != 8 {
		t.Errorf("%d edges drawn, want 8", n)
	}
	if n := strings.Count(svg, `class="e e-next back"`); n != 1 {
		t.Errorf("%d back edges drawn dashed, want 1 (remind → wait_order)", n)
	}
	// check → a skips vip's layer: it goes round the left of every box.
	skip := regexp.MustCompile(`<path class="e e-arm skip" d="M(\d+),\d+ C(\d+),`).FindStringSubmatch(svg)
	if skip == nil {
		t.Errorf("the edge check → a, past vip's layer, is not drawn round the boxes")
	} else {
		gutter, _ := strconv.Atoi(skip[2])
		for _, bx := range Place(welcome()).Boxes {
			if gutter >= bx.X {
				t.Errorf("the skipping edge runs at x=%d, over box %s at x=%d", gutter, bx.ID, bx.X)
			}
		}
	}
	if !strings.Contains(svg, "hi &lt;b&gt;&amp;") || strings.Contains(svg, "hi <b>") {
		t.Error("a box's text is not escaped")
	}
	if !strings.Contains(svg, "event.props.total &gt; 100…") {
		t.Errorf("a long branch condition is not shortened: %s", svg)
	}
	for _, w := range []string{"50%", "timeout", "reached 4"} {
		if !strings.Contains(svg, ">"+w+"<") {
			t.Errorf("the SVG lacks the text %q", w)
		}
	}
}

func TestShorten(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"a   b\n c", 10, "a b c"},
		{"abcdefghijkl", 6, "abcde…"},
		{"欢迎关注我们的公众号", 8, "欢迎关…"},
		{"欢迎", 4, "欢迎"},
	} {
		if got := Shorten(c.in, c.n); got != c.want {
			t.Errorf("Shorten(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestEmptyGraph(t *testing.T) {
	var b strings.Builder
	if err := Place(Graph{}).WriteSVG(&b, "empty"); err != nil || !strings.Contains(b.String(), "</svg>") {
		t.Fatalf("empty graph: %v %s", err, b.String())
	}
}
