package cleanupcmd

import (
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// progressLogger logs the first batch and then at most one line per
// interval, and keeps the latest report in case a failing backend returns
// an empty one.
type progressLogger struct {
	mu       sync.Mutex
	out      io.Writer
	name     string
	interval time.Duration
	lastLog  time.Time
	latest   sessionstore.Report
	seen     bool
	// atBatchEnd runs after the line is logged.
	atBatchEnd func()
}

func (p *progressLogger) observe(r sessionstore.Report) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.Kept = maps.Clone(r.Kept)
	p.latest, p.seen = r, true
	if now := time.Now(); p.lastLog.IsZero() || now.Sub(p.lastLog) >= p.interval {
		p.lastLog = now
		fmt.Fprintf(p.out, "%s: progress: %s; %s so far (%s)\n", p.name, countsOf(r), batchesOf(r.Batches), roundDuration(r.Duration))
	}
	if p.atBatchEnd != nil {
		p.atBatchEnd()
	}
}

func (p *progressLogger) complete(final sessionstore.Report) sessionstore.Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen && final.Batches < p.latest.Batches {
		return p.latest
	}
	return final
}
