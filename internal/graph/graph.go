// Package graph lays out a small directed graph (a journey's steps) in
// layers from the top down and writes it as SVG. It is pure Go: the
// console draws a journey on the server, so the page reads with
// JavaScript off, and the SVG scales to the width of a phone (viewBox).
//
// Edges that close a loop (a "goto" back to an earlier step) are found by
// a depth-first walk from the first node, left out of the layering, and
// drawn apart: dashed, curving round the right of the boxes.
package graph

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// Node is one box: an id, a title line (its kind), lines of summary and
// lines of counts, each drawn on a line of its own.
type Node struct {
	ID    string
	Title string
	Lines []string
	// Counts are drawn under Lines, in a second colour.
	Counts []string
	// Class is an extra CSS class of the box's group (e.g. the step kind).
	Class string
}

// Edge kinds change how an edge is drawn.
const (
	EdgeNext     = "next"
	EdgeArm      = "arm"
	EdgeTimeout  = "timeout"
	EdgeFallback = "fallback"
)

// Edge goes from one node to another, with an optional label.
type Edge struct {
	From, To string
	Label    string
	Kind     string
}

// Graph is the nodes (the first is where members enter) and edges to lay
// out. Edges naming an unknown node are left out.
type Graph struct {
	Nodes []Node
	Edges []Edge
}

// Box sizes and gaps, in SVG user units.
const (
	BoxWidth  = 220
	lineH     = 16
	padY      = 10
	gapX      = 40
	gapY      = 56
	margin    = 20
	loopSpace = 70 // room on the right for back edges
	skipSpace = 50 // room on the left for edges that skip layers
	maxChars  = 30 // characters a box's line holds
	labelMax  = 24
)

// Box is a node placed: its top-left corner and size.
type Box struct {
	Node
	X, Y, W, H int
	Layer      int
}

// Line is an edge placed: Back marks an edge that closes a loop.
type Line struct {
	Edge
	Back bool
}

// Layout is a graph placed in layers.
type Layout struct {
	Boxes  []Box
	Lines  []Line
	Width  int
	Height int
	index  map[string]int
}

// Box returns the box of node id.
func (l *Layout) Box(id string) (Box, bool) {
	i, ok := l.index[id]
	if !ok {
		return Box{}, false
	}
	return l.Boxes[i], true
}

// Place lays g out from the top down: a node's layer is one more than the
// deepest of the nodes with forward edges into it; edges back to a node
// still being walked (loops) are marked Back and do not count. Within a
// layer, nodes keep the order of g.Nodes.
func Place(g Graph) *Layout {
	l := &Layout{index: map[string]int{}}
	for _, n := range g.Nodes {
		if _, dup := l.index[n.ID]; dup {
			continue
		}
		l.index[n.ID] = len(l.Boxes)
		l.Boxes = append(l.Boxes, Box{Node: n})
	}
	out := make([][]int, len(l.Boxes)) // node -> edge indexes
	for _, e := range g.Edges {
		fi, ok1 := l.index[e.From]
		_, ok2 := l.index[e.To]
		if !ok1 || !ok2 {
			continue
		}
		out[fi] = append(out[fi], len(l.Lines))
		l.Lines = append(l.Lines, Line{Edge: e})
	}
	// Depth-first from each node in order (the first is the entry): an
	// edge to a node on the stack closes a loop.
	const (
		unseen = iota
		onStack
		done
	)
	state := make([]int, len(l.Boxes))
	var order []int // post-order
	var walk func(int)
	walk = func(n int) {
		state[n] = onStack
		for _, ei := range out[n] {
			t := l.index[l.Lines[ei].To]
			switch state[t] {
			case onStack:
				l.Lines[ei].Back = true
			case unseen:
				walk(t)
			}
		}
		state[n] = done
		order = append(order, n)
	}
	for i := range l.Boxes {
		if state[i] == unseen {
			walk(i)
		}
	}
	// Longest path layering over forward edges, in reverse post-order
	// (a topological order of the forward graph).
	layer := make([]int, len(l.Boxes))
	for k := len(order) - 1; k >= 0; k-- {
		n := order[k]
		for _, ei := range out[n] {
			if l.Lines[ei].Back {
				continue
			}
			t := l.index[l.Lines[ei].To]
			if layer[t] < layer[n]+1 {
				layer[t] = layer[n] + 1
			}
		}
	}
	var layers [][]int
	for i := range l.Boxes {
		for len(layers) <= layer[i] {
			layers = append(layers, nil)
		}
		layers[layer[i]] = append(layers[layer[i]], i)
	}
	widest := 0
	for _, ns := range layers {
		widest = max(widest, len(ns))
	}
	inner := max(widest*BoxWidth+(widest-1)*gapX, BoxWidth)
	y := margin
	for li, ns := range layers {
		h := 0
		for _, n := range ns {
			h = max(h, boxHeight(l.Boxes[n].Node))
		}
		rowW := len(ns)*BoxWidth + (len(ns)-1)*gapX
		x := margin + skipSpace + (inner-rowW)/2
		for _, n := range ns {
			b := &l.Boxes[n]
			b.X, b.Y, b.W, b.H, b.Layer = x, y, BoxWidth, h, li
			x += BoxWidth + gapX
		}
		y += h + gapY
	}
	l.Width = inner + 2*margin + loopSpace + skipSpace
	l.Height = y - gapY + margin
	if len(l.Boxes) == 0 {
		l.Width, l.Height = 2*margin, 2*margin
	}
	return l
}

func boxHeight(n Node) int {
	lines := 2 + len(n.Lines) + len(n.Counts) // id, title
	return lines*lineH + 2*padY
}

// Shorten cuts s to at most n columns (a Chinese character takes two),
// ending it with "…" when cut; runs of spaces become one.
func Shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if width(s) <= n {
		return s
	}
	w := 0
	for i, r := range s {
		rw := runeWidth(r)
		if w+rw > n-1 {
			return s[:i] + "…"
		}
		w += rw
	}
	return s
}

// width is s's width in columns.
func width(s string) int {
	w := 0
	for _, r := range s {
		w += runeWidth(r)
	}
	return w
}

// runeWidth is 2 for the wide characters of CJK text, else 1.
func runeWidth(r rune) int {
	if r >= 0x1100 && (r <= 0x115f || (r >= 0x2e80 && r <= 0xa4cf) || (r >= 0xac00 && r <= 0xd7a3) ||
		(r >= 0xf900 && r <= 0xfaff) || (r >= 0xfe30 && r <= 0xfe4f) || (r >= 0xff00 && r <= 0xff60) ||
		(r >= 0xffe0 && r <= 0xffe6) || (r >= 0x1f300 && r <= 0x1faff) || (r >= 0x20000 && r <= 0x3fffd)) {
		return 2
	}
	return 1
}

// esc escapes text for SVG (XML) content and attributes.
func esc(s string) string { return html.EscapeString(s) }

// WriteSVG writes the layout as one <svg> element that scales to its
// container's width (viewBox, width 100%). title is its accessible name.
func (l *Layout) WriteSVG(w io.Writer, title string) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" style="max-width:%dpx" role="img" aria-label="%s" class="jgraph">`,
		l.Width, l.Height, l.Width, esc(title))
	b.WriteString(`<title>` + esc(title) + `</title>`)
	b.WriteString(`<defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#888"/></marker>` +
		`<marker id="arrb" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#d48806"/></marker></defs>`)
	// Edges first, boxes over them.
	fanOut := map[string]int{} // from -> edges drawn so far
	outs := map[string]int{}
	for _, ln := range l.Lines {
		outs[ln.From]++
	}
	backs, skips := 0, 0
	for _, ln := range l.Lines {
		f, _ := l.Box(ln.From)
		t, _ := l.Box(ln.To)
		k := fanOut[ln.From]
		fanOut[ln.From]++
		cls := "e e-" + ln.Kind
		label := Shorten(ln.Label, labelMax)
		if ln.Back || t.Layer <= f.Layer {
			// Round the right of the boxes, back up to the target.
			backs++
			off := 12 * backs
			right := l.Width - margin - loopSpace + 30 + off
			x1, y1 := f.X+f.W, f.Y+f.H/2+k*6
			x2, y2 := t.X+t.W, t.Y+t.H/2
			fmt.Fprintf(&b, `<path class="%s back" d="M%d,%d C%d,%d %d,%d %d,%d" fill="none" stroke="#d48806" stroke-width="1.5" stroke-dasharray="6 4" marker-end="url(#arrb)"/>`,
				cls, x1, y1, right, y1, right, y2, x2, y2)
			if label != "" {
				fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#ad6800" text-anchor="end">%s</text>`, right-4, (y1+y2)/2, esc(label))
			}
			continue
		}
		if t.Layer-f.Layer > 1 {
			// Down the left of the boxes, past the layers between.
			skips++
			left := margin + skipSpace - 30 - 8*((skips-1)%3)
			x1, y1 := f.X, f.Y+f.H/2+k*6
			x2, y2 := t.X, t.Y+t.H/2
			fmt.Fprintf(&b, `<path class="%s skip" d="M%d,%d C%d,%d %d,%d %d,%d" fill="none" stroke="%s" stroke-width="1.5"%s marker-end="url(#arr)"/>`,
				cls, x1, y1, left, y1, left, y2, x2, y2, edgeStroke(ln.Kind), edgeDash(ln.Kind))
			if label != "" {
				fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#555" paint-order="stroke" stroke="#fff" stroke-width="3">%s</text>`, left+6, (y1+y2)/2, esc(label))
			}
			continue
		}
		n := outs[ln.From]
		x1 := f.X + f.W*(k+1)/(n+1)
		y1 := f.Y + f.H
		x2, y2 := t.X+t.W/2, t.Y
		my := (y1 + y2) / 2
		stroke, dash := edgeStroke(ln.Kind), edgeDash(ln.Kind)
		fmt.Fprintf(&b, `<path class="%s" d="M%d,%d C%d,%d %d,%d %d,%d" fill="none" stroke="%s" stroke-width="1.5"%s marker-end="url(#arr)"/>`,
			cls, x1, y1, x1, my, x2, my, x2, y2, stroke, dash)
		if label != "" {
			lx, ly := (x1+x2)/2, my+4
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#555" text-anchor="middle" paint-order="stroke" stroke="#fff" stroke-width="3">%s</text>`, lx, ly, esc(label))
		}
	}
	for i, bx := range l.Boxes {
		cls := "box"
		if bx.Class != "" {
			cls += " k-" + bx.Class
		}
		fill := "#fff"
		if i == 0 {
			fill = "#f0fbf4"
		}
		fmt.Fprintf(&b, `<g class="%s" data-step="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="%s" stroke="#07c160" stroke-width="1.5"/>`,
			esc(cls), esc(bx.ID), bx.X, bx.Y, bx.W, bx.H, fill)
		y := bx.Y + padY + 12
		tx := bx.X + 10
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold" fill="#222">%s</text>`, tx, y, esc(Shorten(bx.ID, maxChars-4)))
		y += lineH
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#07823f">%s</text>`, tx, y, esc(Shorten(bx.Title, maxChars)))
		for _, s := range bx.Lines {
			y += lineH
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#444">%s</text>`, tx, y, esc(Shorten(s, maxChars)))
		}
		for _, s := range bx.Counts {
			y += lineH
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#1677ff" class="counts">%s</text>`, tx, y, esc(Shorten(s, maxChars)))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	_, err := io.WriteString(w, b.String())
	return err
}

// edgeStroke is the colour of an edge of kind.
func edgeStroke(kind string) string {
	switch kind {
	case EdgeTimeout:
		return "#cf1322"
	case EdgeFallback:
		return "#722ed1"
	}
	return "#888"
}

// edgeDash is the stroke-dasharray attribute of an edge of kind.
func edgeDash(kind string) string {
	switch kind {
	case EdgeTimeout:
		return ` stroke-dasharray="3 3"`
	case EdgeFallback:
		return ` stroke-dasharray="2 4"`
	}
	return ""
}
