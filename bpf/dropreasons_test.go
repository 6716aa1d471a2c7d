package bpf

import (
	"os"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/testenv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadDropReasons(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testenv.Skip(t, "kernel BTF not available: "+err.Error())
	}
	reasons, err := LoadDropReasons()
	require.NoError(t, err)

	byName := make(map[string]uint32, len(reasons))
	for v, n := range reasons {
		assert.False(t, strings.HasPrefix(n, dropReasonPrefix), "%d: %s keeps its prefix", v, n)
		byName[n] = v
	}
	for _, name := range []string{"NETFILTER_DROP", "NOT_SPECIFIED", "NO_SOCKET"} {
		v, ok := byName[name]
		require.True(t, ok, "%s resolves", name)
		assert.Equal(t, name, reasons.Name(v))
	}
	assert.Greater(t, byName["NETFILTER_DROP"], byName["NOT_SPECIFIED"])
	assert.Equal(t, "4294967295", reasons.Name(^uint32(0)), "unknown values print as numbers")
}
