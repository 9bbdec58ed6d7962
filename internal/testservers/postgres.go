// Package testservers starts private servers for tests, from the binaries
// hack/start-services.sh installs, for what the shared servers cannot show.
package testservers

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// PasswordPostgres starts a PostgreSQL cluster of the test's own that asks
// every TCP client for a SCRAM password (the shared server on 5432 trusts
// 127.0.0.1, so it never checks one), and stops it when the test ends. It
// returns the cluster's host:port and the password of its superuser,
// postgres. initdb and postgres refuse to run as root, so as root they run
// as the postgres user.
func PasswordPostgres(t testing.TB) (addr, superPassword string) {
	t.Helper()
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		t.Fatalf("no PostgreSQL server binaries under /usr/lib/postgresql: run hack/start-services.sh")
	}
	slices.Sort(initdbs)
	binDir := filepath.Dir(initdbs[len(initdbs)-1])

	dir, err := os.MkdirTemp("", "pgtest-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	command := func(name string, args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(binDir, name), args...)
	}
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		command = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(binDir, name)}, args...)...)
		}
	}
	run := func(cmd *exec.Cmd) {
		t.Helper()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}

	random := make([]byte, 8)
	_, _ = rand.Read(random)
	superPassword = "super-" + hex.EncodeToString(random)
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(superPassword+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	run(command("initdb", "-D", data, "-U", "postgres", "--pwfile", pwFile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"))

	port := FreePort(t)
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB", port, dir)
	run(command("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o", opts, "start"))
	t.Cleanup(func() {
		if out, err := command("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
			t.Errorf("stopping the test cluster: %v\n%s", err, out)
		}
	})
	return fmt.Sprintf("127.0.0.1:%d", port), superPassword
}
