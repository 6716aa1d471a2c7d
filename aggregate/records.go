package aggregate

import (
	"time"

	"github.com/google/uuid"

	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// aggregator turns cumulative kernel counters into records of what happened
// since the previous record of the same flow. It is pure (no kernel access)
// and used by one goroutine only.
//
// Verdict rules:
//   - DROPPED: the drop counter's delta, named from BTF.
//   - FORWARDED: packets counted at a veth, minus those dropped, once the flow
//     was ever seen past policy (fwd_pkts > 0: netfilter link or delivery).
//     Unconfirmed packets are held. Without a netfilter link (inference),
//     packets still undropped one flush later count as forwarded.
//   - A flow that was only ever dropped never yields FORWARDED.
type aggregator struct {
	nodeName  string
	inference bool
	idleNs    uint64
	reason    func(uint32) string // a drop reason's name
	ifName    func(index uint32) string
	// monoToWall converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to Unix ns.
	monoToWall int64
	newUUID    func() [16]byte

	// flows is the state of every flow in the kernel table.
	flows *flowStates
	// discovered counts keys first seen by user space; the kernel's
	// flows_created minus this estimates entries evicted unread.
	discovered      uint64
	reportedEvicted uint64
	lastRingbufLost uint64
	// recs is observe's result, reused: a flow yields at most two records.
	recs []Record
}

func newAggregator(nodeName string, inference bool, idle time.Duration, reason func(uint32) string,
	ifName func(uint32) string, monoToWall int64) *aggregator {
	if ifName == nil {
		ifName = func(uint32) string { return "" }
	}
	return &aggregator{
		nodeName:   nodeName,
		inference:  inference,
		idleNs:     uint64(idle.Nanoseconds()),
		reason:     reason,
		ifName:     ifName,
		monoToWall: monoToWall,
		newUUID:    func() [16]byte { return uuid.New() },
		flows:      newFlowStates(),
	}
}

func delta(cur, prev uint64) uint64 {
	if cur < prev { // the entry was deleted and recreated between reads
		return cur
	}
	return cur - prev
}

// observe records the current counters of key and returns the records they
// produce, valid until the next call. final reports everything still held
// (shutdown). idle is true when the flow had no packet for the idle
// timeout: the caller deletes it from the kernel table and calls forget.
func (a *aggregator) observe(key *bpf.FlowKey, cur *bpf.FlowStats, nowMono uint64, final bool) (recs []Record, idle bool) {
	recs = a.recs[:0]
	i, st, added := a.flows.get(key)
	if added {
		a.discovered++
	}
	dPkts, dBytes := delta(cur.Pkts, st.pkts), delta(cur.Bytes, st.bytes)
	dDrop, dDropBytes := delta(cur.DropPkts, st.dropPkts), delta(cur.DropBytes, st.dropBytes)
	st.pkts, st.bytes, st.dropPkts, st.dropBytes = cur.Pkts, cur.Bytes, cur.DropPkts, cur.DropBytes
	idle = nowMono > cur.LastNs && nowMono-cur.LastNs > a.idleNs
	final = final || idle

	if dDrop > 0 {
		recs = append(recs, a.record(key, cur, flowlensv1.Verdict_DROPPED, dDrop, dDropBytes))
	}

	old := st.heldPkts
	st.heldPkts += dPkts
	st.heldBytes += dBytes
	if cur.Obs == bpf.ObsFromPod {
		// Packets a pod sent and the node dropped were counted at its veth
		// too. Drops are seen microseconds after the count, possibly in the
		// next read, so unmatched drops are carried as debt.
		st.debtPkts += dDrop
		st.debtBytes += dDropBytes
		take := min(st.debtPkts, st.heldPkts)
		st.heldPkts -= take
		st.debtPkts -= take
		takeB := min(st.debtBytes, st.heldBytes)
		st.heldBytes -= takeB
		st.debtBytes -= takeB
	}
	old = min(old, st.heldPkts)
	if cur.FwdPkts > 0 {
		st.confirmed = true
	}

	var fwd, fwdBytes uint64
	switch {
	case st.confirmed, a.inference && final:
		fwd, fwdBytes = st.heldPkts, st.heldBytes
	case a.inference && old > 0:
		fwd = old
		fwdBytes = st.heldBytes * old / st.heldPkts
	}
	if fwd > 0 {
		recs = append(recs, a.record(key, cur, flowlensv1.Verdict_FORWARDED, fwd, fwdBytes))
		st.heldPkts -= fwd
		st.heldBytes -= fwdBytes
	}
	a.flows.put(i, &st)
	a.recs = recs
	return recs, idle
}

// stale reports whether counters read earlier than the flow's last
// observation (a drop event queued while a flush read the table) are behind
// it: they hold nothing new, and taken as current they would look like a
// recreated entry and be counted again.
func (a *aggregator) stale(key *bpf.FlowKey, cur *bpf.FlowStats) bool {
	st, ok := a.flows.find(key)
	if !ok {
		return false
	}
	return cur.Pkts < st.pkts || cur.Bytes < st.bytes || cur.DropPkts < st.dropPkts || cur.DropBytes < st.dropBytes ||
		(cur.Pkts == st.pkts && cur.DropPkts == st.dropPkts)
}

// sweep forgets flows absent from the last pass (evicted or deleted) and
// starts the next pass. A flow reported between passes (its first drop)
// counts as present in the pass that follows.
func (a *aggregator) sweep() {
	a.flows.sweep()
}

func (a *aggregator) forget(key *bpf.FlowKey) { a.flows.delete(key) }

// evicted returns how many more flows the kernel created than user space
// discovered since the last call: entries the LRU evicted before a read.
// created must be read before the pass over the map.
func (a *aggregator) evicted(created uint64) uint64 {
	if created <= a.discovered {
		return 0
	}
	lost := created - a.discovered
	if lost <= a.reportedEvicted {
		return 0
	}
	d := lost - a.reportedEvicted
	a.reportedEvicted = lost
	return d
}

// ringbufLost returns the increase of the kernel's ringbuf_lost counter.
func (a *aggregator) ringbufLost(total uint64) uint64 {
	d := delta(total, a.lastRingbufLost)
	a.lastRingbufLost = total
	return d
}

// wall converts a bpf_ktime_get_ns time to Unix nanoseconds.
func (a *aggregator) wall(mono uint64) int64 { return int64(mono) + a.monoToWall }

func (a *aggregator) record(key *bpf.FlowKey, cur *bpf.FlowStats, verdict flowlensv1.Verdict, pkts, bytes uint64) Record {
	r := Record{
		Key:       *key,
		XlatDaddr: cur.XlatDaddr,
		XlatDport: cur.XlatDport,
		Xlat:      cur.Xlat != 0,
		IsReply:   cur.IsReply != 0,
		Obs:       cur.Obs,
		TCPFlags:  cur.TcpFlags,
		Ifindex:   cur.Ifindex,
		Verdict:   verdict,
		Packets:   pkts,
		Bytes:     bytes,
		FirstNs:   a.wall(cur.FirstNs),
		LastNs:    a.wall(cur.LastNs),
		UUID:      a.newUUID(),
		NodeName:  a.nodeName,
	}
	if verdict == flowlensv1.Verdict_DROPPED {
		r.DropReason = a.reason(cur.DropReason)
		r.Ifindex = cur.DropIfindex
	}
	if r.Ifindex != 0 {
		// Named now: the link may be gone by the time the record is built.
		r.IfName = a.ifName(r.Ifindex)
	}
	return r
}

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)
