//go:build kubelab

package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/netns"
)

// TestKubeDemoDriftScenario runs `DEMO_CLUSTER=kubernetes make demo`'s script: the homelab on
// the real-cluster lab (two nodes, kube-router against the API server with K3s's ICMP
// accepts), flowlens as its DaemonSet judging by the git folder (a ConfigMap), the drift done
// through the API server. It checks what TestDemoDriftScenario checks of the netns demo, on the
// flows the demo read back with `flowlens observe -P`, and that `flowlens status -P` named the
// drifted policy on both nodes, and that the demo removed its cluster.
func TestKubeDemoDriftScenario(t *testing.T) {
	requireRoot(t)
	keep, out := runDemo(t, 20*time.Minute, "DEMO_CLUSTER=kubernetes")
	// It left nothing behind: none of its cluster's network namespaces.
	m := regexp.MustCompile(`(?m)^node node1 netns (\S+)-node1 `).FindStringSubmatch(out)
	require.NotNil(t, m, "the demo names its nodes")
	names, err := netns.List()
	require.NoError(t, err)
	for _, n := range names {
		assert.False(t, strings.HasPrefix(n, m[1]+"-"), "left behind: network namespace %s", n)
	}
	checkDemo(t, keep, out, filepath.Join(keep, "flows.json"))
	_, after, ok := strings.Cut(out, "== flowlens status -P")
	require.True(t, ok, "the demo prints the status after the drift")
	assert.Equal(t, 2, strings.Count(after, "the cluster's set differs from the files: changed database/allow-apps-ingress)"),
		"both agents report the drifted policy, and only it")
}
