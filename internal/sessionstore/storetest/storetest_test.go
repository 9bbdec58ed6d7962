package storetest

import (
	"strings"
	"testing"
)

func TestRedactedMasksURLPasswords(t *testing.T) {
	args := []string{"write", "mysql+pymysql://sessions:p%40ss%3Aw0rd@127.0.0.1:3306/db", "sessions", "3"}
	got := strings.Join(redacted(args), " ")
	if strings.Contains(got, "w0rd") || !strings.Contains(got, "mysql+pymysql://sessions:xxxxx@127.0.0.1:3306/db") {
		t.Fatalf("redacted to %q", got)
	}
	if args[1] != "mysql+pymysql://sessions:p%40ss%3Aw0rd@127.0.0.1:3306/db" {
		t.Fatal("the arguments themselves were changed")
	}
}
