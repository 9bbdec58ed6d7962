// Package localrun runs a cleanup CronJob's pod template as a local process,
// for the fallback demo on machines with an API server but no kubelet;
// runrecord then records the run as the Job controller and the kubelet would.
//
// The container's environment is resolved from its envFrom Secrets and env,
// exactly as the kubelet resolves it; its args are run by the operator's
// binary (the image's entrypoint). The one liberty: the termination-message
// path the kubelet would mount is a temporary file, named with the
// cleanup command's --termination-log flag.
package localrun

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/runrecord"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Run is one finished run of a pod template's container, as runrecord
// records it.
type Run = runrecord.Run

// Execute runs cronJob's single container with binary as its entrypoint.
func Execute(ctx context.Context, c client.Reader, cronJob *batchv1.CronJob, binary string) (*Run, error) {
	pod := cronJob.Spec.JobTemplate.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		return nil, fmt.Errorf("CronJob %s has %d containers, want 1", cronJob.Name, len(pod.Containers))
	}
	container := pod.Containers[0]
	binary, err := filepath.Abs(binary) // it runs in a scratch directory
	if err != nil {
		return nil, err
	}
	env, err := ResolveEnv(ctx, c, cronJob.Namespace, container)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "localrun-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	termination := filepath.Join(dir, "termination-log")

	args := append(append([]string{}, container.Command[min(len(container.Command), 1):]...), container.Args...)
	args = append(args, "--termination-log="+termination)
	if deadline := cronJob.Spec.JobTemplate.Spec.ActiveDeadlineSeconds; deadline != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*deadline)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	run := &Run{Started: time.Now()}
	err = cmd.Run()
	run.Finished = time.Now()
	run.Stdout, run.Stderr = stdout.String(), stderr.String()
	if exitErr, ok := err.(*exec.ExitError); ok {
		run.ExitCode = exitErr.ExitCode()
	} else if err != nil {
		return nil, fmt.Errorf("running %s: %w", binary, err)
	}
	if data, err := os.ReadFile(termination); err == nil {
		run.TerminationMessage = string(data)
	}
	if run.TerminationMessage == "" && run.ExitCode != 0 &&
		container.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		run.TerminationMessage = tail(run.Stdout+run.Stderr, 80)
	}
	return run, nil
}

// ResolveEnv is the container's environment as the kubelet gives it: the
// keys of its envFrom Secrets, then its env (which wins), then PATH.
func ResolveEnv(ctx context.Context, c client.Reader, namespace string, container corev1.Container) ([]string, error) {
	values := map[string]string{}
	for _, from := range container.EnvFrom {
		if from.SecretRef == nil {
			return nil, fmt.Errorf("envFrom other than secretRef is not supported here")
		}
		secret := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: from.SecretRef.Name}, secret); err != nil {
			return nil, fmt.Errorf("envFrom Secret %s: %w", from.SecretRef.Name, err)
		}
		for k, v := range secret.Data {
			values[from.Prefix+k] = string(v)
		}
	}
	for _, e := range container.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("env %s: valueFrom is not supported here", e.Name)
		}
		values[e.Name] = e.Value
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range values {
		env = append(env, k+"="+v)
	}
	return env, nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	out := strings.Join(all, "\n")
	if len(out) > 4096 {
		out = out[len(out)-4096:]
	}
	return out
}
