package specs

import (
	"fmt"
	"hash/fnv"

	"github.com/robfig/cron/v3"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// cronParser parses schedules as the Kubernetes CronJob controller does
// (robfig/cron's standard parser: 5 fields or @descriptors).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// EffectiveSchedule is the cleanup schedule in force: the spec's, or when it
// is empty an hourly one at a minute hashed from namespace/name, stable for
// one store and spread across many so they do not all clean up at minute 0.
func EffectiveSchedule(store *v1.SessionStore) string {
	if store.Spec.Cleanup.Schedule != "" {
		return store.Spec.Cleanup.Schedule
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(store.Namespace + "/" + store.Name))
	return fmt.Sprintf("%d * * * *", h.Sum32()%60)
}

// ValidateSchedule parses schedule as the CronJob controller will, so a
// schedule that passed admission but that Kubernetes would refuse (such as a
// range 50-10) is reported on the SessionStore instead of failing later.
func ValidateSchedule(schedule string) error {
	if _, err := cronParser.Parse(schedule); err != nil {
		return fmt.Errorf("spec.cleanup.schedule %q: %v", schedule, err)
	}
	return nil
}

// ParseSchedule parses a schedule as the CronJob controller does.
func ParseSchedule(schedule string) (cron.Schedule, error) {
	return cronParser.Parse(schedule)
}
