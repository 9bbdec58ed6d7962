package testservers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// PgBouncer starts Debian's pgbouncer (hack/start-services.sh installs it)
// in transaction pooling mode in front of the PostgreSQL server at
// pgHost:pgPort, with at most poolSize server connections per database
// and user, trusting every user (the server behind checks nothing either).
// It returns its host:port and stops it when the test ends. pgbouncer
// refuses to run as root, so as root it runs as the postgres user.
func PgBouncer(t testing.TB, pgHost string, pgPort, poolSize int) string {
	t.Helper()
	bin := pgbouncerBinary(t)
	dir, err := os.MkdirTemp("", "pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	port := FreePort(t)
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = %s
`, pgHost, pgPort, port, filepath.Join(dir, "users.txt"), poolSize, filepath.Join(dir, "pgbouncer.log"))
	writeFile(t, filepath.Join(dir, "users.txt"), `"postgres" ""`+"\n")
	writeFile(t, filepath.Join(dir, "pgbouncer.ini"), ini)

	return startPgBouncer(t, bin, dir, port)
}

// pgbouncerBinary finds pgbouncer, on PATH or where Debian puts it.
func pgbouncerBinary(t testing.TB) string {
	bin, err := exec.LookPath("pgbouncer")
	if err == nil {
		return bin
	}
	if _, statErr := os.Stat("/usr/sbin/pgbouncer"); statErr != nil {
		t.Fatalf("pgbouncer is not installed: run hack/start-services.sh")
	}
	return "/usr/sbin/pgbouncer"
}

// startPgBouncer runs pgbouncer on the configuration in dir until the test
// ends, and returns its address once it listens.
func startPgBouncer(t testing.TB, bin, dir string, port int) string {
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Fatalf("running as root, and no postgres user to run pgbouncer as: %v", err)
		}
		chownTo(t, dir, "postgres")
		cmd = exec.Command("runuser", "-u", "postgres", "--", bin, filepath.Join(dir, "pgbouncer.ini"))
	}
	// A group of its own, so stopping it reaches pgbouncer under runuser.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pgbouncer: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer exited: %v\n%s", err, log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return addr
		}
	}
	t.Fatalf("pgbouncer is not listening on %s", addr)
	return ""
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func chownTo(t testing.TB, dir, name string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
