package aggregate

import (
	"github.com/flowlens/flowlens/bpf"
)

// flowState is what user space keeps of a kernel flow between reads. Only
// the cumulative counters the deltas need are kept of the kernel's value:
// a counter added to bpf.FlowStats that a record reports as a delta needs
// its last value here too.
type flowState struct {
	pkts, bytes, dropPkts, dropBytes uint64 // the kernel's counters at the last read
	heldPkts                         uint64 // counted at a veth, not yet reported
	heldBytes                        uint64
	debtPkts                         uint64 // drops not yet matched against counted packets
	debtBytes                        uint64
	pass                             uint32 // the pass it was last observed in
	confirmed                        bool
}

// flowStates holds the state of every flow of a full kernel table in about
// 100 bytes a flow (issue 9): the states in one dense, pointer-free slice
// the GC never scans, found through a map from the key to their index. A
// Go map of 65,536 entries has 131,072 slots, so the map holds only the
// index, and IPv4 keys (nearly all) in a 13-byte form of the key.
type flowStates struct {
	v4     map[v4Key]uint32
	other  map[bpf.FlowKey]uint32
	states []flowState
	free   []uint32 // indexes of forgotten states, for reuse
}

type v4Key struct {
	saddr, daddr [4]byte
	sport, dport uint16
	proto        uint8
}

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// shortKey returns the IPv4 form of k when it carries all of k: family 4,
// v4-mapped addresses, no flags (an aggregate of connection attempts keeps
// its full key) and zero padding.
func shortKey(k *bpf.FlowKey) (v4Key, bool) {
	if k.Family != 4 || k.Flags != 0 || k.Pad != 0 || [12]byte(k.Saddr[:12]) != v4Mapped || [12]byte(k.Daddr[:12]) != v4Mapped {
		return v4Key{}, false
	}
	return v4Key{saddr: [4]byte(k.Saddr[12:]), daddr: [4]byte(k.Daddr[12:]), sport: k.Sport, dport: k.Dport, proto: k.Proto}, true
}

func newFlowStates() *flowStates {
	return &flowStates{v4: map[v4Key]uint32{}, other: map[bpf.FlowKey]uint32{}}
}

func (f *flowStates) len() int { return len(f.v4) + len(f.other) }

// get returns the state of key, adding a zero one when there is none
// (added reports it). The pointer is valid until the next get.
func (f *flowStates) get(key *bpf.FlowKey) (st *flowState, added bool) {
	sk, short := shortKey(key)
	var (
		i  uint32
		ok bool
	)
	if short {
		i, ok = f.v4[sk]
	} else {
		i, ok = f.other[*key]
	}
	if ok {
		return &f.states[i], false
	}
	if n := len(f.free); n > 0 {
		i, f.free = f.free[n-1], f.free[:n-1]
		f.states[i] = flowState{}
	} else {
		i = uint32(len(f.states))
		f.states = append(f.states, flowState{})
	}
	if short {
		f.v4[sk] = i
	} else {
		f.other[*key] = i
	}
	return &f.states[i], true
}

// find returns the state of key, or nil when there is none. The pointer is
// valid until the next get.
func (f *flowStates) find(key *bpf.FlowKey) *flowState {
	var (
		i  uint32
		ok bool
	)
	if sk, short := shortKey(key); short {
		i, ok = f.v4[sk]
	} else {
		i, ok = f.other[*key]
	}
	if !ok {
		return nil
	}
	return &f.states[i]
}

func (f *flowStates) delete(key *bpf.FlowKey) {
	if sk, short := shortKey(key); short {
		if i, ok := f.v4[sk]; ok {
			delete(f.v4, sk)
			f.free = append(f.free, i)
		}
		return
	}
	if i, ok := f.other[*key]; ok {
		delete(f.other, *key)
		f.free = append(f.free, i)
	}
}

// keepOnly forgets the flows whose state keep rejects.
func (f *flowStates) keepOnly(keep func(*flowState) bool) {
	for k, i := range f.v4 {
		if !keep(&f.states[i]) {
			delete(f.v4, k)
			f.free = append(f.free, i)
		}
	}
	for k, i := range f.other {
		if !keep(&f.states[i]) {
			delete(f.other, k)
			f.free = append(f.free, i)
		}
	}
}
