package bpf

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The flush reads the table in batches: every entry once, with its value,
// across batch boundaries and for a table that fills none.
func TestIterateFlowsBatches(t *testing.T) {
	requireRoot(t)
	for _, n := range []int{0, 1, flowBatch - 1, flowBatch, 2*flowBatch + 7} {
		var c Capture
		require.NoError(t, loadFlowlensObjects(&c.objs, nil))
		for i := range n {
			k := FlowKey{Sport: uint16(i), Dport: uint16(i >> 16), Proto: 6, Family: 4}
			require.NoError(t, c.objs.Flows.Put(&k, &FlowStats{Pkts: uint64(i) + 1}))
		}
		seen := make(map[uint32]uint64, n)
		require.NoError(t, c.IterateFlows(func(rawKey, rawVal []byte) {
			var k FlowKey
			var st FlowStats
			require.NoError(t, DecodeFlowKey(rawKey, &k))
			require.NoError(t, DecodeFlowStats(rawVal, &st))
			i := uint32(k.Dport)<<16 | uint32(k.Sport)
			_, dup := seen[i]
			require.False(t, dup, "entry %d seen twice (table of %d)", i, n)
			seen[i] = st.Pkts
		}))
		require.Len(t, seen, n)
		for i, pkts := range seen {
			require.Equal(t, uint64(i)+1, pkts)
		}
		require.NoError(t, c.objs.Close())
	}
}

// Idle flows are deleted in batches: every key given goes, including those
// after a key already gone (evicted or deleted since the pass), which
// stops the kernel's batch.
func TestDeleteFlowsSkipsMissing(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		present int
		missing []int // indexes in the keys given that are not in the table
	}{
		{"none", 0, nil},
		{"all present", 3000, nil},
		{"missing first, middle and last", 3000, []int{0, 1500, 2999}},
		{"only missing", 3, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Capture
			require.NoError(t, loadFlowlensObjects(&c.objs, nil))
			defer c.objs.Close()
			keys := make([]FlowKey, tc.present)
			for i := range keys {
				keys[i] = FlowKey{Sport: uint16(i), Dport: 80, Proto: 6, Family: 4}
				if !slices.Contains(tc.missing, i) {
					require.NoError(t, c.objs.Flows.Put(&keys[i], &FlowStats{Pkts: 1}))
				}
			}
			keep := FlowKey{Sport: 1, Dport: 443, Proto: 6, Family: 4}
			require.NoError(t, c.objs.Flows.Put(&keep, &FlowStats{Pkts: 1}))
			require.NoError(t, c.DeleteFlows(keys))
			left := 0
			require.NoError(t, c.IterateFlows(func(_, _ []byte) { left++ }))
			require.Equal(t, 1, left, "only the key not given is left")
		})
	}
}

// BenchmarkIterateFlows prices a flush's read of a full 65,536-entry table:
// batches against the one-by-one walk (two system calls per entry).
func BenchmarkIterateFlows(b *testing.B) {
	requireRoot(b)
	var c Capture
	require.NoError(b, loadFlowlensObjects(&c.objs, nil))
	b.Cleanup(func() { _ = c.objs.Close() })
	for i := range int(c.objs.Flows.MaxEntries()) {
		k := FlowKey{Sport: uint16(i), Dport: uint16(i >> 16), Proto: 6, Family: 4}
		require.NoError(b, c.objs.Flows.Put(&k, &FlowStats{Pkts: 1}))
	}
	// The LRU evicts a little before max_entries: count what is there.
	n := 0
	require.NoError(b, c.iterateFlowsOneByOne(func(_, _ []byte) { n++ }))
	for _, bc := range []struct {
		name string
		walk func(func(key, val []byte)) error
	}{{"batch", c.IterateFlows}, {"one-by-one", c.iterateFlowsOneByOne}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				seen := 0
				require.NoError(b, bc.walk(func(_, _ []byte) { seen++ }))
				require.Equal(b, n, seen)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/flush")
			b.ReportMetric(float64(n), "entries")
		})
	}
}
