package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"slices"
	"strings"
	"time"
)

// Run is one cleanup Job the gate looks at.
type Run struct {
	Namespace, Name string
	UID             types.UID
	// Store is the SessionStore's name, Server the hash of its server key,
	// Policy the governing policy's name.
	Store, Server, Policy string
	// Created orders the waiting runs: the first made starts first.
	Created time.Time
}

func (r Run) storeKey() string { return r.Namespace + "/" + r.Store }

// Gate is what decides whether a run may start: for each policy, whether
// runs may start at all now and its limits.
type Gate struct {
	Policies map[string]PolicyGate
}

// PolicyGate is one policy's part of the gate.
type PolicyGate struct {
	// Closed, when not empty, says why no run of the policy may start now
	// (suspended, a window).
	Closed string
	// MaxPerServer and MaxTotal: 0 means unlimited.
	MaxPerServer, MaxTotal int32
}

// Decision is what the gate decided for the waiting runs.
type Decision struct {
	// Start are the runs to start now, in order.
	Start []Run
	// Held says, by namespace/name of the Job, why a run still waits.
	Held map[string]string
}

// Admit decides which of waiting may start, given the runs already started
// and unfinished. A run starts when its policy is open, fewer than
// maxPerServer runs load its server, fewer than maxTotal run under its
// policy, and no other run of its store is started. The server count is
// over every gated run, whichever policy governs it: the load is the
// server's. A run whose policy is unknown (deleted) is not held.
func (g Gate) Admit(running, waiting []Run) Decision {
	perServer, perPolicy, activeStore := map[string]int32{}, map[string]int32{}, map[string]bool{}
	count := func(r Run) {
		perServer[r.Server]++
		perPolicy[r.Policy]++
		activeStore[r.storeKey()] = true
	}
	for _, r := range running {
		count(r)
	}
	ordered := slices.Clone(waiting)
	slices.SortStableFunc(ordered, func(a, b Run) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	d := Decision{Held: map[string]string{}}
	for _, r := range ordered {
		if reason := g.holds(r, perServer, perPolicy, activeStore); reason != "" {
			d.Held[r.Namespace+"/"+r.Name] = reason
			continue
		}
		d.Start = append(d.Start, r)
		count(r)
	}
	return d
}

func (g Gate) holds(r Run, perServer, perPolicy map[string]int32, activeStore map[string]bool) string {
	p, known := g.Policies[r.Policy]
	switch {
	case !known:
		return ""
	case p.Closed != "":
		return p.Closed
	case activeStore[r.storeKey()]:
		return "another run of the store is active"
	case p.MaxPerServer > 0 && perServer[r.Server] >= p.MaxPerServer:
		return fmt.Sprintf("maxPerServer %d reached on its server", p.MaxPerServer)
	case p.MaxTotal > 0 && perPolicy[r.Policy] >= p.MaxTotal:
		return fmt.Sprintf("maxTotal %d reached under policy %s", p.MaxTotal, r.Policy)
	}
	return ""
}
