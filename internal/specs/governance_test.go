package specs

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

func governedTestStore() *v1.SessionStore {
	return &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendFilesystem, Filesystem: &v1.FilesystemSpec{ClaimName: "c", Path: "/f"},
			Cleanup: v1.CleanupSpec{ActiveDeadlineSeconds: 3600}},
	}
}

func TestUngovernedCronJobIsUnchanged(t *testing.T) {
	store := governedTestStore()
	plain := GovernedCleanupCronJob(store, "img", nil)
	if plain.Spec.JobTemplate.Spec.Suspend != nil || plain.Spec.JobTemplate.Labels[PolicyLabel] != "" {
		t.Errorf("an ungoverned store's job template changed: suspend %v, labels %v",
			plain.Spec.JobTemplate.Spec.Suspend, plain.Spec.JobTemplate.Labels)
	}
	if !equality.Semantic.DeepEqual(plain, CleanupCronJob(store, "img")) {
		t.Error("GovernedCleanupCronJob(nil) differs from CleanupCronJob")
	}
}

func TestGovernedCronJob(t *testing.T) {
	store := governedTestStore()
	res := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("99Mi")}}
	gov := &Governance{Policy: "p", ServerHash: "abc", Schedule: "7 3 * * *", TimeZone: ptr.To("Europe/Paris"),
		ActiveDeadlineSeconds: ptr.To[int64](900), Resources: &res, StartingDeadlineSeconds: 120}
	cj := GovernedCleanupCronJob(store, "img", gov)
	tmpl := cj.Spec.JobTemplate
	if !ptr.Deref(tmpl.Spec.Suspend, false) {
		t.Error("the governed job template is not suspended")
	}
	if tmpl.Labels[PolicyLabel] != "p" || tmpl.Labels[ServerLabel] != "abc" || tmpl.Labels[StoreLabel] != "s" {
		t.Errorf("job template labels %v", tmpl.Labels)
	}
	if cj.Labels[PolicyLabel] != "" || tmpl.Spec.Template.Labels[PolicyLabel] != "" {
		t.Error("only the Jobs carry the policy label")
	}
	if cj.Spec.Schedule != "7 3 * * *" || ptr.Deref(cj.Spec.TimeZone, "") != "Europe/Paris" || ptr.Deref(cj.Spec.StartingDeadlineSeconds, 0) != 120 {
		t.Errorf("schedule %q zone %v deadline %v", cj.Spec.Schedule, cj.Spec.TimeZone, cj.Spec.StartingDeadlineSeconds)
	}
	if ptr.Deref(tmpl.Spec.ActiveDeadlineSeconds, 0) != 900 {
		t.Errorf("active deadline %v, want the policy's 900 over the store's default", tmpl.Spec.ActiveDeadlineSeconds)
	}
	if got := tmpl.Spec.Template.Spec.Containers[0].Resources; !equality.Semantic.DeepEqual(got, res) {
		t.Errorf("resources %v, want the policy's", got)
	}
	// The store's own settings win.
	store.Spec.Cleanup.ActiveDeadlineSeconds = 120
	store.Spec.Cleanup.TimeZone = ptr.To("UTC")
	store.Spec.Cleanup.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
	cj = GovernedCleanupCronJob(store, "img", gov)
	if ptr.Deref(cj.Spec.JobTemplate.Spec.ActiveDeadlineSeconds, 0) != 120 ||
		!cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().Equal(resource.MustParse("1Gi")) {
		t.Error("the store's own cleanup settings must override the policy's defaults")
	}
	// The zone is the governance's: the controller picks it (the store's own,
	// unless the policy hashed a time into its windows, on its own clock).
	if *cj.Spec.TimeZone != "Europe/Paris" {
		t.Errorf("zone %q, want the governance's", *cj.Spec.TimeZone)
	}
	gov.TimeZone = nil
	if cj = GovernedCleanupCronJob(store, "img", gov); *cj.Spec.TimeZone != "UTC" {
		t.Errorf("zone %q, want the store's own when the governance names none", *cj.Spec.TimeZone)
	}
}
