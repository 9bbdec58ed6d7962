// Package backends links every session store backend into a binary: each
// backend registers itself with sessionstore.New when its package loads.
// Import it for its side effect wherever stores are opened.
package backends

import (
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem"
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/memcached"
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/mongodb"
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/mysql"
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/postgres"
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/redis"
)
