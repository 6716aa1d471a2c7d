//go:build kubelab

// The real-cluster tests run with `make test-kubernetes` (build tag kubelab):
// they need the Kubernetes binaries, a long build the first time.

package kube

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/internal/testenv"
)

// TestClusterUpLeavesNothing brings the whole one-node cluster up (until the node is Ready and
// the controller-manager made the default ServiceAccount), runs a pod, and takes it down.
func TestClusterUpLeavesNothing(t *testing.T) {
	testenv.Root(t, "creates network namespaces and runs containerd and a kubelet")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bins := os.Getenv(EnvBinDir)
	if bins == "" {
		var err error
		bins, err = EnsureBinaries(ctx, testLog())
		require.NoError(t, err)
	}
	start := time.Now()
	c, err := Up(ctx, Config{Prefix: "fku" + randomSuffix(), Dir: filepath.Join(t.TempDir(), "cluster"), BinDir: bins, Log: testLog()})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))
	cs, err := c.Clientset()
	require.NoError(t, err)
	require.NoError(t, CreateNamespace(ctx, cs, "demo", nil))
	pod, err := CreatePod(ctx, cs, LabPod{Namespace: "demo", Name: "web", TCP: []int{8080}}, 2*time.Minute)
	require.NoError(t, err)
	assert.Contains(t, pod.Status.PodIP, "10.42.0.", "the pod's address comes from the node's /24 on cni0")

	st := c.State()
	require.NoError(t, c.Close())
	closed = true
	for _, p := range st.Procs {
		assert.False(t, p.running(), "%s still running", p.Name)
	}
	for _, ns := range st.NetNS {
		assert.NoFileExists(t, netnsPath(ns))
	}
	assert.NoDirExists(t, st.Dir)
}
