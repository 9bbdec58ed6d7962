package policy

import (
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// Default ports, filled in so that host and host:default are one server.
const (
	postgresPort = 5432
	mysqlPort    = 3306
	mongoPort    = 27017
)

// ServerKey names the database server store's cleanup loads: lower-cased
// host:port with the default port filled in, a sorted comma-separated list
// for several hosts, the host of secretURL for stores whose address is
// only in a Secret, and pvc:<namespace>/<claim> for the filesystem. The
// database name is left out: the load limited is the server's. Empty when
// the address is not known (such as a URL not read yet).
func ServerKey(store *v1.SessionStore, secretURL string) string {
	spec := store.Spec
	switch {
	case spec.PostgreSQL != nil && spec.PostgreSQL.Host != "":
		return hostsPort(spec.PostgreSQL.Host, int(spec.PostgreSQL.Port), postgresPort)
	case spec.PostgreSQL != nil:
		return urlServers(secretURL, postgresPort)
	case spec.MySQL != nil && spec.MySQL.Host != "":
		return hostsPort(spec.MySQL.Host, int(spec.MySQL.Port), mysqlPort)
	case spec.MySQL != nil:
		return urlServers(secretURL, mysqlPort)
	case spec.MongoDB != nil:
		return urlServers(secretURL, mongoPort)
	case spec.Filesystem != nil:
		return "pvc:" + store.Namespace + "/" + spec.Filesystem.ClaimName
	}
	return ""
}

// hostsPort keys a host field, which may list several hosts as libpq's
// host=h1,h2 does, each on the one port: sorted, so that the order they
// are listed in does not make another server.
func hostsPort(hosts string, port, defaultPort int) string {
	var keys []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			keys = append(keys, hostPort(h, port, defaultPort))
		}
	}
	return sortedServers(keys)
}

// sortedServers joins host:port keys in one order, each once, so that the
// order a store lists its hosts in does not make another server.
func sortedServers(keys []string) string {
	slices.Sort(keys)
	return strings.Join(slices.Compact(keys), ",")
}

func hostPort(host string, port, defaultPort int) string {
	if port == 0 {
		port = defaultPort
	}
	return net.JoinHostPort(strings.ToLower(strings.Trim(host, "[]")), strconv.Itoa(port))
}

// urlServers reads the hosts of a scheme://user:pass@h1:p1,h2/db?x URL (the
// multi-host form libpq and MongoDB take, which net/url does not). A
// mongodb+srv:// name is kept as srv:<name>, its hosts being in DNS.
func urlServers(raw string, defaultPort int) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if end := strings.IndexAny(rest, "/?"); end >= 0 {
		rest = rest[:end]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	if rest == "" {
		return ""
	}
	if strings.HasSuffix(strings.ToLower(scheme), "+srv") {
		return "srv:" + strings.ToLower(rest)
	}
	var hosts []string
	for _, h := range strings.Split(rest, ",") {
		host, port := splitHostPort(h)
		if host == "" {
			continue
		}
		hosts = append(hosts, hostPort(host, port, defaultPort))
	}
	return sortedServers(hosts)
}

// splitHostPort splits host[:port] and [v6][:port]; port 0 when absent.
func splitHostPort(s string) (string, int) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		port, _ := strconv.Atoi(p)
		return h, port
	}
	return strings.Trim(s, "[]"), 0
}

// ServerHash is a label-safe digest of a server key (label values hold 63
// characters, keys may be longer).
func ServerHash(key string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return fmt.Sprintf("%016x", h.Sum64())
}
