package bpf

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"testing"

	"github.com/flowlens/flowlens/internal/testenv"

	"github.com/stretchr/testify/require"

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
