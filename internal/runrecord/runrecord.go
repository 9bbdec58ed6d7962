// Package runrecord writes what a finished run of a CronJob leaves in the
// API server, as the CronJob and Job controllers and the kubelet would: the
// Job, its Pod with the container's termination state, their status, and the
// CronJob's schedule times. The fallback demo records its local runs with it,
// and the envtest suite, which has no kubelet, the runs its tests need ended
// in a given way. Runs by a real kubelet are in the real-node e2e.
package runrecord

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Run is how one run of a pod template's container ended.
type Run struct {
	// JobName names the recorded Job; empty: <cronjob>-<minutes since epoch>,
	// as the CronJob controller names them.
	JobName string
	// FailureReason is the failed Job's reason; empty: BackoffLimitExceeded.
	FailureReason      string
	ExitCode           int
	TerminationMessage string
	Stdout, Stderr     string
	Started, Finished  time.Time
}

// Record writes what a run of cronJob looks like once finished: the Job
// the CronJob controller creates, the Pod the Job controller creates, their
// status as the kubelet and the Job controller set it, and the CronJob's
// lastScheduleTime.
func Record(ctx context.Context, c client.Client, cronJob *batchv1.CronJob, run *Run) (*batchv1.Job, error) {
	jobName := run.JobName
	if jobName == "" {
		jobName = fmt.Sprintf("%s-%d", cronJob.Name, run.Started.Unix()/60)
	}
	start := metav1.NewTime(run.Started.Truncate(time.Second))
	finish := metav1.NewTime(run.Finished.Truncate(time.Second).Add(time.Second))

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: cronJob.Namespace, Name: jobName, Labels: cronJob.Spec.JobTemplate.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob",
				Name: cronJob.Name, UID: cronJob.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: *cronJob.Spec.JobTemplate.Spec.DeepCopy(),
	}
	if err := c.Create(ctx, job); err != nil {
		return nil, fmt.Errorf("creating Job %s: %w", jobName, err)
	}
	if err := recordPod(ctx, c, cronJob, job, run, start, finish); err != nil {
		return nil, err
	}
	setJobOutcome(job, run, start, finish)
	if err := c.Status().Update(ctx, job); err != nil {
		return nil, fmt.Errorf("setting Job %s status: %w", job.Name, err)
	}
	cronJob = cronJob.DeepCopy()
	scheduled := metav1.NewTime(run.Started.Truncate(time.Minute))
	cronJob.Status.LastScheduleTime = &scheduled
	if run.ExitCode == 0 {
		cronJob.Status.LastSuccessfulTime = &finish
	}
	if err := c.Status().Update(ctx, cronJob); err != nil {
		return nil, fmt.Errorf("setting CronJob %s status: %w", cronJob.Name, err)
	}
	return job, nil
}

// recordPod creates the Job's Pod as the Job controller would, with the
// status the kubelet would report for the run.
func recordPod(ctx context.Context, c client.Client, cronJob *batchv1.CronJob, job *batchv1.Job, run *Run, start, finish metav1.Time) error {
	// The Job controller sets both its labels and their legacy short forms.
	labels := map[string]string{batchv1.JobNameLabel: job.Name, "job-name": job.Name,
		batchv1.ControllerUidLabel: string(job.UID), "controller-uid": string(job.UID)}
	for k, v := range cronJob.Spec.JobTemplate.Spec.Template.Labels {
		labels[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: cronJob.Namespace, Name: job.Name + "-local", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job",
				Name: job.Name, UID: job.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: *cronJob.Spec.JobTemplate.Spec.Template.Spec.DeepCopy(),
	}
	if err := c.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating Pod %s: %w", pod.Name, err)
	}
	container := pod.Spec.Containers[0]
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodSucceeded,
		StartTime: &start,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: container.Name, Image: container.Image, ImageID: "recorded://" + container.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(run.ExitCode), Reason: "Completed", Message: run.TerminationMessage,
				StartedAt: start, FinishedAt: finish,
			}},
		}},
	}
	if run.ExitCode != 0 {
		pod.Status.Phase = corev1.PodFailed
		pod.Status.ContainerStatuses[0].State.Terminated.Reason = "Error"
	}
	if run.ExitCode != 0 && run.TerminationMessage == "" && run.Stdout == "" && run.Stderr == "" {
		// The container never ran: no terminated state to report.
		pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("setting Pod %s status: %w", pod.Name, err)
	}
	return nil
}

// setJobOutcome fills in the Job status the Job controller would write for
// the run: complete, or failed past its backoff limit.
func setJobOutcome(job *batchv1.Job, run *Run, start, finish metav1.Time) {
	job.Status.StartTime = &start
	if run.ExitCode == 0 {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &finish
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: finish},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: finish},
		}
		return
	}
	job.Status.Failed = 1
	reason := run.FailureReason
	if reason == "" {
		reason = batchv1.JobReasonBackoffLimitExceeded
	}
	job.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reason, LastTransitionTime: finish},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, LastTransitionTime: finish,
			Message: "Job has reached the specified backoff limit"},
	}
}
