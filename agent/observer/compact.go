package observer

import (
	"math"
	"time"
	"unique"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// compactFlow is a flow record as the ring keeps it: 80 bytes (96 with its
// ring entry) instead of the ~1.5 KB of its proto form. What repeats
// across flows is interned by value with unique: the strings and enums the
// flows of one interface share (meta), and the peers: the address pair, the
// service with the address the pod addressed, and, by reference, the
// endpoints (the enrichment cache's shared messages) and the policy
// verdict (the judge's), which the flows between two pods share. response rebuilds the exact proto a
// client asked for; compactOf refuses what it cannot rebuild exactly, and
// the ring then keeps that record whole.
type compactFlow struct {
	time, firstSeen int64 // Unix nanoseconds
	packets, bytes  uint64

	meta  unique.Handle[flowMeta]
	peers unique.Handle[peers]

	uuid [16]byte
	// respTime (the GetFlowsResponse's own time) and lastSeen are in
	// nanoseconds after time: the agent sets all three to the time of the
	// flow's last packet, so they fit (a record where they do not is kept
	// whole).
	respTime, lastSeen int32
	// attempts is aggregated_attempts: a flush interval's SYNs, far below
	// 2^32 (a record above is kept whole).
	attempts uint32
	// port1, port2 are the source and destination ports, or the ICMP type
	// and code.
	port1, port2 uint16
}

// peers is who a flow is between and what policy says of it: the flows of
// one connection, and mostly of one pod pair, share it.
type peers struct {
	// addrs are held here, not interned apart: where every flow has an
	// address pair of its own (clients from outside), one interned value
	// a flow costs far less than two.
	addrs               addrPair
	service             uniqueService        // zero when neither a service nor an original destination
	source, destination *flowlensv1.Endpoint // shared, read-only
	// policy is shared and read-only: the judge hands out one verdict to
	// the flows it judges alike, so a copy by value per flow (packed for
	// interning) cost far more than the reference (issue 9).
	policy *flowlensv1.PolicyVerdict
}

// flowMeta is the part of a flow the flows of one interface mostly share,
// interned as one value (a few hundred distinct ones on a node).
type flowMeta struct {
	// respNode is the GetFlowsResponse's own node name.
	respNode, node, dropReason, ifName string
	ifIndex                            uint32

	has                     presence
	verdict, direction, obs uint8
	ipVersion, l4, tcpFlags uint8
	isReply                 bool
}

type addrPair struct{ src, dst string }

// presence says which optional messages a flow carried: a message that is
// present but empty must come back present.
type presence uint16

const (
	hasRespTime presence = 1 << iota
	hasTime
	hasIP
	hasL4
	hasCounters
	hasFirstSeen
	hasLastSeen
	hasInterface
	hasTCPFlags
	hasUUID
)

// Layer-4 kinds in flowMeta.l4 (0: none set).
const (
	l4TCP uint8 = iota + 1
	l4UDP
	l4SCTP
	l4ICMPv4
	l4ICMPv6
)

// serviceKey is a destination service by value, with the original
// destination address (the ClusterIP the pod addressed).
type serviceKey struct {
	dstOrig         string
	namespace, name string
	port            uint32
	present         bool // a present, empty Service stays present
}

// compactOf returns the compact form of a flow record; ok is false when
// the record is not a flow or holds a value the compact form cannot carry
// exactly (an out-of-range port or timestamp, an unknown enum value, a
// non-canonical UUID).
func compactOf(resp *flowlensv1.GetFlowsResponse) (compactFlow, bool) {
	fl := resp.GetFlow()
	if fl == nil {
		return compactFlow{}, false
	}
	var b builder
	c, m := &b.c, &b.m
	m.respNode, m.node, m.dropReason = resp.NodeName, fl.NodeName, fl.DropReason
	b.p.source, b.p.destination, b.p.policy = fl.Source, fl.Destination, fl.Policy
	if fl.AggregatedAttempts > math.MaxUint32 {
		return compactFlow{}, false
	}
	c.attempts = uint32(fl.AggregatedAttempts)
	m.isReply = fl.IsReply
	ok := b.setTime(hasTime, &c.time, fl.Time) && b.setOffset(hasRespTime, &c.respTime, resp.Time) &&
		small(int32(fl.Verdict), &m.verdict) && small(int32(fl.TrafficDirection), &m.direction) &&
		small(int32(fl.ObservationPoint), &m.obs) &&
		b.setIP(fl.Ip) && b.setL4(fl.L4) && b.setCounters(fl.Counters) && b.setUUID(fl.Uuid)
	if !ok {
		return compactFlow{}, false
	}
	if i := fl.Interface; i != nil {
		m.has |= hasInterface
		m.ifIndex, m.ifName = i.Index, i.Name
	}
	if f := fl.TcpFlags; f != nil {
		m.has |= hasTCPFlags
		m.tcpFlags = packFlags(f)
	}
	if s := fl.DestinationService; s != nil {
		b.svc = serviceKey{dstOrig: b.svc.dstOrig, namespace: s.Namespace, name: s.Name, port: s.Port, present: true}
	}
	if b.svc != (serviceKey{}) {
		b.p.service = unique.Make(b.svc)
	}
	c.peers = unique.Make(b.p)
	c.meta = unique.Make(b.m)
	return b.c, true
}

// builder gathers a compact flow and the parts it interns.
type builder struct {
	c   compactFlow
	m   flowMeta
	p   peers
	svc serviceKey
}

// small stores an enum value that fits a byte.
func small(v int32, to *uint8) bool {
	if v < 0 || v > math.MaxUint8 {
		return false
	}
	*to = uint8(v)
	return true
}

func port(v uint32, to *uint16) bool {
	if v > math.MaxUint16 {
		return false
	}
	*to = uint16(v)
	return true
}

// setTime stores t in Unix nanoseconds when that is exact.
func (b *builder) setTime(bit presence, to *int64, t *timestamppb.Timestamp) bool {
	if t == nil {
		return true
	}
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	if t.Nanos < 0 || t.Nanos >= 1e9 || t.Seconds < -maxSec || t.Seconds > maxSec {
		return false
	}
	b.m.has |= bit
	*to = t.Seconds*1e9 + int64(t.Nanos)
	return true
}

// setOffset stores t in nanoseconds after the flow's time (set first) when
// that is exact and fits.
func (b *builder) setOffset(bit presence, to *int32, t *timestamppb.Timestamp) bool {
	if t == nil {
		return true
	}
	var at int64
	if !b.setTime(bit, &at, t) {
		return false
	}
	d := at - b.c.time
	if (d < 0) != (at < b.c.time) || d != int64(int32(d)) {
		return false // the subtraction overflowed, or too far apart
	}
	*to = int32(d)
	return true
}

func (b *builder) setIP(ip *flowlensv1.IP) bool {
	if ip == nil {
		return true
	}
	b.m.has |= hasIP
	b.p.addrs = addrPair{src: ip.Source, dst: ip.Destination}
	b.svc.dstOrig = ip.DestinationOriginal
	return small(int32(ip.IpVersion), &b.m.ipVersion)
}

func (b *builder) setL4(l4 *flowlensv1.Layer4) bool {
	if l4 == nil {
		return true
	}
	b.m.has |= hasL4
	var p1, p2 uint32
	m := &b.m
	switch p := l4.Protocol.(type) {
	case nil:
		return true
	case *flowlensv1.Layer4_Tcp:
		m.l4, p1, p2 = l4TCP, p.Tcp.GetSourcePort(), p.Tcp.GetDestinationPort()
	case *flowlensv1.Layer4_Udp:
		m.l4, p1, p2 = l4UDP, p.Udp.GetSourcePort(), p.Udp.GetDestinationPort()
	case *flowlensv1.Layer4_Sctp:
		m.l4, p1, p2 = l4SCTP, p.Sctp.GetSourcePort(), p.Sctp.GetDestinationPort()
	case *flowlensv1.Layer4_Icmpv4:
		m.l4, p1, p2 = l4ICMPv4, p.Icmpv4.GetType(), p.Icmpv4.GetCode()
	case *flowlensv1.Layer4_Icmpv6:
		m.l4, p1, p2 = l4ICMPv6, p.Icmpv6.GetType(), p.Icmpv6.GetCode()
	default:
		return false
	}
	// A oneof member set to a nil message would not come back nil.
	return !nilMember(l4) && port(p1, &b.c.port1) && port(p2, &b.c.port2)
}

// nilMember reports a oneof member holding a typed nil message.
func nilMember(l4 *flowlensv1.Layer4) bool {
	switch p := l4.Protocol.(type) {
	case *flowlensv1.Layer4_Tcp:
		return p.Tcp == nil
	case *flowlensv1.Layer4_Udp:
		return p.Udp == nil
	case *flowlensv1.Layer4_Sctp:
		return p.Sctp == nil
	case *flowlensv1.Layer4_Icmpv4:
		return p.Icmpv4 == nil
	case *flowlensv1.Layer4_Icmpv6:
		return p.Icmpv6 == nil
	}
	return false
}

func (b *builder) setCounters(k *flowlensv1.Counters) bool {
	if k == nil {
		return true
	}
	b.m.has |= hasCounters
	b.c.packets, b.c.bytes = k.Packets, k.Bytes
	return b.setTime(hasFirstSeen, &b.c.firstSeen, k.FirstSeen) && b.setOffset(hasLastSeen, &b.c.lastSeen, k.LastSeen)
}

func (b *builder) setUUID(s string) bool {
	if s == "" {
		return true
	}
	u, ok := parseUUID(s)
	if !ok {
		return false
	}
	b.m.has |= hasUUID
	b.c.uuid = u
	return true
}

var tcpFlagBits = [...]func(*flowlensv1.TCPFlags) *bool{
	func(f *flowlensv1.TCPFlags) *bool { return &f.FIN },
	func(f *flowlensv1.TCPFlags) *bool { return &f.SYN },
	func(f *flowlensv1.TCPFlags) *bool { return &f.RST },
	func(f *flowlensv1.TCPFlags) *bool { return &f.PSH },
	func(f *flowlensv1.TCPFlags) *bool { return &f.ACK },
	func(f *flowlensv1.TCPFlags) *bool { return &f.URG },
	func(f *flowlensv1.TCPFlags) *bool { return &f.ECE },
	func(f *flowlensv1.TCPFlags) *bool { return &f.CWR },
}

func packFlags(f *flowlensv1.TCPFlags) uint8 {
	var b uint8
	for i, field := range tcpFlagBits {
		if *field(f) {
			b |= 1 << i
		}
	}
	return b
}

func unpackFlags(b uint8) *flowlensv1.TCPFlags {
	f := &flowlensv1.TCPFlags{}
	for i, field := range tcpFlagBits {
		*field(f) = b&(1<<i) != 0
	}
	return f
}
