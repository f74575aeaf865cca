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

// failureCounter counts recent failures per key; a key is forgotten after window without a
// new failure.
type failureCounter struct {
	mu     sync.Mutex
	window time.Duration
	m      map[string]failures
}

type failures struct {
	count int
	last  time.Time
}

func newFailureCounter(window time.Duration) *failureCounter {
	return &failureCounter{window: window, m: map[string]failures{}}
}

func (f *failureCounter) add(key string, now time.Time) failures {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.getLocked(key, now)
	if len(f.m) >= maxTrackedKeys {
		for k, v := range f.m {
			if now.Sub(v.last) > f.window {
				delete(f.m, k)
			}
		}
	}
	e.count++
	e.last = now
	f.m[key] = e
	return e
}

func (f *failureCounter) get(key string, now time.Time) failures {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getLocked(key, now)
}

func (f *failureCounter) getLocked(key string, now time.Time) failures {
	e, ok := f.m[key]
	if ok && now.Sub(e.last) > f.window {
		delete(f.m, key)
		return failures{}
	}
	return e
}

func (f *failureCounter) reset(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, key)
}

// tryCounter counts code tries per key for ttl from the moment the key was restarted (or
// first tried), mirroring how a real code counts its tries for its lifetime; see checkCode.
type tryCounter struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]tries
}

type tries struct {
	n     int
	start time.Time
}

func newTryCounter(ttl time.Duration) *tryCounter {
	return &tryCounter{ttl: ttl, m: map[string]tries{}}
}

// take counts one try under key unless it already has maxTries; n is the new count.
func (c *tryCounter) take(key string, now time.Time, maxTries int) (n int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.m[key]
	if !found || !now.Before(e.start.Add(c.ttl)) {
		e = tries{start: now}
	}
	if e.n >= maxTries {
		return e.n, false
	}
	e.n++
	c.put(key, e, now)
	return e.n, true
}

// restart begins a new lifetime for key with no tries, as a newly sent code would.
func (c *tryCounter) restart(key string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put(key, tries{start: now}, now)
}

func (c *tryCounter) put(key string, e tries, now time.Time) {
	if _, found := c.m[key]; !found && len(c.m) >= maxTrackedKeys {
		for k, v := range c.m {
			if !now.Before(v.start.Add(c.ttl)) {
				delete(c.m, k)
			}
		}
	}
	c.m[key] = e
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
