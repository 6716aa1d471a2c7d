package aggregate

import (
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

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
	newUUID    func() string

	// flows is the state of every flow in the kernel table.
	flows *flowStates
	// pass numbers the passes over the table: a flow observed since the
	// last sweep carries the current one.
	pass uint32
	// discovered counts keys first seen by user space; the kernel's
	// flows_created minus this estimates entries evicted unread.
	discovered      uint64
	reportedEvicted uint64
	lastRingbufLost uint64
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
		newUUID:    uuid.NewString,
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
// produce. final reports everything still held (shutdown). idle is true when
// the flow had no packet for the idle timeout: the caller deletes it from
// the kernel table and calls forget.
func (a *aggregator) observe(key *bpf.FlowKey, cur *bpf.FlowStats, nowMono uint64, final bool) (recs []*flowlensv1.Flow, idle bool) {
	st, added := a.flows.get(key)
	if added {
		a.discovered++
	}
	st.pass = a.pass
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
	return recs, idle
}

// stale reports whether counters read earlier than the flow's last
// observation (a drop event queued while a flush read the table) are behind
// it: they hold nothing new, and taken as current they would look like a
// recreated entry and be counted again.
func (a *aggregator) stale(key *bpf.FlowKey, cur *bpf.FlowStats) bool {
	st := a.flows.find(key)
	if st == nil {
		return false
	}
	return cur.Pkts < st.pkts || cur.Bytes < st.bytes || cur.DropPkts < st.dropPkts || cur.DropBytes < st.dropBytes ||
		(cur.Pkts == st.pkts && cur.DropPkts == st.dropPkts)
}

// sweep forgets flows absent from the last pass (evicted or deleted) and
// starts the next pass. A flow reported between passes (its first drop)
// counts as present in the pass that follows.
func (a *aggregator) sweep() {
	a.flows.keepOnly(func(st *flowState) bool { return st.pass == a.pass })
	a.pass++
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

func (a *aggregator) wall(mono uint64) *timestamppb.Timestamp {
	return timestamppb.New(time.Unix(0, int64(mono)+a.monoToWall))
}

func (a *aggregator) record(key *bpf.FlowKey, cur *bpf.FlowStats, verdict flowlensv1.Verdict, pkts, bytes uint64) *flowlensv1.Flow {
	src, dst := key.Addrs()
	f := &flowlensv1.Flow{
		Time:     a.wall(cur.LastNs),
		NodeName: a.nodeName,
		Verdict:  verdict,
		Ip: &flowlensv1.IP{
			Source:      src.String(),
			Destination: dst.String(),
			IpVersion:   flowlensv1.IPVersion_IPV4,
		},
		L4:      layer4(key),
		IsReply: cur.IsReply != 0,
		Counters: &flowlensv1.Counters{
			Packets:   pkts,
			Bytes:     bytes,
			FirstSeen: a.wall(cur.FirstNs),
			LastSeen:  a.wall(cur.LastNs),
		},
		Uuid: a.newUUID(),
	}
	if key.Family == 6 {
		f.Ip.IpVersion = flowlensv1.IPVersion_IPV6
	}
	if key.Flags&bpf.FlowKeyAttempts != 0 {
		f.AggregatedAttempts = pkts
	}
	if cur.Xlat != 0 {
		// Report where the packets went (the backend), keeping what the
		// pod addressed (a ClusterIP) in destination_original.
		f.Ip.DestinationOriginal = f.Ip.Destination
		// The service port the pod addressed; enrichment names the service
		// from it and destination_original.
		f.DestinationService = &flowlensv1.Service{Port: uint32(key.Dport)}
		xk := *key
		xk.Daddr, xk.Dport = cur.XlatDaddr, cur.XlatDport
		_, xdst := xk.Addrs()
		f.Ip.Destination = xdst.String()
		f.L4 = layer4(&xk)
	}
	switch cur.Obs {
	case bpf.ObsFromPod:
		f.TrafficDirection = flowlensv1.TrafficDirection_EGRESS
	case bpf.ObsToPod:
		f.TrafficDirection = flowlensv1.TrafficDirection_INGRESS
	}
	ifindex := cur.Ifindex
	if verdict == flowlensv1.Verdict_DROPPED {
		f.DropReason = a.reason(cur.DropReason)
		f.ObservationPoint = flowlensv1.ObservationPoint_KFREE_SKB
		ifindex = cur.DropIfindex
	} else if cur.Obs == bpf.ObsToPod {
		f.ObservationPoint = flowlensv1.ObservationPoint_TO_POD
	} else {
		f.ObservationPoint = flowlensv1.ObservationPoint_FROM_POD
	}
	if ifindex != 0 {
		f.Interface = &flowlensv1.Interface{Index: ifindex, Name: a.ifName(ifindex)}
	}
	if key.Proto == protoTCP {
		f.TcpFlags = tcpFlags(cur.TcpFlags)
	}
	return f
}

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

func layer4(k *bpf.FlowKey) *flowlensv1.Layer4 {
	sp, dp := uint32(k.Sport), uint32(k.Dport)
	switch k.Proto {
	case protoTCP:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: sp, DestinationPort: dp}}}
	case protoUDP:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Udp{Udp: &flowlensv1.UDP{SourcePort: sp, DestinationPort: dp}}}
	case protoSCTP:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Sctp{Sctp: &flowlensv1.SCTP{SourcePort: sp, DestinationPort: dp}}}
	case protoICMP:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{Type: dp >> 8, Code: dp & 0xff}}}
	case protoICMPv6:
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv6{Icmpv6: &flowlensv1.ICMPv6{Type: dp >> 8, Code: dp & 0xff}}}
	}
	return nil
}

func tcpFlags(f uint8) *flowlensv1.TCPFlags {
	return &flowlensv1.TCPFlags{
		FIN: f&0x01 != 0,
		SYN: f&0x02 != 0,
		RST: f&0x04 != 0,
		PSH: f&0x08 != 0,
		ACK: f&0x10 != 0,
		URG: f&0x20 != 0,
		ECE: f&0x40 != 0,
		CWR: f&0x80 != 0,
	}
}
