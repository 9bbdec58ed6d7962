package policy

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
)

// DefaultSchedule is a governed store's schedule when neither it nor its
// policy sets one: hourly at a hashed minute, as for ungoverned stores.
const DefaultSchedule = "H * * * *"

func hash32(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}

// hashedMinute is the minute today's ungoverned stores get from seed
// (namespace/name), kept so that "H * * * *" moves no store.
func hashedMinute(seed string) int { return int(hash32(seed) % 60) }

// hashedHour is hashed apart from the minute, so that "H H * * *" has
// 24×60 = 1,440 distinct slots.
// FNV's low bits follow its input's (both minute and hour moduli are even),
// so the hour's hash is mixed first (MurmurHash3's finalizer).
func hashedHour(seed string) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte("hour/" + seed))
	return int(mix64(h.Sum64()) % 24)
}

func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Hashed tells whether schedule has H in its minute or hour field.
func Hashed(schedule string) bool {
	fields := strings.Fields(schedule)
	return len(fields) == 5 && (fields[0] == "H" || fields[1] == "H")
}

// ExpandH replaces H in the minute and hour fields of schedule with values
// hashed from seed. allowed (from Windows.AllowedClock; nil: all) says
// which clock minutes an allow window covers: the hashed values are moved,
// stably, into one of them when the plain hash falls outside.
func ExpandH(schedule, seed string, allowed []bool) (string, error) {
	fields := strings.Fields(schedule)
	if !Hashed(schedule) {
		if strings.Contains(schedule, "H") {
			return "", fmt.Errorf("schedule %q: H is allowed only as the whole minute or hour field", schedule)
		}
		return schedule, nil
	}
	// The clock minutes the non-H fields allow, read by the cron parser.
	probe := append([]string{}, fields...)
	for i := 0; i < 2; i++ {
		if probe[i] == "H" {
			probe[i] = "*"
		}
	}
	spec, err := cronParser.Parse(strings.Join(probe[:2], " ") + " * * *")
	if err != nil {
		return "", fmt.Errorf("schedule %q: %v", schedule, err)
	}
	bits := spec.(*cron.SpecSchedule)
	minute, hour := hashedMinute(seed), hashedHour(seed)
	fits := func(h, m int) bool {
		return (fields[0] == "H" && m == minute || fields[0] != "H" && bits.Minute&(1<<m) != 0) &&
			(fields[1] == "H" && h == hour || fields[1] != "H" && bits.Hour&(1<<h) != 0)
	}
	inWindow := func(h, m int) bool {
		return bits.Hour&(1<<h) != 0 && bits.Minute&(1<<m) != 0 && (allowed == nil || allowed[h*60+m])
	}
	var candidates [][2]int
	for h := 0; h < 24; h++ {
		for m := 0; m < 60; m++ {
			if fits(h, m) && inWindow(h, m) {
				return replaceH(fields, hour, minute), nil // the plain hash is fine
			}
		}
	}
	for h := 0; h < 24; h++ {
		for m := 0; m < 60; m++ {
			if inWindow(h, m) {
				candidates = append(candidates, [2]int{h, m})
			}
		}
	}
	if len(candidates) == 0 {
		return replaceH(fields, hour, minute), nil // no window meets the fixed fields
	}
	pick := candidates[mix64(uint64(hash32("window/"+seed)))%uint64(len(candidates))]
	return replaceH(fields, pick[0], pick[1]), nil
}

func replaceH(fields []string, hour, minute int) string {
	out := append([]string{}, fields...)
	if out[0] == "H" {
		out[0] = strconv.Itoa(minute)
	}
	if out[1] == "H" {
		out[1] = strconv.Itoa(hour)
	}
	return strings.Join(out, " ")
}
