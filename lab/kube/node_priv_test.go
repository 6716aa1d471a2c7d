//go:build kubelab

// The real-cluster tests run with `make test-kubernetes` (build tag kubelab):
// they need the Kubernetes binaries, a long build the first time.

package kube

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/internal/testenv"
)

// TestContainerdNodeLeavesNothing brings up the network and one node's containerd (no Kubernetes
// binaries needed), imports the lab's pod image, and checks that Close leaves no process,
// namespace or directory behind.
func TestContainerdNodeLeavesNothing(t *testing.T) {
	testenv.Root(t, "creates network namespaces and runs containerd")
	for _, cmd := range []string{"containerd", "ctr", "podman", "nsenter"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s is not installed: run make deps", cmd)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c := &Cluster{log: testLog(), st: State{Prefix: "fkt" + randomSuffix(), Dir: filepath.Join(dir, "cluster")}}
	c.st.CPNetNS = c.st.Prefix + "-cp"
	require.NoError(t, os.MkdirAll(filepath.Join(c.st.Dir, "logs"), 0o755))
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})
	require.NoError(t, c.buildNetwork(ctx, 1))
	n := c.Nodes()[0]
	require.NoError(t, writeNodeFiles(c.st.Prefix, n, PauseImage))
	require.NoError(t, BuildLabPodImage(ctx, sandboxArchive(c.st.Dir)))
	argv := nodeArgs("/nonexistent", n, "")[0]
	require.NoError(t, c.start(procName(argv[0], n), n.NetNS, argv))
	require.NoError(t, c.waitContainerd(ctx, n, 30*time.Second))
	require.NoError(t, c.ImportImage(ctx, n, sandboxArchive(c.st.Dir)))
	out, err := c.ctr(ctx, n, "images", "list", "--quiet")
	require.NoError(t, err)
	assert.Contains(t, strings.Fields(out), LabPodImage)
	// Nothing listens on port 1 in the control plane: a refusal proves the route both ways.
	_, err = dialIn(ctx, n.NetNS, "tcp", apiserverIP.String()+":1")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "node cannot reach the control plane")

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
