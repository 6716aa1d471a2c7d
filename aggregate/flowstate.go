package aggregate

import (
	"encoding/binary"
	"math"

	"github.com/flowlens/flowlens/bpf"
)

// flowState is what user space keeps of a kernel flow between reads, in
// the form the aggregator works on. Only the cumulative counters the deltas
// need are kept of the kernel's value: a counter added to bpf.FlowStats
// that a record reports as a delta needs its last value here too (and in
// packedState).
type flowState struct {
	pkts, bytes, dropPkts, dropBytes uint64 // the kernel's counters at the last read
	heldPkts                         uint64 // counted at a veth, not yet reported
	heldBytes                        uint64
	debtPkts                         uint64 // drops not yet matched against counted packets
	debtBytes                        uint64
	confirmed                        bool
}

// packedState is a flowState as flowStates stores it: 28 bytes instead of
// 72. It holds the state exactly when every counter fits 32 bits and there
// is no debt, which is nearly every flow (a flow past 4 GiB, or with drops
// not yet matched, is rare and mostly for a flush or two). Otherwise
// stateWide is set and the state is whole in flowStates.wide.
type packedState struct {
	pkts, bytes, dropPkts, dropBytes uint32
	heldPkts, heldBytes              uint32
	flags                            uint8
}

const (
	stateConfirmed uint8 = 1 << iota
	// stateSeen is the parity of the last pass the flow was observed in.
	stateSeen
	stateWide
)

func pack(st *flowState) (packedState, bool) {
	if st.debtPkts|st.debtBytes != 0 ||
		max(st.pkts, st.bytes, st.dropPkts, st.dropBytes, st.heldPkts, st.heldBytes) > math.MaxUint32 {
		return packedState{}, false
	}
	p := packedState{pkts: uint32(st.pkts), bytes: uint32(st.bytes), dropPkts: uint32(st.dropPkts),
		dropBytes: uint32(st.dropBytes), heldPkts: uint32(st.heldPkts), heldBytes: uint32(st.heldBytes)}
	if st.confirmed {
		p.flags = stateConfirmed
	}
	return p, true
}

func (p *packedState) unpack() flowState {
	return flowState{pkts: uint64(p.pkts), bytes: uint64(p.bytes), dropPkts: uint64(p.dropPkts),
		dropBytes: uint64(p.dropBytes), heldPkts: uint64(p.heldPkts), heldBytes: uint64(p.heldBytes),
		confirmed: p.flags&stateConfirmed != 0}
}

// flowStates holds the state of every flow of a full kernel table in about
// 64 bytes a flow (issue 9; BenchmarkFlowStateMemory): packed states in
// fixed-size chunks of pointer-free memory the GC never scans, found
// through a map from the key to their index. A Go map of 65,536 entries
// has 131,072 slots, so the map holds only the index, and IPv4 keys
// (nearly all) in a 13-byte form of the key: a 17-byte slot. Chunks, unlike
// one slice grown by append, carry no growth slack and are never copied.
type flowStates struct {
	v4     map[v4Key]index
	other  map[bpf.FlowKey]uint32
	chunks [][]packedState
	n      uint32   // states allocated
	free   []uint32 // indexes of forgotten states, for reuse
	// wide are the states pack refuses, by index.
	wide map[uint32]flowState
	// seen is stateSeen during an odd pass, 0 during an even one.
	seen uint8
}

const (
	chunkBits = 10 // 1,024 states, 28 KiB
	chunkLen  = 1 << chunkBits
)

// v4Key is an IPv4 key: source and destination address, source and
// destination port (big-endian, so it reads as the tuple), protocol.
type v4Key [13]byte

// index is a state's index as the v4 map holds it: a uint32 would be
// aligned to 4 bytes and make the slot 20 bytes, not 17.
type index [4]byte

func indexOf(i uint32) (x index) { binary.LittleEndian.PutUint32(x[:], i); return x }
func (x index) uint32() uint32   { return binary.LittleEndian.Uint32(x[:]) }

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// shortKey returns the IPv4 form of k when it carries all of k: family 4,
// v4-mapped addresses, no flags (an aggregate of connection attempts keeps
// its full key) and zero padding.
func shortKey(k *bpf.FlowKey) (v4Key, bool) {
	if k.Family != 4 || k.Flags != 0 || k.Pad != 0 || [12]byte(k.Saddr[:12]) != v4Mapped || [12]byte(k.Daddr[:12]) != v4Mapped {
		return v4Key{}, false
	}
	var s v4Key
	copy(s[0:4], k.Saddr[12:])
	copy(s[4:8], k.Daddr[12:])
	binary.BigEndian.PutUint16(s[8:], k.Sport)
	binary.BigEndian.PutUint16(s[10:], k.Dport)
	s[12] = k.Proto
	return s, true
}

func newFlowStates() *flowStates {
	return &flowStates{v4: map[v4Key]index{}, other: map[bpf.FlowKey]uint32{}, wide: map[uint32]flowState{}}
}

func (f *flowStates) len() int { return len(f.v4) + len(f.other) }

func (f *flowStates) at(i uint32) *packedState { return &f.chunks[i>>chunkBits][i&(chunkLen-1)] }

func (f *flowStates) lookup(key *bpf.FlowKey) (uint32, bool) {
	if sk, short := shortKey(key); short {
		x, ok := f.v4[sk]
		return x.uint32(), ok
	}
	i, ok := f.other[*key]
	return i, ok
}

func (f *flowStates) load(i uint32) flowState {
	p := f.at(i)
	if p.flags&stateWide != 0 {
		return f.wide[i]
	}
	return p.unpack()
}

// get returns the state of key, a zero one when there is none (added
// reports it), and marks the flow observed in this pass. The caller stores
// the state back with put(i, ...).
func (f *flowStates) get(key *bpf.FlowKey) (i uint32, st flowState, added bool) {
	i, ok := f.lookup(key)
	if !ok {
		i = f.alloc()
		if sk, short := shortKey(key); short {
			f.v4[sk] = indexOf(i)
		} else {
			f.other[*key] = i
		}
	}
	p := f.at(i)
	p.flags = p.flags&^stateSeen | f.seen
	if !ok {
		return i, flowState{}, true
	}
	return i, f.load(i), false
}

// alloc returns the index of a zero state.
func (f *flowStates) alloc() uint32 {
	if n := len(f.free); n > 0 {
		i := f.free[n-1]
		f.free = f.free[:n-1]
		*f.at(i) = packedState{}
		return i
	}
	i := f.n
	if i>>chunkBits == uint32(len(f.chunks)) {
		f.chunks = append(f.chunks, make([]packedState, chunkLen))
	}
	f.n++
	return i
}

// put stores st as the state at index i (from get).
func (f *flowStates) put(i uint32, st *flowState) {
	p := f.at(i)
	seen := p.flags & stateSeen
	if np, ok := pack(st); ok {
		if p.flags&stateWide != 0 {
			delete(f.wide, i)
		}
		*p = np
	} else {
		f.wide[i] = *st
		p.flags = stateWide
	}
	p.flags |= seen
}

// find returns the state of key; ok is false when there is none.
func (f *flowStates) find(key *bpf.FlowKey) (st flowState, ok bool) {
	i, ok := f.lookup(key)
	if !ok {
		return flowState{}, false
	}
	return f.load(i), true
}

func (f *flowStates) delete(key *bpf.FlowKey) {
	if sk, short := shortKey(key); short {
		if x, ok := f.v4[sk]; ok {
			delete(f.v4, sk)
			f.release(x.uint32())
		}
		return
	}
	if i, ok := f.other[*key]; ok {
		delete(f.other, *key)
		f.release(i)
	}
}

func (f *flowStates) release(i uint32) {
	if f.at(i).flags&stateWide != 0 {
		delete(f.wide, i)
	}
	f.free = append(f.free, i)
}

// sweep forgets the flows get did not see since the last sweep and starts
// the next pass. Every flow kept was seen in the pass just ended, so the
// parity of a pass tells the two apart.
func (f *flowStates) sweep() {
	for k, x := range f.v4 {
		if i := x.uint32(); f.at(i).flags&stateSeen != f.seen {
			delete(f.v4, k)
			f.release(i)
		}
	}
	for k, i := range f.other {
		if f.at(i).flags&stateSeen != f.seen {
			delete(f.other, k)
			f.release(i)
		}
	}
	f.seen ^= stateSeen
}
