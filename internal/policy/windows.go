package policy

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// cronParser reads schedules as the Kubernetes CronJob controller does.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// window is one of a policy's windows, parsed.
type window struct {
	kind     v1.CleanupWindowKind
	schedule cron.Schedule
	duration time.Duration
}

// Windows are a policy's windows read in its time zone.
type Windows struct {
	loc     *time.Location
	windows []window
}

// Location loads a policy's time zone; UTC when unset.
func Location(tz *string) (*time.Location, error) {
	if tz == nil || *tz == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return nil, fmt.Errorf("spec.timeZone %q: %v", *tz, err)
	}
	return loc, nil
}

// ParseWindows reads spec's windows; an error names the window that cannot
// be read or never opens (such as on the 31st of February), since such a
// window must hold runs rather than be silently ignored.
func ParseWindows(spec *v1.ClusterSessionCleanupPolicySpec, now time.Time) (*Windows, error) {
	loc, err := Location(spec.TimeZone)
	if err != nil {
		return nil, err
	}
	w := &Windows{loc: loc}
	for i, cw := range spec.Windows {
		sched, err := cronParser.Parse(cw.Schedule)
		if err != nil {
			return nil, fmt.Errorf("spec.windows[%d].schedule %q: %v", i, cw.Schedule, err)
		}
		if sched.Next(now.In(loc)).IsZero() {
			return nil, fmt.Errorf("spec.windows[%d].schedule %q never comes due", i, cw.Schedule)
		}
		if cw.Duration.Duration <= 0 {
			return nil, fmt.Errorf("spec.windows[%d].duration must be positive", i)
		}
		w.windows = append(w.windows, window{kind: cw.Kind, schedule: sched, duration: cw.Duration.Duration})
	}
	return w, nil
}

// openAt tells whether w is open at t, and when it next opens or closes.
// It is open when it opened within the last duration: the first start
// after t-duration is not after t.
func (w window) openAt(t time.Time) (open bool, change time.Time) {
	start := w.schedule.Next(t.Add(-w.duration))
	if !start.IsZero() && !start.After(t) {
		return true, start.Add(w.duration)
	}
	return false, w.schedule.Next(t)
}

// AllowClosedThrough tells whether the policy has allow windows and none of
// them is open at any instant from from to until: a run made at from could
// not start by until, whatever else holds it.
func (w *Windows) AllowClosedThrough(from, until time.Time) bool {
	from = from.In(w.loc)
	allows := false
	for _, win := range w.windows {
		if win.kind != v1.WindowAllow {
			continue
		}
		allows = true
		open, opens := win.openAt(from)
		if open || (!opens.IsZero() && !opens.After(until)) {
			return false
		}
	}
	return allows
}

// State is the window state at now (Open, Closed or Denied) and when it may
// next change: a window opening or closing.
func (w *Windows) State(now time.Time) (string, time.Time) {
	now = now.In(w.loc)
	var allows, allowOpen, denied bool
	var next time.Time
	for _, win := range w.windows {
		open, change := win.openAt(now)
		if !change.IsZero() && (next.IsZero() || change.Before(next)) {
			next = change
		}
		switch {
		case win.kind == v1.WindowDeny:
			denied = denied || open
		default:
			allows = true
			allowOpen = allowOpen || open
		}
	}
	switch {
	case denied:
		return v1.WindowStateDenied, next
	case allows && !allowOpen:
		return v1.WindowStateClosed, next
	}
	return v1.WindowStateOpen, next
}

// minutesPerDay is the number of clock slots a daily schedule can take.
const minutesPerDay = 24 * 60

// AllowedClock returns, for each minute of the day in the policy's zone,
// whether some allow window is open at that clock time on some day of a
// week; nil when the policy has no allow window (every time is allowed).
// H hashes into these minutes, so a hashed run falls inside a window.
func (w *Windows) AllowedClock() []bool {
	var coverage []int // +1 where an occurrence starts, -1 where it ends, by minute
	var allowed []bool
	ref := time.Date(2001, 1, 1, 0, 0, 0, 0, w.loc) // a Monday: a whole week of occurrences follows
	for _, win := range w.windows {
		if win.kind != v1.WindowAllow {
			continue
		}
		if allowed == nil {
			allowed = make([]bool, minutesPerDay)
			coverage = make([]int, 2*minutesPerDay+1)
		}
		if win.duration >= 24*time.Hour {
			return allDay()
		}
		span := int(win.duration / time.Minute)
		for t := win.schedule.Next(ref.Add(-time.Minute)); !t.IsZero() && t.Before(ref.AddDate(0, 0, 7)); t = win.schedule.Next(t) {
			start := t.Hour()*60 + t.Minute()
			coverage[start]++
			coverage[start+max(span, 1)]--
		}
	}
	if allowed == nil {
		return nil
	}
	open := 0
	for m := 0; m < 2*minutesPerDay; m++ {
		open += coverage[m]
		if open > 0 {
			allowed[m%minutesPerDay] = true
		}
	}
	return allowed
}

func allDay() []bool {
	all := make([]bool, minutesPerDay)
	for i := range all {
		all[i] = true
	}
	return all
}
