package aggregate

import (
	"testing"

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
		st, added := fs.get(&tt.key)
		require.True(t, added, tt.name)
		st.pkts = uint64(i + 1)
	}
	require.Equal(t, len(tests), fs.len())
	for i, tt := range tests {
		assert.Equal(t, uint64(i+1), fs.find(&tt.key).pkts, tt.name)
		st, added := fs.get(&tt.key)
		assert.False(t, added, tt.name)
		assert.Equal(t, uint64(i+1), st.pkts, tt.name)
	}

	// forgotten states are reused zeroed
	fs.delete(&tests[0].key)
	fs.keepOnly(func(st *flowState) bool { return st.pkts != 4 }) // the ipv6 key
	assert.Equal(t, len(tests)-2, fs.len())
	for _, k := range []bpf.FlowKey{tests[0].key, tests[3].key} {
		st, added := fs.get(&k)
		assert.True(t, added)
		assert.Equal(t, flowState{}, *st)
	}
	assert.Len(t, fs.states, len(tests), "freed slots reused")
}
