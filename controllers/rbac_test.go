package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// The roles the manager runs with: the ClusterRole controller-gen makes from
// the markers, and the leader-election Role in the manager's namespace.
const (
	managerRoleFile = "role.yaml"
	leaderRoleFile  = "leader_election_role.yaml"
)

// grantedRule is one apiGroup/resource/verb of one of the manager's roles.
type grantedRule struct {
	roleFile, group, resource, verb string
}

func (r grantedRule) String() string {
	group := r.group
	if group == "" {
		group = "core"
	}
	role := map[string]string{managerRoleFile: "manager-role", leaderRoleFile: "leader-election-role"}[r.roleFile]
	return fmt.Sprintf("%s: %s %s/%s", role, r.verb, group, r.resource)
}

// denial is how the API server words the refusal of r.
func (r grantedRule) denial() string {
	if r.resource == "sessionstores/finalizers" {
		// OwnerReferencesPermissionEnforcement's words
		return "cannot set blockOwnerDeletion"
	}
	return fmt.Sprintf("cannot %s resource %q in API group %q", r.verb, r.resource, r.group)
}

// deniedLines are those of lines that report r refused.
func deniedLines(lines []string, r grantedRule) []string {
	var out []string
	for _, line := range lines {
		if strings.Contains(line, r.denial()) {
			out = append(out, line)
		}
	}
	return out
}

func expandRules(roleFile string, rules []rbacv1.PolicyRule) []grantedRule {
	var out []grantedRule
	for _, rule := range rules {
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					out = append(out, grantedRule{roleFile, group, resource, verb})
				}
			}
		}
	}
	return out
}

// policyRules are the rules of roleFile in granted, but drop.
func policyRules(granted []grantedRule, roleFile string, drop *grantedRule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range granted {
		if r.roleFile != roleFile || (drop != nil && r == *drop) {
			continue
		}
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{r.group}, Resources: []string{r.resource}, Verbs: []string{r.verb}})
	}
	return out
}

// repeatedEventStore is the store whose conflict event the cases count.
const repeatedEventStore = "repeated"

// ruleCaseTimeout bounds one case; a case whose manager logs a forbidden
// error ends as soon as it does.
const ruleCaseTimeout = 40 * time.Second

// TestEveryGrantedRuleIsNeeded runs the manager, leader election on, under
// the generated role and the leader-election Role, first whole and then
// with one apiGroup/resource/verb removed at a time. Whole, it must do
// everything with no forbidden error and no failed reconcile; without any
// one rule it must visibly fail, or that rule is surplus.
func TestEveryGrantedRuleIsNeeded(t *testing.T) {
	managerRole, leaderRole := &rbacv1.ClusterRole{}, &rbacv1.Role{}
	readRBAC(t, managerRoleFile, managerRole)
	readRBAC(t, leaderRoleFile, leaderRole)
	granted := append(expandRules(managerRoleFile, managerRole.Rules), expandRules(leaderRoleFile, leaderRole.Rules)...)
	drops := []*grantedRule{nil}
	for i := range granted {
		drops = append(drops, &granted[i])
	}
	if len(drops) > maxRBACCases {
		t.Fatalf("%d cases, but the suite sets aside namespaces for %d (maxRBACCases)", len(drops), maxRBACCases)
	}
	// Managers in parallel, each in a namespace of its own; t.Run may be
	// called from several goroutines.
	slots := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for i, drop := range drops {
		name := "every rule"
		if drop != nil {
			name = "without " + drop.String()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			t.Run(name, func(t *testing.T) { runRuleCase(t, i, granted, drop) })
		}()
	}
	wg.Wait()
}

func runRuleCase(t *testing.T, i int, granted []grantedRule, drop *grantedRule) {
	ns := rbacCaseNamespace(i)
	user := fmt.Sprintf("manager-%02d-rbac", i)
	ensureNamespace(t, ns)
	bindClusterRules(t, user, policyRules(granted, managerRoleFile, drop))
	bindNamespaceRules(t, user, ns, policyRules(granted, leaderRoleFile, drop))
	lease := types.NamespacedName{Namespace: ns, Name: "leader-" + ns}
	m := startRestrictedManager(t, managerSettings{
		user: user, namespaces: []string{ns}, leaderNamespace: ns, leaderElectionID: lease.Name,
		clusterPolicies: true,
	})
	ctx, cancel := context.WithTimeout(context.Background(), ruleCaseTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- exerciseEveryPermission(ctx, ns, lease) }()
	var scenarioErr error
wait:
	for {
		select {
		case scenarioErr = <-done:
			break wait
		case <-time.After(100 * time.Millisecond):
			if drop != nil && len(deniedLines(m.forbiddenLines(), *drop)) > 0 {
				cancel()
				scenarioErr = <-done
				break wait
			}
		}
	}
	m.stop(t)
	forbidden := m.forbiddenLines()
	if drop == nil {
		if scenarioErr != nil {
			t.Errorf("with every rule: %v", scenarioErr)
		}
		if len(forbidden) > 0 {
			t.Errorf("with every rule, permission errors were logged:\n%s", strings.Join(forbidden, "\n"))
		}
		if failed := m.log.linesWith(`"msg":"Reconciler error"`); len(failed) != 0 {
			t.Errorf("with every rule, %d reconciles failed:\n%s", len(failed), strings.Join(failed, "\n"))
		}
		if m.result != nil {
			t.Errorf("with every rule, the manager stopped with %v", m.result)
		}
		return
	}
	switch denied := deniedLines(forbidden, *drop); {
	case len(denied) > 0:
		t.Logf("needed: %s", denied[0])
	case scenarioErr != nil:
		t.Logf("needed: %v", scenarioErr)
	case m.result != nil:
		t.Logf("needed: the manager stopped with %v", m.result)
	default:
		t.Errorf("%s is surplus: without it the manager did everything and was refused nothing it needs; other refusals: %q",
			drop, forbidden)
	}
}

// exerciseEveryPermission makes the manager use each permission it holds,
// each step through something that needs it; nil when all of them worked.
func exerciseEveryPermission(ctx context.Context, ns string, lease types.NamespacedName) error {
	steps := []struct {
		name string
		run  func() error
	}{
		{"the leader holds and renews its Lease and records a core Event", func() error { return leaderRenewsAndRecords(ctx, lease) }},
		{"a store gets its Secret, its CronJob and Ready", func() error { return storeServed(ctx, ns, "served") }},
		{"a renamed connection Secret replaces the old one", func() error { return connectionSecretRenamed(ctx, ns, "served") }},
		{"the gate starts one run-now Job, skips the other and counts both stores", func() error { return gatedRuns(ctx, ns) }},
		{"a conflict is recorded as an event, once", func() error { return eventRecordedOnce(ctx, ns, repeatedEventStore) }},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}
	return nil
}

// leaderRenewsAndRecords: leases get, create, update; core events create.
func leaderRenewsAndRecords(ctx context.Context, key types.NamespacedName) error {
	return pollUntil(ctx, func() error {
		lease := &coordinationv1.Lease{}
		if err := k8sClient.Get(ctx, key, lease); err != nil {
			return err
		}
		spec := lease.Spec
		if spec.HolderIdentity == nil || spec.AcquireTime == nil || spec.RenewTime == nil || !spec.RenewTime.After(spec.AcquireTime.Time) {
			return fmt.Errorf("the Lease is not held and renewed: %+v", spec)
		}
		events := &corev1.EventList{}
		if err := k8sClient.List(ctx, events, client.InNamespace(key.Namespace)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "Lease" && e.InvolvedObject.Name == key.Name && e.Reason == "LeaderElection" {
				return nil
			}
		}
		return errors.New("no LeaderElection Event on the Lease")
	})
}

// storeServed: store list, watch, status patch; Secret and CronJob get,
// list, watch, patch; finalizers update (owner references); Job and Pod
// list and watch (the controller starts only once every watch syncs).
func storeServed(ctx context.Context, ns, name string) error {
	if err := k8sClient.Create(ctx, filesystemStore(ns, name)); err != nil {
		return err
	}
	return pollUntil(ctx, func() error {
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-session-store"}, &corev1.Secret{}); err != nil {
			return err
		}
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-cleanup"}, &batchv1.CronJob{}); err != nil {
			return err
		}
		return storeConditionIs(ctx, ns, name, v1.ConditionReady, metav1.ConditionTrue)
	})
}

// connectionSecretRenamed: Secret delete.
func connectionSecretRenamed(ctx context.Context, ns, name string) error {
	if err := setConnectionSecretName(ctx, ns, name, name+"-renamed"); err != nil {
		return err
	}
	return pollUntil(ctx, func() error {
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-renamed"}, &corev1.Secret{}); err != nil {
			return err
		}
		err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-session-store"}, &corev1.Secret{})
		if err == nil {
			return errors.New("the old connection Secret is still there")
		}
		return client.IgnoreNotFound(err)
	})
}

// eventRecordedOnce: events create. Events are recorded only after the
// status write they describe, against the store version it made, so the
// recorder never sees one twice and never patches a series: events patch
// is not needed.
func eventRecordedOnce(ctx context.Context, ns, name string) error {
	if err := createForeignSecret(ctx, ns, name+"-session-store"); err != nil {
		return err
	}
	if err := k8sClient.Create(ctx, filesystemStore(ns, name)); err != nil {
		return err
	}
	if err := pollUntil(ctx, func() error { return conflictEventCounted(ctx, ns, name, 1) }); err != nil {
		return err
	}
	return conflictEventOnce(ctx, ns, name)
}

// conflictEventOnce checks the store's SecretConflict event is one event,
// with no series.
func conflictEventOnce(ctx context.Context, ns, name string) error {
	events := &eventsv1.EventList{}
	if err := k8sClient.List(ctx, events, client.InNamespace(ns)); err != nil {
		return err
	}
	n := 0
	for _, e := range events.Items {
		if e.Regarding.Name == name && e.Reason == v1.EventSecretConflict {
			n++
			if e.Series != nil {
				return fmt.Errorf("the SecretConflict event became a series of %d", e.Series.Count)
			}
		}
	}
	if n != 1 {
		return fmt.Errorf("%d SecretConflict events, want 1", n)
	}
	return nil
}

func createForeignSecret(ctx context.Context, ns, name string) error {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"owner": "someone else"}}
	return k8sClient.Create(ctx, secret)
}

// conflictEventCounted waits for the store's SecretConflict event to count
// at least n occurrences (a second one is a series, written by a patch).
func conflictEventCounted(ctx context.Context, ns, name string, n int32) error {
	events := &eventsv1.EventList{}
	if err := k8sClient.List(ctx, events, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, e := range events.Items {
		if e.Regarding.Name != name || e.Reason != v1.EventSecretConflict {
			continue
		}
		count := int32(1)
		if e.Series != nil {
			count = e.Series.Count
		}
		if count >= n {
			return nil
		}
		return fmt.Errorf("the SecretConflict event counts %d, want %d", count, n)
	}
	return errors.New("no SecretConflict event")
}

func setConnectionSecretName(ctx context.Context, ns, name, secretName string) error {
	store := &v1.SessionStore{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, store); err != nil {
		return err
	}
	patch := client.MergeFrom(store.DeepCopy())
	store.Spec.ConnectionSecretName = secretName
	return k8sClient.Patch(ctx, store, patch)
}

func storeConditionIs(ctx context.Context, ns, name, condType string, status metav1.ConditionStatus) error {
	store := &v1.SessionStore{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, store); err != nil {
		return err
	}
	c := meta.FindStatusCondition(store.Status.Conditions, condType)
	if c == nil || c.Status != status {
		return fmt.Errorf("store %s: condition %s is %+v, want %s", name, condType, c, status)
	}
	return nil
}

// gatedRuns: policies list and watch, namespaces list and watch (the cache
// syncs them before any controller starts); jobs create (run-now), patch
// (the gate starts one), delete (the other, held by maxPerServer 1 behind a
// run that never ends here, passes its starting deadline); policies/status
// patch (the totals).
func gatedRuns(ctx context.Context, ns string) error {
	name := "rbac-" + ns
	policy := &v1.ClusterSessionCleanupPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.ClusterSessionCleanupPolicySpec{
		Selector:                v1.CleanupPolicySelector{StoreSelector: &metav1.LabelSelector{MatchLabels: map[string]string{policyTestLabel: name}}},
		Concurrency:             v1.CleanupConcurrency{MaxPerServer: ptr.To[int32](1)},
		StartingDeadlineSeconds: 2,
	}}
	if err := k8sClient.Create(ctx, policy); err != nil {
		return err
	}
	defer func() { _ = k8sClient.Delete(context.Background(), policy) }()
	for _, store := range []string{"gated-a", "gated-b"} {
		s := filesystemStore(ns, store)
		s.Labels = map[string]string{policyTestLabel: name}
		s.Annotations = map[string]string{v1.RunNowAnnotation: "now"}
		if err := k8sClient.Create(ctx, s); err != nil {
			return err
		}
		// One after the other, so that the first is the one started.
		if err := pollUntil(ctx, func() error { return runNowJobStarted(ctx, ns, store) }); err != nil {
			return err
		}
	}
	return pollUntil(ctx, func() error {
		store := &v1.SessionStore{}
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gated-b"}, store); err != nil {
			return err
		}
		if store.Status.Cleanup.LastSkipReason == "" {
			return errors.New("gated-b's run is not recorded as skipped")
		}
		p := &v1.ClusterSessionCleanupPolicy{}
		if err := k8sClient.Get(ctx, types.NamespacedName{Name: name}, p); err != nil {
			return err
		}
		if p.Status.Stores != 2 {
			return fmt.Errorf("the policy counts %d stores, want 2", p.Status.Stores)
		}
		return nil
	})
}

// runNowJobStarted: store's run-now Job exists; gated-a's is started.
func runNowJobStarted(ctx context.Context, ns, store string) error {
	job := &batchv1.Job{}
	if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: runNowJobName(store+"-cleanup", "now")}, job); err != nil {
		return err
	}
	if store == "gated-a" && ptr.Deref(job.Spec.Suspend, false) {
		return errors.New("gated-a's run-now Job is not started")
	}
	return nil
}
