package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The image has no /usr/share/zoneinfo: the binary must carry the zone
// database itself, or spec.cleanup.timeZone stops resolving in the operator's
// Pod while every test on a machine with zoneinfo still passes.
func TestZoneDatabaseIsCompiledIn(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "time/tzdata" {
			return
		}
	}
	t.Fatal("the operator does not link time/tzdata")
}
