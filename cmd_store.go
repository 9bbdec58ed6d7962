package main

import (
	"context"
	"os"

	"github.com/sessionstore/sessionstore-operator/internal/cleanupcmd"
	// Each backend registers itself with the store logic.
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func init() {
	subcommands["cleanup"] = func(args []string) int {
		return cleanupcmd.Main(context.Background(), args, os.LookupEnv, os.Stdout, os.Stderr)
	}
	subcommands["check"] = func(args []string) int {
		return cleanupcmd.Check(context.Background(), args, os.LookupEnv, os.Stdout, os.Stderr)
	}
}
