package observer

import (
	"math"
	"time"
	"unique"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// compactFlow is a flow record as the ring keeps it: about 200 bytes
// instead of the ~1.5 KB of its proto form. Strings that repeat across
// flows (addresses, node, interface, drop reason) are unique handles, the
// endpoints are the enrichment cache's shared messages, the service and the
// policy explanation are interned by value. response rebuilds the exact
// proto a client asked for; compactOf refuses what it cannot rebuild
// exactly, and the ring then keeps that record whole.
type compactFlow struct {
	// respNode and respTime are the GetFlowsResponse's own fields.
	respNode str
	respTime int64

	time, firstSeen, lastSeen int64 // Unix nanoseconds
	packets, bytes            uint64

	node, dropReason, ifName str
	src, dst, dstOrig        str

	source, destination *flowlensv1.Endpoint // shared, read-only
	service             uniqueService
	policy              uniquePolicy

	uuid    [16]byte
	ifIndex uint32
	// attempts is aggregated_attempts: a flush interval's SYNs, far below
	// 2^32 (a record above is kept whole).
	attempts uint32
	// port1, port2 are the source and destination ports, or the ICMP type
	// and code.
	port1, port2 uint16

	has                     presence
	verdict, direction, obs uint8
	ipVersion, l4, tcpFlags uint8
	isReply                 bool
}

// str is an interned string; the zero handle is "".
type str = unique.Handle[string]

func intern(s string) str {
	if s == "" {
		return str{}
	}
	return unique.Make(s)
}

func value(h str) string {
	if h == (str{}) {
		return ""
	}
	return h.Value()
}

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

// Layer-4 kinds in compactFlow.l4 (0: none set).
const (
	l4TCP uint8 = iota + 1
	l4UDP
	l4SCTP
	l4ICMPv4
	l4ICMPv6
)

// serviceKey is a destination service by value.
type serviceKey struct {
	namespace, name string
	port            uint32
	present         bool // a present, empty Service stays present
}

// compactOf returns the compact form of a flow record; ok is false when
// the record is not a flow or holds a value the compact form cannot carry
// exactly (an out-of-range port or timestamp, an unknown enum value, a
// non-canonical UUID).
func compactOf(resp *flowlensv1.GetFlowsResponse) (c compactFlow, ok bool) {
	fl := resp.GetFlow()
	if fl == nil {
		return c, false
	}
	c.respNode = intern(resp.NodeName)
	c.node = intern(fl.NodeName)
	c.dropReason = intern(fl.DropReason)
	c.source, c.destination = fl.Source, fl.Destination
	c.isReply = fl.IsReply
	if fl.AggregatedAttempts > math.MaxUint32 {
		return c, false
	}
	c.attempts = uint32(fl.AggregatedAttempts)
	ok = c.setTime(hasRespTime, &c.respTime, resp.Time) && c.setTime(hasTime, &c.time, fl.Time) &&
		small(int32(fl.Verdict), &c.verdict) && small(int32(fl.TrafficDirection), &c.direction) &&
		small(int32(fl.ObservationPoint), &c.obs) &&
		c.setIP(fl.Ip) && c.setL4(fl.L4) && c.setCounters(fl.Counters) && c.setUUID(fl.Uuid)
	if !ok {
		return c, false
	}
	if i := fl.Interface; i != nil {
		c.has |= hasInterface
		c.ifIndex, c.ifName = i.Index, intern(i.Name)
	}
	if f := fl.TcpFlags; f != nil {
		c.has |= hasTCPFlags
		c.tcpFlags = packFlags(f)
	}
	if s := fl.DestinationService; s != nil {
		c.service = unique.Make(serviceKey{namespace: s.Namespace, name: s.Name, port: s.Port, present: true})
	}
	if p := fl.Policy; p != nil {
		c.policy = unique.Make(policyKeyOf(p))
	}
	return c, true
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
func (c *compactFlow) setTime(bit presence, to *int64, t *timestamppb.Timestamp) bool {
	if t == nil {
		return true
	}
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	if t.Nanos < 0 || t.Nanos >= 1e9 || t.Seconds < -maxSec || t.Seconds > maxSec {
		return false
	}
	c.has |= bit
	*to = t.Seconds*1e9 + int64(t.Nanos)
	return true
}

func (c *compactFlow) setIP(ip *flowlensv1.IP) bool {
	if ip == nil {
		return true
	}
	c.has |= hasIP
	c.src, c.dst, c.dstOrig = intern(ip.Source), intern(ip.Destination), intern(ip.DestinationOriginal)
	return small(int32(ip.IpVersion), &c.ipVersion)
}

func (c *compactFlow) setL4(l4 *flowlensv1.Layer4) bool {
	if l4 == nil {
		return true
	}
	c.has |= hasL4
	var a, b uint32
	switch p := l4.Protocol.(type) {
	case nil:
		return true
	case *flowlensv1.Layer4_Tcp:
		c.l4, a, b = l4TCP, p.Tcp.GetSourcePort(), p.Tcp.GetDestinationPort()
	case *flowlensv1.Layer4_Udp:
		c.l4, a, b = l4UDP, p.Udp.GetSourcePort(), p.Udp.GetDestinationPort()
	case *flowlensv1.Layer4_Sctp:
		c.l4, a, b = l4SCTP, p.Sctp.GetSourcePort(), p.Sctp.GetDestinationPort()
	case *flowlensv1.Layer4_Icmpv4:
		c.l4, a, b = l4ICMPv4, p.Icmpv4.GetType(), p.Icmpv4.GetCode()
	case *flowlensv1.Layer4_Icmpv6:
		c.l4, a, b = l4ICMPv6, p.Icmpv6.GetType(), p.Icmpv6.GetCode()
	default:
		return false
	}
	// A oneof member set to a nil message would not come back nil.
	return !nilMember(l4) && port(a, &c.port1) && port(b, &c.port2)
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

func (c *compactFlow) setCounters(k *flowlensv1.Counters) bool {
	if k == nil {
		return true
	}
	c.has |= hasCounters
	c.packets, c.bytes = k.Packets, k.Bytes
	return c.setTime(hasFirstSeen, &c.firstSeen, k.FirstSeen) && c.setTime(hasLastSeen, &c.lastSeen, k.LastSeen)
}

func (c *compactFlow) setUUID(s string) bool {
	if s == "" {
		return true
	}
	u, ok := parseUUID(s)
	if !ok {
		return false
	}
	c.has |= hasUUID
	c.uuid = u
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
