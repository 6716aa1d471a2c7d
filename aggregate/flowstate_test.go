package aggregate

import (
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
)

func TestFlowStatesKeys(t *testing.T) {
	v4 := tcpKey(1)
	v6 := bpf.FlowKey{Saddr: mapped("fd00::1"), Daddr: mapped("fd00::2"), Sport: 1, Dport: 2, Proto: protoUDP, Family: 6}
	padded := v4
	padded.Pad = 1
	attempts := v4 // an aggregate of connection attempts: sport 0 and a flag
	attempts.Sport, attempts.Flags = 0, bpf.FlowKeyAttempts
	sport0 := v4
	sport0.Sport = 0
	unmapped := v4
	unmapped.Saddr = mapped("fd00::1") // family 4 with an address that is no IPv4
	// Keys that differ only where the short form has no room must stay
	// apart, and each must find its own state again.
	tests := []struct {
		name  string
		key   bpf.FlowKey
		short bool
	}{
		{"ipv4", v4, true},
		{"other port", tcpKey(2), true},
		{"other protocol", func() bpf.FlowKey { k := v4; k.Proto = protoUDP; return k }(), true},
		{"ipv6", v6, false},
		{"padding set", padded, false},
		{"attempts aggregate", attempts, false},
		{"source port 0", sport0, true},
		{"family 4, not v4-mapped", unmapped, false},
	}
	fs := newFlowStates()
	for i, tt := range tests {
		_, short := shortKey(&tt.key)
		assert.Equal(t, tt.short, short, tt.name)
		at, st, added := fs.get(&tt.key)
		require.True(t, added, tt.name)
		st.pkts = uint64(i + 1)
		fs.put(at, &st)
	}
	require.Equal(t, len(tests), fs.len())
	for i, tt := range tests {
		st, ok := fs.find(&tt.key)
		assert.True(t, ok, tt.name)
		assert.Equal(t, uint64(i+1), st.pkts, tt.name)
		_, st, added := fs.get(&tt.key)
		assert.False(t, added, tt.name)
		assert.Equal(t, uint64(i+1), st.pkts, tt.name)
	}

	// forgotten states are reused zeroed
	fs.delete(&tests[0].key)
	fs.sweep() // all seen in this pass
	for _, tt := range tests[1:] {
		if tt.name != "ipv6" {
			fs.get(&tt.key)
		}
	}
	fs.sweep() // forgets the ipv6 key
	assert.Equal(t, len(tests)-2, fs.len())
	for _, k := range []bpf.FlowKey{tests[0].key, tests[3].key} {
		_, st, added := fs.get(&k)
		assert.True(t, added)
		assert.Equal(t, flowState{}, st)
	}
	assert.Equal(t, uint32(len(tests)), fs.n, "freed slots reused")
}

// TestFlowStatesWide checks that a state packedState cannot carry is kept
// whole, comes back exact, and is packed again once it fits.
func TestFlowStatesWide(t *testing.T) {
	tests := []struct {
		name string
		st   flowState
		wide bool
	}{
		{"small", flowState{pkts: 10, bytes: 1000, dropPkts: 1, dropBytes: 60, heldPkts: 2, heldBytes: 200, confirmed: true}, false},
		{"32 bits", flowState{pkts: math.MaxUint32, bytes: math.MaxUint32, heldBytes: math.MaxUint32}, false},
		{"bytes past 4 GiB", flowState{pkts: 10, bytes: 1 << 32}, true},
		{"packets past 2^32", flowState{pkts: 1 << 32}, true},
		{"drop bytes", flowState{dropBytes: 1 << 40}, true},
		{"held", flowState{heldPkts: 1 << 33, heldBytes: 1 << 33, confirmed: true}, true},
		{"debt", flowState{debtPkts: 1, debtBytes: 60}, true},
		{"debt bytes only", flowState{debtBytes: 60}, true},
		{"fits again", flowState{pkts: 5, confirmed: true}, false},
		{"wide again", flowState{bytes: 1 << 32}, true},
	}
	fs := newFlowStates()
	key := tcpKey(1)
	for _, tt := range tests {
		at, _, _ := fs.get(&key)
		fs.put(at, &tt.st)
		got, ok := fs.find(&key)
		require.True(t, ok, tt.name)
		assert.Equal(t, tt.st, got, tt.name)
		assert.Equal(t, tt.wide, len(fs.wide) == 1, tt.name)
	}
	fs.delete(&key)
	assert.Empty(t, fs.wide, "a forgotten wide state")
}

// TestObservePastPackedState follows one flow whose counters pass 32 bits
// and whose drops outrun its counted packets: the records stay exact while
// its state is kept whole, and it is packed again once it fits.
func TestObservePastPackedState(t *testing.T) {
	const gib4 = 1 << 32
	agg := newAggregator("node-1", false, time.Hour, bpf.DropReasons{}.Name, nil, 0)
	key := tcpKey(1)
	steps := []struct {
		name  string
		stats bpf.FlowStats
		want  []rec
		wide  bool
	}{
		{"below 4 GiB", bpf.FlowStats{Pkts: 10, Bytes: gib4 - 100, FwdPkts: 1}, []rec{{fwd, 10, gib4 - 100}}, false},
		{"past 4 GiB", bpf.FlowStats{Pkts: 20, Bytes: gib4 + 900, FwdPkts: 1}, []rec{{fwd, 10, 1000}}, true},
		{"drops matched", bpf.FlowStats{Pkts: 30, Bytes: gib4 + 1900, DropPkts: 2, DropBytes: 200, FwdPkts: 1},
			[]rec{{drop, 2, 200}, {fwd, 8, 800}}, true},
		{"drops ahead of counts", bpf.FlowStats{Pkts: 30, Bytes: gib4 + 1900, DropPkts: 5, DropBytes: 500, FwdPkts: 1},
			[]rec{{drop, 3, 300}}, true},
		{"debt paid", bpf.FlowStats{Pkts: 33, Bytes: gib4 + 2200, DropPkts: 5, DropBytes: 500, FwdPkts: 1}, nil, true},
		{"recreated, fits again", bpf.FlowStats{Pkts: 4, Bytes: 400, FwdPkts: 1}, []rec{{fwd, 4, 400}}, false},
	}
	for _, step := range steps {
		step.stats.Obs, step.stats.LastNs = bpf.ObsFromPod, 1
		recs, _ := agg.observe(&key, &step.stats, 1, false)
		var got []rec
		for _, r := range recs {
			got = append(got, rec{r.Verdict, r.Packets, r.Bytes})
		}
		assert.Equal(t, step.want, got, step.name)
		assert.Equal(t, step.wide, len(agg.flows.wide) == 1, step.name)
	}
}

// BenchmarkFlowStateMemory prints what the user-space state of a full
// kernel flow table costs (issue 9): 65,536 IPv4 flows observed through
// the aggregator, in bytes per flow and in total.
func BenchmarkFlowStateMemory(b *testing.B) {
	const flows = 65536
	keys := make([]bpf.FlowKey, flows)
	for i := range keys {
		keys[i] = bpf.FlowKey{Saddr: mapped(fmt.Sprintf("10.42.%d.%d", i/250%250, i%250+1)), Daddr: mapped("10.42.0.11"),
			Sport: uint16(i), Dport: 8080, Proto: protoTCP, Family: 4}
	}
	st := bpf.FlowStats{Pkts: 10, Bytes: 1000, FwdPkts: 10, LastNs: 1, Obs: bpf.ObsFromPod}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		agg := newAggregator("node-1", false, time.Hour, bpf.DropReasons{}.Name, nil, 0)
		for i := range keys {
			agg.observe(&keys[i], &st, 1, false)
		}
		agg.sweep()
		runtime.GC()
		runtime.ReadMemStats(&after)
		used := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(used/flows, "bytes/flow")
		b.ReportMetric(used/(1<<20), "MiB/full-table")
		runtime.KeepAlive(agg)
	}
}
