//go:build unix && !linux

package filesystem

// noAtime: O_NOATIME is Linux's.
const noAtime = 0
