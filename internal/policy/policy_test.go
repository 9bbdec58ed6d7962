package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

func pol(name string, prio int32, sel v1.CleanupPolicySelector, isDefault bool) v1.ClusterSessionCleanupPolicy {
	p := v1.ClusterSessionCleanupPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Priority, p.Spec.Selector = prio, sel
	if isDefault {
		p.Annotations = map[string]string{v1.DefaultPolicyAnnotation: "true"}
	}
	return p
}

func pgStore(ns, name string, labels map[string]string) *v1.SessionStore {
	return &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{Host: "DB.example", Database: "app"}},
	}
}

func TestSelect(t *testing.T) {
	shop := v1.CleanupPolicySelector{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}}
	web := v1.CleanupPolicySelector{StoreSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}}
	mongoOnly := v1.CleanupPolicySelector{Backends: []v1.Backend{v1.BackendMongoDB}}
	both := v1.CleanupPolicySelector{NamespaceSelector: shop.NamespaceSelector, StoreSelector: web.StoreSelector}
	webStore := pgStore("a", "s", map[string]string{"tier": "web"})
	plain := pgStore("a", "s", nil)
	shopNS := map[string]string{"team": "shop"}
	cases := []struct {
		name     string
		policies []v1.ClusterSessionCleanupPolicy
		store    *v1.SessionStore
		ns       map[string]string
		want     string
	}{
		{"none", nil, plain, nil, ""},
		{"namespace selector matches", []v1.ClusterSessionCleanupPolicy{pol("p", 0, shop, false)}, plain, shopNS, "p"},
		{"namespace selector misses", []v1.ClusterSessionCleanupPolicy{pol("p", 0, shop, false)}, plain, nil, ""},
		{"selectors are ANDed", []v1.ClusterSessionCleanupPolicy{pol("p", 0, both, false)}, plain, shopNS, ""},
		{"selectors are ANDed, both match", []v1.ClusterSessionCleanupPolicy{pol("p", 0, both, false)}, webStore, shopNS, "p"},
		{"backend misses", []v1.ClusterSessionCleanupPolicy{pol("p", 0, mongoOnly, false)}, plain, nil, ""},
		{"highest priority", []v1.ClusterSessionCleanupPolicy{pol("low", 1, web, false), pol("high", 100, shop, false)}, webStore, shopNS, "high"},
		{"ties by name", []v1.ClusterSessionCleanupPolicy{pol("b", 5, web, false), pol("a", 5, shop, false)}, webStore, shopNS, "a"},
		{"default when nothing selects", []v1.ClusterSessionCleanupPolicy{pol("d", 0, mongoOnly, true), pol("p", 0, shop, false)}, plain, nil, "d"},
		{"a selecting policy beats the default", []v1.ClusterSessionCleanupPolicy{pol("d", 1000, mongoOnly, true), pol("p", 0, shop, false)}, plain, shopNS, "p"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Select(c.policies, c.store, c.ns)
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != c.want {
				t.Errorf("Select = %q, want %q", name, c.want)
			}
		})
	}
}

func TestServerKey(t *testing.T) {
	fs := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "f"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendFilesystem, Filesystem: &v1.FilesystemSpec{ClaimName: "claim"}}}
	pgURL := &v1.SessionStore{Spec: v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{URLSecretRef: &v1.SecretKeySelector{}}}}
	my := &v1.SessionStore{Spec: v1.SessionStoreSpec{Backend: v1.BackendMySQL, MySQL: &v1.MySQLSpec{Host: "My.DB", Port: 3307}}}
	mongo := &v1.SessionStore{Spec: v1.SessionStoreSpec{Backend: v1.BackendMongoDB, MongoDB: &v1.MongoDBSpec{}}}
	myURL := &v1.SessionStore{Spec: v1.SessionStoreSpec{Backend: v1.BackendMySQL, MySQL: &v1.MySQLSpec{URLSecretRef: &v1.SecretKeySelector{}}}}
	pgHosts := func(hosts string) *v1.SessionStore {
		return &v1.SessionStore{Spec: v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{Host: hosts, Port: 5433}}}
	}
	cases := []struct {
		name  string
		store *v1.SessionStore
		url   string
		want  string
	}{
		{"host lower-cased, default port, no database", pgStore("a", "s", nil), "", "db.example:5432"},
		{"explicit port", my, "", "my.db:3307"},
		{"url host", pgURL, "postgresql://u:p%40ss@DB.example/other?sslmode=require", "db.example:5432"},
		{"url hosts sorted, ports filled", pgURL, "postgres://u:x@h2:5433,H1/db", "h1:5432,h2:5433"},
		{"userinfo with @ and :", pgURL, "postgresql://u:a@b:c@db:6432/x", "db:6432"},
		{"ipv6", pgURL, "postgresql://[::1]:5433/x", "[::1]:5433"},
		{"mongodb hosts", mongo, "mongodb://u:p@m2,m1:27018/?replicaSet=rs", "m1:27018,m2:27017"},
		{"mongodb srv", mongo, "mongodb+srv://u:p@Cluster.example/db", "srv:cluster.example"},
		{"url not known", pgURL, "", ""},
		{"host field listing several hosts", pgHosts("PG-b,pg-a"), "", "pg-a:5433,pg-b:5433"},
		{"the same hosts in another order", pgHosts("pg-a,pg-b"), "", "pg-a:5433,pg-b:5433"},
		{"mysql url, default port", myURL, "mysql+pymysql://u:p%3Aw@My.Example/sessions?charset=utf8mb4", "my.example:3306"},
		{"mysql url, port", myURL, "mysql://u:p@my.example:3307/sessions", "my.example:3307"},
		{"filesystem claim", fs, "", "pvc:ns/claim"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ServerKey(c.store, c.url); got != c.want {
				t.Errorf("ServerKey = %q, want %q", got, c.want)
			}
		})
	}
	if ServerHash("a") == ServerHash("b") || len(ServerHash(strings.Repeat("x", 500))) != 16 {
		t.Error("ServerHash must tell keys apart and fit a label")
	}
}

func spec(tz string, windows ...v1.CleanupWindow) *v1.ClusterSessionCleanupPolicySpec {
	s := &v1.ClusterSessionCleanupPolicySpec{Windows: windows}
	if tz != "" {
		s.TimeZone = ptr.To(tz)
	}
	return s
}

func win(kind v1.CleanupWindowKind, schedule string, d time.Duration) v1.CleanupWindow {
	return v1.CleanupWindow{Kind: kind, Schedule: schedule, Duration: metav1.Duration{Duration: d}}
}

func TestWindowState(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	nightly := win(v1.WindowAllow, "0 1 * * *", 4*time.Hour)
	xmas := win(v1.WindowDeny, "0 12 24 12 *", 48*time.Hour)
	cases := []struct {
		name       string
		spec       *v1.ClusterSessionCleanupPolicySpec
		now        time.Time
		want       string
		nextChange time.Time
	}{
		{"no windows: always open", spec("Europe/Paris"), at("2026-03-01 12:00"), v1.WindowStateOpen, time.Time{}},
		{"inside the allow window", spec("Europe/Paris", nightly), at("2026-03-01 02:30"), v1.WindowStateOpen, at("2026-03-01 05:00")},
		{"at its opening minute", spec("Europe/Paris", nightly), at("2026-03-01 01:00"), v1.WindowStateOpen, at("2026-03-01 05:00")},
		{"at its closing minute", spec("Europe/Paris", nightly), at("2026-03-01 05:00"), v1.WindowStateClosed, at("2026-03-02 01:00")},
		{"outside it", spec("Europe/Paris", nightly), at("2026-03-01 12:00"), v1.WindowStateClosed, at("2026-03-02 01:00")},
		{"the zone is the policy's", spec("Europe/Paris", nightly), time.Date(2026, 3, 1, 0, 30, 0, 0, time.UTC), v1.WindowStateOpen, at("2026-03-01 05:00")},
		{"deny beats allow", spec("Europe/Paris", nightly, xmas), at("2026-12-25 02:00"), v1.WindowStateDenied, at("2026-12-25 05:00")},
		{"deny alone", spec("", xmas), time.Date(2026, 12, 24, 13, 0, 0, 0, time.UTC), v1.WindowStateDenied, time.Date(2026, 12, 26, 12, 0, 0, 0, time.UTC)},
		{"after the deny", spec("", xmas), time.Date(2026, 12, 26, 12, 0, 0, 0, time.UTC), v1.WindowStateOpen, time.Date(2027, 12, 24, 12, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := ParseWindows(c.spec, c.now)
			if err != nil {
				t.Fatal(err)
			}
			state, next := w.State(c.now)
			if state != c.want || !next.Equal(c.nextChange) {
				t.Errorf("State = %s, next change %v; want %s, %v", state, next, c.want, c.nextChange)
			}
		})
	}
}

func TestParseWindowsRefusesWhatCannotOpen(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		spec *v1.ClusterSessionCleanupPolicySpec
		want string
	}{
		{spec("", win(v1.WindowAllow, "0 1 31 2 *", time.Hour)), "spec.windows[0].schedule \"0 1 31 2 *\" never comes due"},
		{spec("", win(v1.WindowAllow, "0 1 * * *", time.Hour), win(v1.WindowDeny, "50-10 * * * *", time.Hour)), "spec.windows[1].schedule"},
		{spec("Mars/Olympus"), "spec.timeZone \"Mars/Olympus\""},
	} {
		_, err := ParseWindows(c.spec, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseWindows = %v, want an error containing %q", err, c.want)
		}
	}
}

func TestExpandH(t *testing.T) {
	// Without windows, "H * * * *" is today's hashed minute: no store moves.
	if got, _ := ExpandH("H * * * *", "ns/store", nil); got != fmt.Sprintf("%d * * * *", hash32("ns/store")%60) {
		t.Errorf("H * * * * = %q, not today's minute", got)
	}
	// Daily: the minute and the hour are hashed apart, 1,440 slots.
	slots := map[string]bool{}
	for i := 0; i < 40000; i++ {
		got, err := ExpandH("H H * * *", fmt.Sprintf("ns-%d/store", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		slots[got] = true
	}
	if len(slots) != minutesPerDay {
		t.Errorf("H H * * * took %d distinct slots over 40,000 stores, want 1440", len(slots))
	}
	// Stable for one store, untouched without H.
	a, _ := ExpandH("H H * * 1", "x/y", nil)
	b, _ := ExpandH("H H * * 1", "x/y", nil)
	if a != b || !strings.HasSuffix(a, " * * 1") {
		t.Errorf("ExpandH not stable: %q, %q", a, b)
	}
	if got, _ := ExpandH("5 4 * * *", "x/y", nil); got != "5 4 * * *" {
		t.Errorf("a schedule without H changed: %q", got)
	}
	if _, err := ExpandH("0 0 H * *", "x/y", nil); err == nil {
		t.Error("H in the day field must be refused")
	}
}

func TestExpandHFallsInsideAllowWindows(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w, err := ParseWindows(spec("Europe/Paris", win(v1.WindowAllow, "0 1 * * *", 4*time.Hour),
		win(v1.WindowAllow, "30 22 * * *", 30*time.Minute), win(v1.WindowDeny, "0 3 * * *", time.Hour)), now)
	if err != nil {
		t.Fatal(err)
	}
	allowed := w.AllowedClock()
	slots := map[string]bool{}
	for i := 0; i < 2000; i++ {
		got, err := ExpandH("H H * * *", fmt.Sprintf("ns-%d/s", i), allowed)
		if err != nil {
			t.Fatal(err)
		}
		var m, h int
		if _, err := fmt.Sscanf(got, "%d %d", &m, &h); err != nil {
			t.Fatal(err)
		}
		if !(h >= 1 && h < 5 || h == 22 && m >= 30) {
			t.Fatalf("%q is outside the allow windows (01:00-05:00, 22:30-23:00)", got)
		}
		slots[got] = true
	}
	if len(slots) < 200 {
		t.Errorf("only %d distinct slots inside the windows", len(slots))
	}
	// Hourly with H in the minute only: a minute some allow window covers.
	short, _ := ParseWindows(spec("", win(v1.WindowAllow, "40 * * * *", 10*time.Minute)), now)
	for i := 0; i < 200; i++ {
		got, _ := ExpandH("H * * * *", fmt.Sprintf("n/%d", i), short.AllowedClock())
		var m int
		fmt.Sscanf(got, "%d", &m)
		if m < 40 || m >= 50 {
			t.Fatalf("%q: the minute is outside :40-:50", got)
		}
	}
}

func TestAdmit(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run := func(name, store, server, policy string, minute int) Run {
		return Run{Namespace: "ns", Name: name, Store: store, Server: server, Policy: policy, Created: t0.Add(time.Duration(minute) * time.Minute)}
	}
	names := func(runs []Run) string {
		var out []string
		for _, r := range runs {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	limited := Gate{Policies: map[string]PolicyGate{"p": {MaxPerServer: 1, MaxTotal: 2}, "shut": {Closed: "deny window open"}}}
	cases := []struct {
		name             string
		gate             Gate
		running, waiting []Run
		start            string
		heldReason       map[string]string
	}{
		{"oldest first, one per server", limited, nil,
			[]Run{run("b", "s2", "srv1", "p", 2), run("a", "s1", "srv1", "p", 1), run("c", "s3", "srv2", "p", 3)},
			"a,c", map[string]string{"ns/b": "maxPerServer 1 reached on its server"}},
		{"a running run counts", limited, []Run{run("r", "s9", "srv1", "p", 0)},
			[]Run{run("a", "s1", "srv1", "p", 1)}, "", map[string]string{"ns/a": "maxPerServer 1 reached on its server"}},
		{"maxTotal", limited, []Run{run("r", "s9", "srv8", "p", 0)},
			[]Run{run("a", "s1", "srv1", "p", 1), run("b", "s2", "srv2", "p", 2)}, "a", map[string]string{"ns/b": "maxTotal 2 reached under policy p"}},
		{"one run per store", Gate{Policies: map[string]PolicyGate{"p": {}}}, []Run{run("r", "s1", "srv1", "p", 0)},
			[]Run{run("a", "s1", "srv1", "p", 1), run("b", "s2", "srv1", "p", 2)}, "b", map[string]string{"ns/a": "another run of the store is active"}},
		{"closed policy starts nothing", limited, nil, []Run{run("a", "s1", "srv1", "shut", 1)}, "", map[string]string{"ns/a": "deny window open"}},
		{"the server count spans policies", limited, []Run{run("r", "s9", "srv1", "other", 0)},
			[]Run{run("a", "s1", "srv1", "p", 1)}, "", map[string]string{"ns/a": "maxPerServer 1 reached on its server"}},
		{"a deleted policy holds nothing", limited, nil, []Run{run("a", "s1", "srv1", "gone", 1)}, "a", map[string]string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.gate.Admit(c.running, c.waiting)
			if got := names(d.Start); got != c.start {
				t.Errorf("started %q, want %q", got, c.start)
			}
			if fmt.Sprint(d.Held) != fmt.Sprint(c.heldReason) {
				t.Errorf("held %v, want %v", d.Held, c.heldReason)
			}
		})
	}
}

// AllowClosedThrough: whether a run made at from meets no open allow window
// until its deadline, whatever deny windows do.
func TestAllowClosedThrough(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(h, m int) time.Time { return time.Date(2026, 3, 1, h, m, 0, 0, paris) }
	nightly := v1.CleanupWindow{Kind: v1.WindowAllow, Schedule: "0 1 * * *", Duration: metav1.Duration{Duration: time.Hour}}
	frequentDeny := v1.CleanupWindow{Kind: v1.WindowDeny, Schedule: "*/5 * * * *", Duration: metav1.Duration{Duration: time.Minute}}
	cases := []struct {
		name          string
		windows       []v1.CleanupWindow
		from, until   time.Time
		closedThrough bool
	}{
		{"made after the window closed, deadline before it reopens", []v1.CleanupWindow{nightly}, at(2, 30), at(2, 40), true},
		{"the window opens before the deadline", []v1.CleanupWindow{nightly}, at(0, 55), at(1, 5), false},
		{"opening exactly at the deadline", []v1.CleanupWindow{nightly}, at(0, 55), at(1, 0), false},
		{"made inside the window, held past its close", []v1.CleanupWindow{nightly}, at(1, 55), at(2, 5), false},
		{"deny windows change nothing", []v1.CleanupWindow{nightly, frequentDeny}, at(2, 30), at(2, 40), true},
		{"no allow window: never closed by windows", []v1.CleanupWindow{frequentDeny}, at(2, 30), at(2, 40), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := ParseWindows(spec("Europe/Paris", c.windows...), c.from)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.AllowClosedThrough(c.from, c.until); got != c.closedThrough {
				t.Errorf("AllowClosedThrough = %v, want %v", got, c.closedThrough)
			}
		})
	}
}
