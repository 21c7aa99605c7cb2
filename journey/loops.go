package journey

import (
	"fmt"
	"slices"
	"strings"
)

// checkLoops reports every loop of the step graph that goes through no
// step that waits (wait, wait_for, or an added kind whose Waits says it
// does): a member entering it would run its steps back to back without
// end. Loops through a wait are fine (a reminder every day until the
// member answers). The graph's edges are next, on_timeout, the arms of
// branch and split, and a send's fallback step. Each loop is reported once,
// on its first step in file order, naming its steps in order.
func checkLoops(steps []Step, byID map[string]*Step, sck []*Check) {
	index := map[string]int{} // step id -> its index in the file
	for i := range steps {
		if _, dup := index[steps[i].ID]; !dup && steps[i].ID != "" {
			index[steps[i].ID] = i
		}
	}
	// waits reports whether a step waits; a step whose kind is unknown
	// (already reported) counts as waiting, to report nothing more about it.
	waits := func(id string) bool {
		s := byID[id]
		if s == nil || s.Body == nil {
			return true
		}
		_, w := s.Body.Waits()
		return w
	}
	edges := func(s *Step) []string {
		var out []string
		add := func(id string, viaNext bool) {
			if id == "" || byID[id] == nil || waits(id) {
				return
			}
			if viaNext && id == s.ID {
				return // reported as "next points at itself"
			}
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
		add(s.Next, true)
		add(s.OnTimeout, false)
		if s.Body != nil {
			for _, r := range s.Body.Refs() {
				add(r.ID, false)
			}
			if snd, ok := s.Body.(*Send); ok {
				add(snd.fallback, false)
			}
		}
		return out
	}
	const (
		unseen = iota
		onPath
		finished
	)
	state := map[string]int{}
	var path []string
	reported := map[string]bool{}
	report := func(loop []string) {
		// Start the loop at its first step in file order.
		first := 0
		for i, id := range loop {
			if index[id] < index[loop[first]] {
				first = i
			}
		}
		loop = append(slices.Clone(loop[first:]), loop[:first]...)
		key := strings.Join(loop, "\x00")
		if reported[key] {
			return
		}
		reported[key] = true
		i := index[loop[0]]
		names := make([]string, len(loop)+1)
		for j, id := range loop {
			names[j] = fmt.Sprintf("%q", id)
		}
		names[len(loop)] = names[0]
		ck := sck[i]
		if ck == nil {
			return
		}
		ck.add(steps[i].Line, ck.where, fmt.Sprintf("loop %s has no wait or wait_for step: a member would go round it without end; put a wait in it",
			strings.Join(names, " → ")))
	}
	var visit func(id string)
	visit = func(id string) {
		state[id] = onPath
		path = append(path, id)
		for _, n := range edges(byID[id]) {
			switch state[n] {
			case unseen:
				visit(n)
			case onPath:
				report(path[slices.Index(path, n):])
			}
		}
		path = path[:len(path)-1]
		state[id] = finished
	}
	for i := range steps {
		id := steps[i].ID
		if id == "" || index[id] != i || waits(id) || state[id] != unseen {
			continue
		}
		visit(id)
	}
}
