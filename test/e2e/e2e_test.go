//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// TestRealNode runs in order: the install, every backend, a restart of the
// operator over the stores made, then their deletion.
func TestRealNode(t *testing.T) {
	t.Run("operator installed restricted", testOperatorInstalled)
	t.Run("lease held", testLeaseHeld)
	// The backends and the gate's tests share nothing but the operator:
	// each has its namespace, and each gate test its policy and stores.
	t.Run("backends and gate", func(t *testing.T) {
		for _, b := range cleanupBackends() {
			t.Run("cleanup pod/"+b.name, func(t *testing.T) { t.Parallel(); testCleanupBackend(t, b) })
		}
		for _, b := range nativeBackends() {
			t.Run("native expiry/"+b.name, func(t *testing.T) { t.Parallel(); testNativeBackend(t, b) })
		}
		t.Run("cleanup gate/one run at a time per server", func(t *testing.T) { t.Parallel(); testGateOnePerServer(t) })
		t.Run("cleanup gate/deny window then run-now", func(t *testing.T) { t.Parallel(); testGateDenyWindowThenRunNow(t) })
		t.Run("cleanup gate/run past its deadline skipped", func(t *testing.T) { t.Parallel(); testGateSkipsARunPastItsDeadline(t) })
	})
	t.Run("metrics scraped with a token", testMetricsScraped)
	if t.Failed() {
		return
	}
	t.Run("rollout restart keeps statuses", testRolloutRestart)
	t.Run("garbage collector removes owned objects", testGarbageCollection)
}

// nativeBackends expire sessions themselves: no CronJob, but the Secret
// must still take an app's Pod to the store.
func nativeBackends() []backend {
	prefix := "e2e_" + installMode + ":"
	return []backend{{
		name: "redis",
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "redis", v1.SessionStoreSpec{Backend: v1.BackendRedis, KeyPrefix: prefix,
				Redis: &v1.RedisSpec{Address: nodeIP + ":6379"}})
		},
		script: "flask_redis_sessions.py",
		args:   []string{fmt.Sprintf("redis://%s:6379/0", nodeIP), prefix},
	}, {
		name: "memcached",
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "memcached", v1.SessionStoreSpec{Backend: v1.BackendMemcached, KeyPrefix: prefix,
				Memcached: &v1.MemcachedSpec{Servers: []string{nodeIP + ":11211"}}})
		},
		script: "flask_memcached_sessions.py",
		args:   []string{"memcached://" + nodeIP + ":11211", prefix},
	}}
}

// testNativeBackend: the operator's Pod reaches the store, no CronJob is
// made, and an app Pod that takes the connection Secret by envFrom reaches
// the store with it (the operator image's `check`), restricted.
func testNativeBackend(t *testing.T, b backend) {
	g := NewWithT(t)
	ns := restrictedNamespace(t, fmt.Sprintf("e2e-%s-%s", installMode, b.name))
	store := b.store(ns)
	g.Expect(k8sClient.Create(ctx(), store)).To(Succeed())
	waitCondition(t, ns, store.Name, "StoreReachable", metav1.ConditionTrue, "")
	got := waitCondition(t, ns, store.Name, "CleanupScheduled", metav1.ConditionFalse, "NativeExpiry")
	g.Expect(got.Status.Cleanup.CronJobName).To(BeEmpty())
	cronJobs := &batchv1.CronJobList{}
	g.Expect(k8sClient.List(ctx(), cronJobs, client.InNamespace(ns))).To(Succeed())
	g.Expect(cronJobs.Items).To(BeEmpty())

	live := parseSessions(t, flask(t, 0, "", b.script, append(append([]string{"write"}, b.args...), "3600", "3")...), 3)
	readBack := map[string]*string{}
	g.Expect(json.Unmarshal([]byte(flask(t, 0, sidsJSON(live), b.script, append([]string{"read"}, b.args...)...)), &readBack)).To(Succeed())
	for _, s := range live {
		g.Expect(readBack[s.SID]).To(HaveValue(Equal(s.Value)))
	}

	pod := appCheckPod(ns, got.Status.ConnectionSecretName)
	g.Expect(k8sClient.Create(ctx(), pod)).To(Succeed(), "a restricted Pod is admitted")
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx(), client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		g.Expect(pod.Status.Phase).To(BeElementOf(corev1.PodSucceeded, corev1.PodFailed))
	}, e2eTimeout, poll).Should(Succeed())
	message, exit := terminationMessage(t, pod)
	g.Expect(exit).To(BeZero(), "check from an app Pod: %s", message)
}

// appCheckPod is an app's Pod in the restricted profile that loads the
// connection Secret with envFrom, as apps do, and checks the store once.
func appCheckPod(ns, secret string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-check"},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "check", Image: operatorImage, Args: []string{"check"},
				EnvFrom:                  []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
}

// e2eStores lists the SessionStores this pass made: one per backend.
func e2eStores(g Gomega) []v1.SessionStore {
	list := &v1.SessionStoreList{}
	g.Expect(k8sClient.List(ctx(), list)).To(Succeed())
	g.Expect(list.Items).To(HaveLen(len(cleanupBackends())+len(nativeBackends())), "one store per backend")
	return list.Items
}

// testRolloutRestart: a new operator Pod takes over the stores without
// writing any of them: same status, same resourceVersion, after it has
// reconciled every store.
func testRolloutRestart(t *testing.T) {
	g := NewWithT(t)
	before := map[string]v1.SessionStore{}
	stores := e2eStores(g)
	for _, s := range stores {
		before[s.Namespace+"/"+s.Name] = s
	}
	oldPod := operatorPod(t)
	kubectl(t, "rollout", "restart", "-n", operatorNS, "deployment/"+operatorName)
	kubectl(t, "rollout", "status", "-n", operatorNS, "deployment/"+operatorName, "--timeout=3m")
	newPod := operatorPod(t)
	g.Expect(newPod.Name).NotTo(Equal(oldPod.Name))
	testLeaseHeld(t)
	reader := serviceAccountToken(t, "e2e-restart-reader", metricsReader)
	url := fmt.Sprintf("https://%s:8443/metrics", newPod.Status.PodIP)
	NewWithT(t).Eventually(func() int {
		return reconciled(scrape(t, url, reader).body)
	}, e2eTimeout, poll).Should(BeNumerically(">=", len(stores)), "the new Pod reconciles every store")
	for _, s := range e2eStores(g) {
		was := before[s.Namespace+"/"+s.Name]
		if reason, ok := schemaReProbed(&was, &s); ok {
			// Known, reported: a new process re-probes a store whose table the
			// old one created, or whose index a cleanup Pod built since, and
			// says "present": one write, once per store, on the first probe
			// after the restart.
			t.Logf("%s/%s: SchemaReady went from %s to SchemaPresent (one write)", s.Namespace, s.Name, reason)
			continue
		}
		g.Expect(s.Status).To(Equal(was.Status), "status of %s/%s", s.Namespace, s.Name)
		g.Expect(s.ResourceVersion).To(Equal(was.ResourceVersion), "%s/%s was written", s.Namespace, s.Name)
	}
}

// schemaReProbed tells whether the only change from was to now is SchemaReady
// going to SchemaPresent (True) from SchemaCreated (True) or SchemaPending
// (False: the index a cleanup Pod has built since), and from which.
func schemaReProbed(was, now *v1.SessionStore) (string, bool) {
	before, after := was.Status.DeepCopy(), now.Status.DeepCopy()
	b := meta.FindStatusCondition(before.Conditions, "SchemaReady")
	a := meta.FindStatusCondition(after.Conditions, "SchemaReady")
	if b == nil || a == nil || a.Reason != "SchemaPresent" || a.Status != metav1.ConditionTrue {
		return "", false
	}
	created := b.Reason == "SchemaCreated" && b.Status == metav1.ConditionTrue
	pending := b.Reason == "SchemaPending" && b.Status == metav1.ConditionFalse
	if !created && !pending {
		return "", false
	}
	*a = *b
	return b.Reason, equality.Semantic.DeepEqual(before, after)
}

// reconciles counts the main controller's finished reconciles, whatever
// they asked next (success, requeue, requeue_after), but not errors.
var reconciles = regexp.MustCompile(`(?m)^controller_runtime_reconcile_total\{controller="sessionstore",result="(?:success|requeue|requeue_after)"\} (\d+)`)

func reconciled(metrics string) int {
	total := 0
	for _, m := range reconciles.FindAllStringSubmatch(metrics, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

// testGarbageCollection: deleting a store leaves its Secret and CronJob to
// Kubernetes' garbage collector, which removes them.
func testGarbageCollection(t *testing.T) {
	g := NewWithT(t)
	for _, s := range e2eStores(g) {
		owned := []client.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Status.ConnectionSecretName}}}
		if s.Status.Cleanup.CronJobName != "" {
			owned = append(owned, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Status.Cleanup.CronJobName}})
		}
		for _, o := range owned {
			g.Expect(k8sClient.Get(ctx(), client.ObjectKeyFromObject(o), o)).To(Succeed())
		}
		g.Expect(k8sClient.Delete(ctx(), &s)).To(Succeed())
		for _, o := range owned {
			waitGone(t, o)
		}
	}
}
