package handler

import (
	"sync"

	"golang.org/x/time/rate"
)

// Log lines about refused requests are rate-limited per kind, so that a flood
// of forged callbacks cannot flood the log: each kind may log logBurst lines
// at once and logRate per second after that.
const (
	logRate  = 1
	logBurst = 5
)

// logLimiter decides which log lines of a kind are written. Kinds are
// constants chosen by the code (metric outcomes), never caller input, so its
// map stays small.
type logLimiter struct {
	mu    sync.Mutex
	kinds map[string]*kindLimit
}

type kindLimit struct {
	lim        *rate.Limiter
	suppressed int // lines dropped since the last one written
}

// allow reports whether a line of this kind may be written now and, if so,
// how many lines of the kind were dropped before it.
func (l *logLimiter) allow(kind string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = map[string]*kindLimit{}
	}
	k := l.kinds[kind]
	if k == nil {
		k = &kindLimit{lim: rate.NewLimiter(logRate, logBurst)}
		l.kinds[kind] = k
	}
	if !k.lim.Allow() {
		k.suppressed++
		return false, 0
	}
	suppressed, k.suppressed = k.suppressed, 0
	return true, suppressed
}
