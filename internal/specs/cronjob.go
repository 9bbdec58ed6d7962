package specs

import (
	"maps"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

const (
	// CleanupContainerName is the container that runs `cleanup`.
	CleanupContainerName = "cleanup"
	// cleanupBackoffLimit retries a failed run a little: a cleanup is
	// idempotent, and the next schedule comes anyway.
	cleanupBackoffLimit = 2
	// cleanupStartingDeadline drops a run that could not start within this
	// many seconds instead of piling up missed runs.
	cleanupStartingDeadline = 600
	// nonRootUser is the distroless nonroot user the image runs as.
	nonRootUser = 65532
	// sessionVolume is the filesystem backend's volume name.
	sessionVolume = "sessions"
)

// defaultCleanupResources keeps a cleanup pod schedulable in namespaces with
// a LimitRange or quota when the spec sets none.
var defaultCleanupResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("50m"),
		corev1.ResourceMemory: resource.MustParse("64Mi"),
	},
	Limits: corev1.ResourceList{
		corev1.ResourceMemory: resource.MustParse("256Mi"),
	},
}

// CleanupCronJob builds the CronJob that runs the operator's own image with
// `cleanup` against store, or nil for backends with native expiry.
func CleanupCronJob(store *v1.SessionStore, image string) *batchv1.CronJob {
	return GovernedCleanupCronJob(store, image, nil)
}

// GovernedCleanupCronJob is CleanupCronJob under a policy's governance: its
// job template is suspended, for the gate to start, and labelled with the
// policy and the server. gov nil is CleanupCronJob.
func GovernedCleanupCronJob(store *v1.SessionStore, image string, gov *Governance) *batchv1.CronJob {
	if HasNativeExpiry(store.Spec.Backend) {
		return nil
	}
	cleanup := governedCleanup(store.Spec.Cleanup, gov)
	if gov != nil {
		governed := *store // the pod's resources are read from the store
		governed.Spec.Cleanup = cleanup
		store = &governed
	}
	labels := Labels(store, "cleanup")
	cj := &batchv1.CronJob{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      CleanupCronJobName(store),
			Namespace: store.Namespace,
			Labels:    labels,
		},
		Spec: batchv1.CronJobSpec{
			Schedule:                   EffectiveSchedule(store),
			TimeZone:                   cleanup.TimeZone,
			Suspend:                    ptr.To(cleanup.Suspend),
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr.To[int64](cleanupStartingDeadline),
			SuccessfulJobsHistoryLimit: ptr.To(ptr.Deref(cleanup.SuccessfulJobsHistoryLimit, 3)),
			FailedJobsHistoryLimit:     ptr.To(ptr.Deref(cleanup.FailedJobsHistoryLimit, 3)),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: batchv1.JobSpec{
					ActiveDeadlineSeconds: ptr.To(activeDeadline(cleanup)),
					BackoffLimit:          ptr.To[int32](cleanupBackoffLimit),
					Template:              cleanupPodTemplate(store, image, labels),
				},
			},
		},
	}
	governCronJob(cj, gov)
	return cj
}

// governedCleanup is the store's cleanup with the policy's defaults where
// the store kept its own.
func governedCleanup(cleanup v1.CleanupSpec, gov *Governance) v1.CleanupSpec {
	if gov == nil {
		return cleanup
	}
	if gov.ActiveDeadlineSeconds != nil && (cleanup.ActiveDeadlineSeconds == 0 || cleanup.ActiveDeadlineSeconds == defaultActiveDeadline) {
		cleanup.ActiveDeadlineSeconds = *gov.ActiveDeadlineSeconds
	}
	if gov.Resources != nil && len(cleanup.Resources.Requests) == 0 && len(cleanup.Resources.Limits) == 0 {
		cleanup.Resources = *gov.Resources
	}
	// The governance's zone is the store's own unless the policy put a
	// hashed time inside its windows, which keep the policy's clock.
	if gov.TimeZone != nil {
		cleanup.TimeZone = gov.TimeZone
	}
	return cleanup
}

// governCronJob suspends the job template and labels it for the gate.
func governCronJob(cj *batchv1.CronJob, gov *Governance) {
	if gov == nil {
		return
	}
	cj.Spec.Schedule = gov.Schedule
	if gov.StartingDeadlineSeconds > 0 {
		cj.Spec.StartingDeadlineSeconds = ptr.To(gov.StartingDeadlineSeconds)
	}
	cj.Spec.JobTemplate.Labels = governedJobLabels(cj.Spec.JobTemplate.Labels, gov)
	cj.Spec.JobTemplate.Spec.Suspend = ptr.To(true)
}

func activeDeadline(cleanup v1.CleanupSpec) int64 {
	if cleanup.ActiveDeadlineSeconds > 0 {
		return cleanup.ActiveDeadlineSeconds
	}
	return defaultActiveDeadline
}

// defaultActiveDeadline is spec.cleanup.activeDeadlineSeconds' default.
const defaultActiveDeadline = 3600

// pullPolicy pulls a moving tag (latest, or none) every time, so nodes do not
// run whatever :latest they once cached; a pinned tag or digest once.
func pullPolicy(image string) corev1.PullPolicy {
	if strings.Contains(image, "@") {
		return corev1.PullIfNotPresent
	}
	name := image[strings.LastIndex(image, "/")+1:]
	if _, tag, ok := strings.Cut(name, ":"); ok && tag != "latest" {
		return corev1.PullIfNotPresent
	}
	return corev1.PullAlways
}

// cleanupPodTemplate is the cleanup pod with what spec.cleanup.podTemplate
// adds: placement and identity, never security settings, and labels of its
// own only where they do not clash with the operator's.
func cleanupPodTemplate(store *v1.SessionStore, image string, labels map[string]string) corev1.PodTemplateSpec {
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       cleanupPodSpec(store, image),
	}
	custom := store.Spec.Cleanup.PodTemplate
	if custom == nil {
		return tmpl
	}
	if len(custom.Metadata.Labels) > 0 {
		merged := maps.Clone(custom.Metadata.Labels)
		maps.Copy(merged, labels)
		tmpl.Labels = merged
	}
	tmpl.Annotations = maps.Clone(custom.Metadata.Annotations)
	pod := &tmpl.Spec
	pod.NodeSelector = maps.Clone(custom.NodeSelector)
	pod.Tolerations = custom.Tolerations
	pod.Affinity = custom.Affinity
	pod.ImagePullSecrets = custom.ImagePullSecrets
	pod.PriorityClassName = custom.PriorityClassName
	if custom.ServiceAccountName != "" {
		pod.ServiceAccountName = custom.ServiceAccountName
		// Workload identity may need the token: the ServiceAccount decides.
		pod.AutomountServiceAccountToken = nil
	}
	return tmpl
}

func cleanupPodSpec(store *v1.SessionStore, image string) corev1.PodSpec {
	resources := store.Spec.Cleanup.Resources
	if len(resources.Requests) == 0 && len(resources.Limits) == 0 {
		resources = defaultCleanupResources
	}
	pod := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		// The cleanup talks to the store only, never to the API server.
		AutomountServiceAccountToken: ptr.To(false),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:            CleanupContainerName,
			Image:           image,
			ImagePullPolicy: pullPolicy(image),
			Args:            []string{"cleanup"},
			EnvFrom: []corev1.EnvFromSource{{
				SecretRef: &corev1.SecretEnvSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: ConnectionSecretName(store)},
				},
			}},
			Env:                      CleanupEnv(store),
			Resources:                resources,
			TerminationMessagePath:   corev1.TerminationMessagePathDefault,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext: &corev1.SecurityContext{
				RunAsNonRoot:             ptr.To(true),
				ReadOnlyRootFilesystem:   ptr.To(true),
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
	}
	if fs := store.Spec.Filesystem; store.Spec.Backend == v1.BackendFilesystem && fs != nil {
		pod.SecurityContext.RunAsUser = ptr.To(ptr.Deref(fs.RunAsUser, nonRootUser))
		pod.SecurityContext.RunAsGroup = fs.RunAsGroup
		pod.SecurityContext.FSGroup = fs.FSGroup
		pod.Volumes = []corev1.Volume{{
			Name: sessionVolume,
			VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: fs.ClaimName},
			},
		}}
		pod.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: sessionVolume, MountPath: fs.Path}}
	}
	return pod
}

// CleanupEnv is the cleanup container's environment beyond the connection
// Secret: the settings only the cleanup needs.
func CleanupEnv(store *v1.SessionStore) []corev1.EnvVar {
	batch := store.Spec.Cleanup.BatchSize
	if batch <= 0 {
		batch = 1000
	}
	grace := int64(store.Spec.GracePeriodOrDefault() / time.Second)
	env := []corev1.EnvVar{
		{Name: sessionstore.EnvBatchSize, Value: strconv.Itoa(int(batch))},
		{Name: sessionstore.EnvGraceSeconds, Value: strconv.FormatInt(grace, 10)},
	}
	switch {
	case store.Spec.PostgreSQL != nil:
		pg := store.Spec.PostgreSQL
		env = append(env,
			corev1.EnvVar{Name: sessionstore.EnvCreateTable, Value: strconv.FormatBool(ptr.Deref(pg.CreateTable, true))},
			corev1.EnvVar{Name: sessionstore.EnvCreateExpiryIndex, Value: strconv.FormatBool(ptr.Deref(pg.CreateExpiryIndex, false))})
	case store.Spec.MySQL != nil:
		env = append(env,
			corev1.EnvVar{Name: sessionstore.EnvCreateTable, Value: strconv.FormatBool(ptr.Deref(store.Spec.MySQL.CreateTable, true))})
	case store.Spec.MongoDB != nil:
		env = append(env,
			corev1.EnvVar{Name: sessionstore.EnvTTLIndex, Value: strconv.FormatBool(ptr.Deref(store.Spec.MongoDB.TTLIndex, true))})
	}
	return env
}

// CleanupPodEnv is the whole environment a cleanup pod of store sees: the
// connection Secret's data (from ConnectionData) and the container's own env.
// The controller probes the store with exactly this, so the probe and the
// cleanup cannot disagree.
func CleanupPodEnv(store *v1.SessionStore, data map[string]string) map[string]string {
	env := maps.Clone(data)
	for _, e := range CleanupEnv(store) {
		env[e.Name] = e.Value
	}
	return env
}
