package main

import (
	"runtime/debug"
	"testing"
)

// The Deployment passes the container's memory limit; the GC's soft limit is
// 75% of it, and an explicit GOMEMLIMIT is left to the runtime.
func TestGoMemoryLimitFromTheContainerLimit(t *testing.T) {
	cases := []struct {
		name            string
		gomemlimit, env string
		want            int64
	}{
		{"256Mi limit", "", "268435456", 201326592},
		{"no limit given", "", "", 0},
		{"not a number", "", "256Mi", 0},
		{"GOMEMLIMIT set explicitly", "200MiB", "268435456", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"GOMEMLIMIT": c.gomemlimit, memoryLimitEnv: c.env}
			if got := goMemoryLimit(func(k string) string { return env[k] }); got != c.want {
				t.Fatalf("goMemoryLimit = %d, want %d", got, c.want)
			}
		})
	}
}

func TestSetMemoryLimitReachesTheRuntime(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv(memoryLimitEnv, "1000000000")
	if set := setMemoryLimit(); set != 750000000 {
		t.Fatalf("setMemoryLimit = %d, want 750000000", set)
	}
	if got := debug.SetMemoryLimit(-1); got != 750000000 {
		t.Fatalf("the runtime's limit is %d, want 750000000", got)
	}
}
