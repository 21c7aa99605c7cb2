package handler

import (
	"fmt"
	"strings"
	"testing"
)

func TestSideBySide(t *testing.T) {
	t.Parallel()
	show := func(rows []diffRow) string {
		var b strings.Builder
		for _, r := range rows {
			fmt.Fprintf(&b, "%d:%s|%d:%s|%s\n", r.LeftNo, r.Left, r.RightNo, r.Right, r.Change)
		}
		return b.String()
	}
	for _, c := range []struct{ name, a, b, want string }{
		{"same", "a\nb\n", "a\nb", "1:a|1:a|same\n2:b|2:b|same\n"},
		{"one line changed", "key: w\ntext: hi\nnext: x\n", "key: w\ntext: hello\nnext: x\n",
			"1:key: w|1:key: w|same\n2:text: hi|2:text: hello|changed\n3:next: x|3:next: x|same\n"},
		{"added and removed", "a\nb\nc\n", "a\nc\nd\n", "1:a|1:a|same\n2:b|0:|removed\n3:c|2:c|same\n0:|3:d|added\n"},
		{"from nothing", "", "x\n", "0:|1:x|added\n"},
		{"moved line", "a\nb\nc\n", "c\na\nb\n", "0:|1:c|added\n1:a|2:a|same\n2:b|3:b|same\n3:c|0:|removed\n"},
	} {
		if got := show(sideBySide(c.a, c.b)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}
