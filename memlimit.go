package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitEnv holds the container's memory limit in bytes; the
// Deployment fills it from the downward API (resourceFieldRef
// limits.memory).
const memoryLimitEnv = "MEMORY_LIMIT"

// memoryLimitShare is the part of the container's limit the Go runtime's
// memory may grow to before the GC works harder. The rest is for the
// binary's own pages, which count in the container's memory too: about
// 50 MB resident (RssFile) of the manager at 10,000 stores, where 0.9 of
// 256 MiB left it at 275 MB, 0.75 at 245 MB (docs/benchmarks.md).
const memoryLimitShare = 0.75

// goMemoryLimit is the soft memory limit for the Go runtime from the
// environment, or 0 to leave the runtime's own: an explicit GOMEMLIMIT wins,
// then memoryLimitShare of MEMORY_LIMIT. Without a limit the GC lets the
// heap reach twice what is live (GOGC=100): at 10,000 stores a manager with
// 170 MB live went to 400 MB, past its 256 MiB container limit.
func goMemoryLimit(getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0 // the runtime has read it already
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(getenv(memoryLimitEnv)), 10, 64)
	if err != nil || limit <= 0 {
		return 0
	}
	return int64(float64(limit) * memoryLimitShare)
}

// setMemoryLimit applies goMemoryLimit to the runtime; it returns what it set.
func setMemoryLimit() int64 {
	limit := goMemoryLimit(os.Getenv)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return limit
}
