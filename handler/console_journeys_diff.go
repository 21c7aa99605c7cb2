package handler

import "strings"

// diffRow is one row of a side-by-side comparison of two texts: the line
// of each side (number 0: no line on that side) and how it changed:
// "same", "changed" (a line replaced), "removed" (only on the left) or
// "added" (only on the right).
type diffRow struct {
	LeftNo, RightNo int
	Left, Right     string
	Change          string
}

// diffMaxCells bounds the LCS table (lines × lines); larger texts are
// compared past their common first and last lines only, line by line.
const diffMaxCells = 4_000_000

// sideBySide compares two texts line by line (a longest common
// subsequence of lines) and pairs the removed and added lines between two
// common ones as changed lines.
func sideBySide(a, b string) []diffRow {
	al, bl := splitLines(a), splitLines(b)
	ops := lineOps(al, bl)
	var rows []diffRow
	var dels, adds []int // pending line indexes
	flush := func() {
		for k := 0; k < max(len(dels), len(adds)); k++ {
			r := diffRow{}
			if k < len(dels) {
				r.LeftNo, r.Left = dels[k]+1, al[dels[k]]
			}
			if k < len(adds) {
				r.RightNo, r.Right = adds[k]+1, bl[adds[k]]
			}
			switch {
			case r.LeftNo != 0 && r.RightNo != 0:
				r.Change = "changed"
			case r.LeftNo != 0:
				r.Change = "removed"
			default:
				r.Change = "added"
			}
			rows = append(rows, r)
		}
		dels, adds = dels[:0], adds[:0]
	}
	i, j := 0, 0
	for _, op := range ops {
		switch op {
		case '=':
			flush()
			rows = append(rows, diffRow{LeftNo: i + 1, RightNo: j + 1, Left: al[i], Right: bl[j], Change: "same"})
			i, j = i+1, j+1
		case '-':
			dels = append(dels, i)
			i++
		case '+':
			adds = append(adds, j)
			j++
		}
	}
	flush()
	return rows
}

// splitLines splits s into lines, without a last empty one.
func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// lineOps is the edit script from a to b: '=' a common line, '-' a line
// of a only, '+' a line of b only, in order.
func lineOps(a, b []string) []byte {
	// Common first and last lines need no table.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	ops := []byte(strings.Repeat("=", pre))
	if (len(ma)+1)*(len(mb)+1) > diffMaxCells {
		ops = append(ops, []byte(strings.Repeat("-", len(ma))+strings.Repeat("+", len(mb)))...)
	} else {
		// lcs[i][j]: the longest common subsequence of ma[i:] and mb[j:].
		w := len(mb) + 1
		lcs := make([]int32, (len(ma)+1)*w)
		for i := len(ma) - 1; i >= 0; i-- {
			for j := len(mb) - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(ma) && j < len(mb) {
			switch {
			case ma[i] == mb[j]:
				ops = append(ops, '=')
				i, j = i+1, j+1
			case lcs[(i+1)*w+j] >= lcs[i*w+j+1]:
				ops = append(ops, '-')
				i++
			default:
				ops = append(ops, '+')
				j++
			}
		}
		ops = append(ops, []byte(strings.Repeat("-", len(ma)-i)+strings.Repeat("+", len(mb)-j))...)
	}
	return append(ops, []byte(strings.Repeat("=", suf))...)
}
