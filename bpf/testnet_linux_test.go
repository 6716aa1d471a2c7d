package bpf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/netns"
)

// requireRoot skips privileged tests for unprivileged runs.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and creates network namespaces")
	}
}

// nodeNetns builds a bare node namespace (the lab's bridge without pods),
// removed when the test ends, and returns its name. The privileged tests
// with pods and traffic assert records, in package aggregate.
func nodeNetns(t testing.TB) string {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	br, err := netns.NewBridge(context.Background(), "flt"+hex.EncodeToString(b[:]), 0)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, br.Close()) })
	return br.Node.NetNS
}
