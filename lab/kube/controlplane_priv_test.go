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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/internal/testenv"
)

// TestControlPlaneLeavesNothing starts etcd and kube-apiserver in the control-plane namespace,
// lists namespaces through the in-namespace dialer, and checks that Close leaves nothing.
func TestControlPlaneLeavesNothing(t *testing.T) {
	testenv.Root(t, "creates network namespaces")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bins := os.Getenv(EnvBinDir)
	if bins == "" {
		var err error
		bins, err = EnsureBinaries(ctx, testLog())
		require.NoError(t, err)
	}
	c := &Cluster{log: testLog(), st: State{Prefix: "fkc" + randomSuffix(), Dir: filepath.Join(t.TempDir(), "cluster"), BinDir: bins}}
	c.st.CPNetNS = c.st.Prefix + "-cp"
	c.st.Kubeconfig = filepath.Join(c.st.Dir, "kubeconfig")
	require.NoError(t, os.MkdirAll(filepath.Join(c.st.Dir, "logs"), 0o755))
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})
	require.NoError(t, c.buildNetwork(ctx, 1))
	p, err := writePKI(filepath.Join(c.st.Dir, "pki"), apiserverIP.AsSlice(), kubeSvcIP.AsSlice())
	require.NoError(t, err)
	require.NoError(t, p.writeKubeconfig(c.st.Kubeconfig, apiserverURL()))
	args := controlPlaneArgs(bins, c.st.Dir, p, c.st.Kubeconfig)
	start := time.Now()
	for _, name := range []string{"etcd", "kube-apiserver"} {
		require.NoError(t, c.start(name, c.st.CPNetNS, args[name]))
	}
	err = c.waitAPIServer(ctx, 90*time.Second)
	if err != nil {
		for _, pr := range c.State().Procs {
			t.Logf("--- %s\n%s", pr.Name, pr.tail(3000))
		}
	}
	require.NoError(t, err)
	t.Logf("apiserver ready %s after start", time.Since(start).Round(time.Millisecond))
	cs, err := c.Clientset()
	require.NoError(t, err)
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.NotEmpty(t, nss.Items)
	v, err := cs.Discovery().ServerVersion()
	require.NoError(t, err)
	assert.Equal(t, kubeVersion, v.GitVersion)

	st := c.State()
	require.NoError(t, c.Close())
	closed = true
	for _, pr := range st.Procs {
		assert.False(t, pr.running(), "%s still running", pr.Name)
	}
	for _, ns := range st.NetNS {
		assert.NoFileExists(t, netnsPath(ns))
	}
	assert.NoDirExists(t, st.Dir)
}
