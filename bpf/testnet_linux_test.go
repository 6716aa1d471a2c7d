package bpf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/flowlens/flowlens/lab/netns"
)

// requireRoot skips privileged tests for unprivileged runs.
func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Root(t, "loads BPF programs and creates network namespaces")
}

// newBridge builds the lab's bare node with n pods, removed when the test
// ends. The privileged tests that assert records live in package aggregate;
// here the node only hosts the programs.
func newBridge(t testing.TB, pods int) *netns.Bridge {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	br, err := netns.NewBridge(context.Background(), "flt"+hex.EncodeToString(b[:]), pods)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, br.Close()) })
	return br
}

// nodeNetns builds a bare node namespace without pods and returns its name.
func nodeNetns(t testing.TB) string {
	t.Helper()
	return newBridge(t, 0).Node.NetNS
}

// watchCapture loads a capture into the namespace ns and runs its Watch,
// sending drop events to drops, until the test ends.
func watchCapture(t testing.TB, ns string, cfg Config, log *slog.Logger, drops chan<- DropEvent) *Capture {
	t.Helper()
	var c *Capture
	require.NoError(t, netns.Do(ns, func() error {
		var err error
		c, err = New(cfg, log, prometheus.NewRegistry())
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, drops) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return c
}
