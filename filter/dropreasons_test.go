package filter

import (
	"slices"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/testenv"

	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKnownDropReason(t *testing.T) {
	require.True(t, slices.IsSorted(DropReasons), "KnownDropReason searches a sorted list")
	for v, want := range map[string]bool{
		"NETFILTER_DROP": true, "netfilter_drop": true, "SKB_DROP_REASON_NETFILTER_DROP": true,
		"NO_SOCKET": true, "QDISC_EGRESS": true, "42": true,
		"FOO": false, "": false, "NETFILTER": false, "MAX": false, "-1": false,
	} {
		assert.Equal(t, want, KnownDropReason(v), v)
	}
	assert.Equal(t, []string{"NETFILTER_DROP"}, SimilarDropReasons("netfilter"))
	assert.Empty(t, SimilarDropReasons("FOO"))
}

// TestDropReasonsCoverKernel keeps the list current: on a kernel newer
// than the list, a name the agent could report would be refused by
// --drop-reason.
func TestDropReasonsCoverKernel(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		testenv.Skip(t, "no kernel BTF to compare with: "+err.Error())
	}
	var enum *btf.Enum
	require.NoError(t, spec.TypeByName("skb_drop_reason", &enum))
	for _, v := range enum.Values {
		n, ok := strings.CutPrefix(v.Name, "SKB_DROP_REASON_")
		if !ok || n == "MAX" || n == "SUBSYS_MASK" {
			continue // SKB_CONSUMED, SKB_NOT_DROPPED_YET and bounds are no drops
		}
		assert.True(t, KnownDropReason(n), "the running kernel's %s is missing from DropReasons", v.Name)
	}
}
