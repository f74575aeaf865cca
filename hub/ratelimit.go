package hub

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedKeys bounds the memory of one limiter or failure counter: past it, idle keys are
// swept before a new one is added.
const maxTrackedKeys = 100_000

// keyedLimiter is a token bucket per key (an IP, an identifier). Times come from the hub's
// clock so tests can move past a Retry-After without sleeping.
type keyedLimiter struct {
	mu    sync.Mutex
	every time.Duration
	burst int
	m     map[string]*rate.Limiter
	seen  map[string]time.Time
}

func newKeyedLimiter(every time.Duration, burst int) *keyedLimiter {
	return &keyedLimiter{every: every, burst: burst, m: map[string]*rate.Limiter{}, seen: map[string]time.Time{}}
}

// allow takes one token for key, or says how long until one is available.
func (l *keyedLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[key]
	if !ok {
		if len(l.m) >= maxTrackedKeys {
			l.sweep(now)
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.m[key] = lim
	}
	l.seen[key] = now
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep forgets keys idle long enough for their bucket to be full again: they would behave
// exactly like a new key.
func (l *keyedLimiter) sweep(now time.Time) {
	full := l.every * time.Duration(l.burst)
	for k, t := range l.seen {
		if now.Sub(t) > full {
			delete(l.m, k)
			delete(l.seen, k)
		}
	}
}

// trackedKeys is per-key limiter state. Once it holds maxTrackedKeys keys, adding a new key
// first drops the expired ones, so cycling through keys cannot grow it without bound.
type trackedKeys[V any] struct {
	m       map[string]V
	expired func(v V, now time.Time) bool
}

func (t *trackedKeys[V]) put(key string, v V, now time.Time) {
	if _, found := t.m[key]; !found && len(t.m) >= maxTrackedKeys {
		for k, old := range t.m {
			if t.expired(old, now) {
				delete(t.m, k)
			}
		}
	}
	t.m[key] = v
}

// failureCounter counts recent failures per key; a key is forgotten after window without a
// new failure.
type failureCounter struct {
	mu     sync.Mutex
	window time.Duration
	keys   trackedKeys[failures]
}

type failures struct {
	count int
	last  time.Time
}

func newFailureCounter(window time.Duration) *failureCounter {
	f := &failureCounter{window: window}
	f.keys = trackedKeys[failures]{m: map[string]failures{}, expired: f.expired}
	return f
}

func (f *failureCounter) expired(e failures, now time.Time) bool { return now.Sub(e.last) > f.window }

func (f *failureCounter) add(key string, now time.Time) failures {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.getLocked(key, now)
	e.count++
	e.last = now
	f.keys.put(key, e, now)
	return e
}

func (f *failureCounter) get(key string, now time.Time) failures {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getLocked(key, now)
}

func (f *failureCounter) getLocked(key string, now time.Time) failures {
	e, ok := f.keys.m[key]
	if ok && f.expired(e, now) {
		delete(f.keys.m, key)
		return failures{}
	}
	return e
}

func (f *failureCounter) reset(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys.m, key)
}

// tryCounter counts code tries per key for ttl from the moment the key was restarted (or
// first tried), mirroring how a real code counts its tries for its lifetime; see checkCode.
type tryCounter struct {
	mu   sync.Mutex
	ttl  time.Duration
	keys trackedKeys[tries]
}

type tries struct {
	n     int
	start time.Time
}

func newTryCounter(ttl time.Duration) *tryCounter {
	c := &tryCounter{ttl: ttl}
	c.keys = trackedKeys[tries]{m: map[string]tries{}, expired: c.expired}
	return c
}

func (c *tryCounter) expired(e tries, now time.Time) bool { return !now.Before(e.start.Add(c.ttl)) }

// take counts one try under key unless it already has maxTries; n is the new count.
func (c *tryCounter) take(key string, now time.Time, maxTries int) (n int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.keys.m[key]
	if !found || c.expired(e, now) {
		e = tries{start: now}
	}
	if e.n >= maxTries {
		return e.n, false
	}
	e.n++
	c.keys.put(key, e, now)
	return e.n, true
}

// restart begins a new lifetime for key with no tries, as a newly sent code would.
func (c *tryCounter) restart(key string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys.put(key, tries{start: now}, now)
}

// backoff is the wait after the failures: none below threshold, then base doubling with each
// further failure, capped at ceiling. The cap is what keeps an attacker from locking the
// owner out for good.
func backoff(f failures, threshold int, base, ceiling time.Duration) time.Duration {
	if f.count < threshold {
		return 0
	}
	exp := min(f.count-threshold, 30)
	d := time.Duration(math.Min(float64(base)*math.Pow(2, float64(exp)), float64(ceiling)))
	return d
}

// rateLimited builds the rate_limited error with a whole-second Retry-After of at least 1.
func rateLimited(d time.Duration, format string, args ...any) *Error {
	e := Errorf(ERateLimited, format, args...)
	e.RetryAfterSeconds = max(1, int(math.Ceil(d.Seconds())))
	return e
}
