package controllers

import (
	"context"
	"fmt"
	"hash/fnv"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// A run-now request makes one Job from the CronJob's template, as
// `kubectl create job --from=cronjob/...` does: a governed store's waits
// for the gate like any other run.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=create

// runNow creates the Job of a new sessionstore.dev/run-now token, once:
// the Job's name is derived from the token, and the token is echoed in
// status.cleanup.lastHandledRunRequest.
func (r *sessionStoreReconciler) runNow(ctx context.Context, s *reconcileScope) error {
	token := s.store.Annotations[v1.RunNowAnnotation]
	if token == "" || token == s.status.Cleanup.LastHandledRunRequest || s.status.Cleanup.CronJobName == "" {
		return nil
	}
	cj, err := r.cleanupCronJob(ctx, s)
	if err != nil || cj == nil {
		return err // a new CronJob's creation brings the store back
	}
	if !templateMatchesGovernance(cj, s.governance) {
		// The CronJob still has the template of before the store's
		// governance changed (its apply failed, or the cache is behind): a
		// copy would pass by the gate, or be counted under a policy that no
		// longer governs the store. The token is handled once the template
		// is current: the CronJob's event brings the store back, as does
		// the change that lets a refused apply through.
		return nil
	}
	job := jobFromCronJob(cj, runNowJobName(cj.Name, token))
	// Owned by the CronJob, as kubectl's are, so its history limits and the
	// garbage collector treat it as any run; without blocking the owner's
	// deletion, which would need update on cronjobs/finalizers.
	if err := controllerutil.SetControllerReference(cj, job, r.Scheme); err != nil {
		return err
	}
	job.OwnerReferences[0].BlockOwnerDeletion = nil
	if err := r.Client.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating run-now Job %s: %w", job.Name, err)
	}
	ctrlLog(ctx).Info("run-now Job created", "job", job.Name)
	s.status.Cleanup.LastHandledRunRequest = token
	return nil
}

// templateMatchesGovernance tells whether cj's Jobs are made as the store's
// governance has them: suspended for the gate and labelled with its policy
// and server when governed, left to start at once when not.
func templateMatchesGovernance(cj *batchv1.CronJob, gov *specs.Governance) bool {
	tmpl := cj.Spec.JobTemplate
	suspended := tmpl.Spec.Suspend != nil && *tmpl.Spec.Suspend
	if gov == nil {
		return !suspended
	}
	return suspended && tmpl.Labels[specs.PolicyLabel] == gov.Policy && tmpl.Labels[specs.ServerLabel] == gov.ServerHash
}

// jobFromCronJob is what kubectl create job --from=cronjob/... makes.
func jobFromCronJob(cj *batchv1.CronJob, name string) *batchv1.Job {
	annotations := map[string]string{"cronjob.kubernetes.io/instantiate": "manual"}
	for k, v := range cj.Spec.JobTemplate.Annotations {
		annotations[k] = v
	}
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: cj.Namespace,
			Labels: cj.Spec.JobTemplate.Labels, Annotations: annotations,
		},
		Spec: *cj.Spec.JobTemplate.Spec.DeepCopy(),
	}
}

// runNowJobName is <cronjob>-now-<6 hex of the token's hash>: at most
// 52+5+6 = 63 characters, as the Job's name is a label value of its Pods.
func runNowJobName(cronJob, token string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(token))
	return fmt.Sprintf("%s-now-%06x", cronJob, h.Sum32()&0xffffff)
}
