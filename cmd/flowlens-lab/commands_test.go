package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testenv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab"
	"github.com/flowlens/flowlens/lab/netns"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(slog.New(slog.DiscardHandler))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(lab.EnvKubeRouterBin, "") // --k3s-icmp --kubernetes must find no kube-router
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"up", "--nodes", "3", "--state-dir", dir}, "--nodes 3: want 1 or 2"},
		{[]string{"down", "--state-dir", dir}, "nothing to take down"},
		{[]string{"traffic", "--state-dir", dir}, "read lab state"},
		{[]string{"down", "--state-dir", dir, "--prefix", "BAD!"}, "prefix"},
		{[]string{"up", "--k3s-icmp", "--state-dir", dir}, "only with enforcer kube-router"},
		{[]string{"up", "--k3s-icmp", "--kubernetes", "--state-dir", dir}, "--k3s-icmp: only with kube-router (--kube-router-bin"},
	} {
		t.Run(strings.Join(tc.args[:1], " "), func(t *testing.T) {
			_, err := runCLI(t, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	out, err := runCLI(t, "status", "--state-dir", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "no lab")
}

func TestUpTrafficDown(t *testing.T) {
	testenv.Root(t, "builds network namespaces")
	dir := t.TempDir()
	prefix := netns.NewPrefix()
	t.Cleanup(func() { _, _ = netns.Sweep(context.Background(), prefix) })

	out, err := runCLI(t, "up", "--nodes", "2", "--prefix", prefix, "--state-dir", dir)
	require.NoError(t, err)
	assert.Contains(t, out, prefix+"-node1")
	assert.Contains(t, out, prefix+"-node2")
	for _, f := range []string{"state.json", "cluster.yaml", "policies.yaml"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	_, err = runCLI(t, "up", "--state-dir", dir)
	assert.ErrorContains(t, err, "already up")

	out, err = runCLI(t, "status", "--state-dir", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "demo/remote")
	assert.NotContains(t, out, "MISSING")

	_, err = runCLI(t, "traffic", "--state-dir", dir, "--duration", "500ms")
	require.NoError(t, err)

	// Traffic started before `down` stops by itself, naming why (issue 10).
	trafficDone := make(chan error, 1)
	go func() {
		_, err := runCLI(t, "traffic", "--state-dir", dir, "--duration", "2m")
		trafficDone <- err
	}()
	time.Sleep(time.Second)
	out, err = runCLI(t, "down", "--state-dir", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "lab "+prefix+" down")
	select {
	case err := <-trafficDone:
		assert.ErrorContains(t, err, "taken down")
	case <-time.After(30 * time.Second):
		t.Fatal("flowlens-lab traffic went on after flowlens-lab down")
	}
	names, err := netns.List()
	require.NoError(t, err)
	for _, n := range names {
		assert.False(t, strings.HasPrefix(n, prefix+"-"), "leaked %s", n)
	}
	assert.NoFileExists(t, filepath.Join(dir, "state.json"))
}
