//go:build kubelab

// The real-cluster tests run with `make test-kubernetes` (build tag kubelab):
// they need the Kubernetes binaries, a long build the first time.

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// testCapabilities proves deploy/base's capability list is the smallest that works: the agent
// runs with it, with every attach mode at its best (the egress mode, tc_exit on the lab node's
// one other interface) and no SYS_ADMIN (it never calls setns), and removing any one of the
// capabilities makes it fail or lose an attach mode.
func testCapabilities(t *testing.T, e *kubeEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ds, err := e.cs.AppsV1().DaemonSets("flowlens").Get(ctx, "flowlens", metav1.GetOptions{})
	require.NoError(t, err)
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	require.NotNil(t, sc.Privileged)
	require.False(t, *sc.Privileged)
	caps := sc.Capabilities.Add
	assert.Equal(t, []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN"}, caps)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	full := attachModes(e.localStatus(t))
	assert.Equal(t, "accepted=tc-egress, drops=tp_btf/kfree_skb, exits=1, veth=tcx", full, "the agent with %v", caps)
	setCaps := func(add []corev1.Capability) {
		patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/spec/template/spec/containers/0/securityContext/capabilities/add", "value": add}})
		require.NoError(t, err)
		_, err = e.cs.AppsV1().DaemonSets("flowlens").Patch(ctx, "flowlens", types.JSONPatchType, patch, metav1.PatchOptions{})
		require.NoError(t, err)
	}
	defer func() {
		setCaps(caps)
		require.NoError(t, e.c.WaitDaemonSet(context.Background(), "flowlens", "flowlens", 3*time.Minute))
	}()
	for _, c := range caps {
		without := slices.DeleteFunc(slices.Clone(caps), func(x corev1.Capability) bool { return x == c })
		old := agentPodUIDs(ctx, t, e)
		setCaps(without)
		outcome := ""
		require.Eventually(t, func() bool {
			outcome = e.capOutcome(ctx, t, old, full)
			return outcome != ""
		}, 3*time.Minute, 2*time.Second, "the agent without %s never settled", c)
		t.Logf("without %s: %s", c, outcome)
		assert.NotEqual(t, "unchanged", outcome, "the agent does not need %s", c)
	}
}

func agentPodUIDs(ctx context.Context, t *testing.T, e *kubeEnv) map[types.UID]bool {
	pods, err := e.cs.CoreV1().Pods("flowlens").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=flowlens"})
	require.NoError(t, err)
	out := map[types.UID]bool{}
	for _, p := range pods.Items {
		out[p.UID] = true
	}
	return out
}

// capOutcome looks at the agent pod that replaced the old ones: "" while it is still starting,
// "fails: <reason>" when its container exits, "degraded: <modes>" or "unchanged" once it is Ready.
func (e *kubeEnv) capOutcome(ctx context.Context, t *testing.T, old map[types.UID]bool, full string) string {
	pods, err := e.cs.CoreV1().Pods("flowlens").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=flowlens"})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		if old[p.UID] || p.DeletionTimestamp != nil || len(p.Status.ContainerStatuses) == 0 {
			continue
		}
		cs := p.Status.ContainerStatuses[0]
		if term := cs.LastTerminationState.Terminated; term != nil && term.ExitCode != 0 {
			logs, _ := e.c.Kubectl(ctx, "-n", "flowlens", "logs", p.Name, "--previous", "--tail=3")
			return fmt.Sprintf("fails (exit %d): %s", term.ExitCode, logs)
		}
		if term := cs.State.Terminated; term != nil && term.ExitCode != 0 {
			logs, _ := e.c.Kubectl(ctx, "-n", "flowlens", "logs", p.Name, "--tail=3")
			return fmt.Sprintf("fails (exit %d): %s", term.ExitCode, logs)
		}
		if isReady(&p) {
			if modes := attachModes(e.localStatus(t)); modes != full {
				return "degraded: " + modes
			}
			return "unchanged"
		}
	}
	return ""
}

func attachModes(status string) string {
	m := regexp.MustCompile(`(?m)^Attach modes:\s+(.*)$`).FindStringSubmatch(status)
	if m == nil {
		return ""
	}
	return m[1]
}
