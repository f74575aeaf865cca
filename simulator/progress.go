package simulator

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// NewProgress shows a load run's progress on w: a progress bar when w is a terminal, plain
// lines (at most one per tenth of a phase, and the status lines) otherwise, so logs and CI output stay
// readable.
func NewProgress(w io.Writer, terminal bool) Progress {
	if terminal {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w}
}

type barProgress struct {
	w    io.Writer
	mu   sync.Mutex
	name string
	bar  *progressbar.ProgressBar
}

func (p *barProgress) Phase(name string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if total <= 0 {
		total = -1 // a spinner
	}
	p.name = name
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-9s", name)),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
}

func (p *barProgress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Add64(n)
	}
}

func (p *barProgress) Status(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("%-9s %s", p.name, line))
	}
}

func (p *barProgress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}

type lineProgress struct {
	w           io.Writer
	mu          sync.Mutex
	name        string
	total, done int64
	nextTenth   int64
	start       time.Time
}

func (p *lineProgress) Phase(name string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.total, p.done, p.nextTenth, p.start = name, total, 0, 1, time.Now()
	if total > 0 {
		fmt.Fprintf(p.w, "%s: %d to do\n", name, total)
	} else {
		fmt.Fprintf(p.w, "%s\n", name)
	}
}

func (p *lineProgress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.total <= 0 {
		return
	}
	if p.nextTenth > 10 || p.done*10 < p.total*p.nextTenth {
		return
	}
	// One line however many tenths this step crossed, with the true share done.
	for p.nextTenth <= 10 && p.done*10 >= p.total*p.nextTenth {
		p.nextTenth++
	}
	fmt.Fprintf(p.w, "%s: %d/%d (%d%%) %.1fs\n", p.name, p.done, p.total, min(p.done*100/p.total, 100), time.Since(p.start).Seconds())
}

func (p *lineProgress) Status(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s: %s\n", p.name, line)
}

func (p *lineProgress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s: done, %d in %.1fs\n", p.name, p.done, time.Since(p.start).Seconds())
}
