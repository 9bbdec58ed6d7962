package sessionstore

import (
	"fmt"
	"sort"
)

// constructors maps a backend name to its constructor; each backend's file
// registers itself in init, so a backend's code stays in its package.
var constructors = map[string]func(Config) (Store, error){}

func Register(backend string, newStore func(Config) (Store, error)) {
	constructors[backend] = newStore
}

// New returns the Store for cfg.Backend. It validates cfg and prepares a
// client but does not connect: Ping, EnsureSchema and Cleanup do.
func New(cfg Config) (Store, error) {
	newStore, ok := constructors[cfg.Backend]
	if !ok {
		names := make([]string, 0, len(constructors))
		for name := range constructors {
			names = append(names, name)
		}
		sort.Strings(names)
		return nil, &Error{Kind: ErrConfig, Op: "new store", Err: fmt.Errorf("unknown backend %q (want one of %v)", cfg.Backend, names)}
	}
	return newStore(cfg)
}
