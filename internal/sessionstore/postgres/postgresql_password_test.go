package postgres

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// The shared server trusts 127.0.0.1; on a cluster that checks passwords,
// a wrong one gets the server's real 28P01 and a right one full of URL
// syntax must arrive intact.
func TestPostgresPasswordIsChecked(t *testing.T) {
	ctx := pgTestCtx(t)
	addr, superPassword := testservers.PasswordPostgres(t)
	admin := pgTestConnect(t, (&url.URL{Scheme: "postgresql", User: url.UserPassword("postgres", superPassword),
		Host: addr, Path: "/postgres", RawQuery: "sslmode=disable"}).String())

	const password = "p@ss:w/rd?x#y%z 20 & more+"
	role := "pgtest_pw_" + pgTestRandom()
	pgTestExec(t, admin, "CREATE ROLE "+role+" LOGIN PASSWORD "+pgTestQuoteLiteral(password))
	pgTestExec(t, admin, "CREATE DATABASE "+role+" OWNER "+role)
	storeURL := func(pw string) string {
		return (&url.URL{Scheme: "postgresql", User: url.UserPassword(role, pw), Host: addr, Path: "/" + role, RawQuery: "sslmode=disable"}).String()
	}

	t.Run("wrong password", func(t *testing.T) {
		for _, wrong := range []string{"not it", password[:len(password)-1]} {
			err := pgTestStore(t, sessionstore.Config{URL: storeURL(wrong)}).Ping(ctx)
			pgTestWantKind(t, err, sessionstore.ErrAuth, password)
			pgTestWantKind(t, err, sessionstore.ErrAuth, wrong)
			if !strings.Contains(err.Error(), "28P01") {
				t.Fatalf("the error does not carry the server's 28P01: %v", err)
			}
		}
	})
	t.Run("right password", func(t *testing.T) {
		s := pgTestStore(t, sessionstore.Config{URL: storeURL(password), CreateTable: true, CreateExpiryIndex: true})
		if _, err := s.EnsureSchema(ctx); err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if _, err := s.Cleanup(ctx, sessionstore.CleanupOptions{}); err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
	})
}
