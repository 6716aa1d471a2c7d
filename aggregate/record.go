package aggregate

import (
	"net/netip"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Record is one flow record as aggregation sends it: values only (its
// strings are the node's, BTF's and the link table's, shared), so the
// queue between aggregation and the agent's pipeline holds a full table's
// flush in one preallocated buffer instead of a proto tree per record
// (~1.5 KB each; issue 9). A FlowBuilder turns it into the
// flowlens.v1.Flow the API reports, one at a time.
type Record struct {
	// Key is the kernel's key: addresses, ports (the ICMP type and code in
	// Dport), protocol, family; FlowKeyAttempts marks an aggregate of
	// connection attempts.
	Key bpf.FlowKey
	// XlatDaddr and XlatDport are where conntrack translated the
	// destination (the backend of a ClusterIP) when Xlat is set.
	XlatDaddr [16]byte
	XlatDport uint16
	Xlat      bool

	IsReply  bool
	Obs      uint8 // bpf.ObsFromPod or bpf.ObsToPod
	TCPFlags uint8 // the kernel's bits, FIN = 0x01 ... CWR = 0x80
	Ifindex  uint32
	Verdict  flowlensv1.Verdict

	Packets, Bytes uint64
	// FirstNs and LastNs are Unix nanoseconds; LastNs is the record's time.
	FirstNs, LastNs int64
	// UUID is the record's flow ID; all zero builds none.
	UUID [16]byte

	NodeName, DropReason, IfName string
}

// Addrs returns the source and the destination the record reports: the
// backend when conntrack translated the flow.
func (r *Record) Addrs() (src, dst netip.Addr) {
	k := r.Key
	if r.Xlat {
		k.Daddr = r.XlatDaddr
	}
	return k.Addrs()
}

// Proto returns the record as a new flowlens.v1.Flow.
func (r *Record) Proto() *flowlensv1.Flow {
	return new(FlowBuilder).Build(r)
}

// FlowBuilder builds flows from records into messages it owns and reuses:
// the pipeline builds one flow at a time, and a flow's messages are
// garbage as soon as its consumers have copied what they keep.
type FlowBuilder struct {
	fl       flowlensv1.Flow
	ip       flowlensv1.IP
	l4       flowlensv1.Layer4
	counters flowlensv1.Counters
	time     timestamppb.Timestamp
	first    timestamppb.Timestamp
	last     timestamppb.Timestamp
	iface    flowlensv1.Interface
	flags    flowlensv1.TCPFlags
	service  flowlensv1.Service
	tcp      flowlensv1.Layer4_Tcp
	udp      flowlensv1.Layer4_Udp
	sctp     flowlensv1.Layer4_Sctp
	icmp4    flowlensv1.Layer4_Icmpv4
	icmp6    flowlensv1.Layer4_Icmpv6
	tcpL4    flowlensv1.TCP
	udpL4    flowlensv1.UDP
	sctpL4   flowlensv1.SCTP
	icmp4L4  flowlensv1.ICMPv4
	icmp6L4  flowlensv1.ICMPv6
}

// Build fills the builder's flow from r and returns it. The flow and every
// message it points to that the builder set are overwritten by the next
// Build: a consumer that keeps any of them must copy it, or the caller must
// take a new builder. Messages a consumer sets in the flow (endpoints, the
// policy verdict, a named service) are replaced, never written into.
func (b *FlowBuilder) Build(r *Record) *flowlensv1.Flow {
	src, dst := r.Addrs()
	b.ip = flowlensv1.IP{Source: src.String(), Destination: dst.String(), IpVersion: flowlensv1.IPVersion_IPV4}
	if r.Key.Family == 6 {
		b.ip.IpVersion = flowlensv1.IPVersion_IPV6
	}
	setTime(&b.time, r.LastNs)
	setTime(&b.first, r.FirstNs)
	setTime(&b.last, r.LastNs)
	b.counters = flowlensv1.Counters{Packets: r.Packets, Bytes: r.Bytes, FirstSeen: &b.first, LastSeen: &b.last}
	b.fl = flowlensv1.Flow{
		Time:     &b.time,
		NodeName: r.NodeName,
		Verdict:  r.Verdict,
		Ip:       &b.ip,
		L4:       b.layer4(r),
		IsReply:  r.IsReply,
		Counters: &b.counters,
	}
	fl := &b.fl
	if r.UUID != ([16]byte{}) {
		fl.Uuid = uuid.UUID(r.UUID).String()
	}
	if r.Key.Flags&bpf.FlowKeyAttempts != 0 {
		fl.AggregatedAttempts = r.Packets
	}
	if r.Xlat {
		// Report where the packets went (the backend), keeping what the
		// pod addressed (a ClusterIP) in destination_original and the
		// service port in destination_service: enrichment names the
		// service from them.
		_, orig := r.Key.Addrs()
		b.ip.DestinationOriginal = orig.String()
		b.service = flowlensv1.Service{Port: uint32(r.Key.Dport)}
		fl.DestinationService = &b.service
	}
	switch r.Obs {
	case bpf.ObsFromPod:
		fl.TrafficDirection = flowlensv1.TrafficDirection_EGRESS
	case bpf.ObsToPod:
		fl.TrafficDirection = flowlensv1.TrafficDirection_INGRESS
	}
	switch {
	case r.Verdict == flowlensv1.Verdict_DROPPED:
		fl.DropReason = r.DropReason
		fl.ObservationPoint = flowlensv1.ObservationPoint_KFREE_SKB
	case r.Obs == bpf.ObsToPod:
		fl.ObservationPoint = flowlensv1.ObservationPoint_TO_POD
	default:
		fl.ObservationPoint = flowlensv1.ObservationPoint_FROM_POD
	}
	if r.Ifindex != 0 {
		b.iface = flowlensv1.Interface{Index: r.Ifindex, Name: r.IfName}
		fl.Interface = &b.iface
	}
	if r.Key.Proto == protoTCP {
		f := r.TCPFlags
		b.flags = flowlensv1.TCPFlags{
			FIN: f&0x01 != 0,
			SYN: f&0x02 != 0,
			RST: f&0x04 != 0,
			PSH: f&0x08 != 0,
			ACK: f&0x10 != 0,
			URG: f&0x20 != 0,
			ECE: f&0x40 != 0,
			CWR: f&0x80 != 0,
		}
		fl.TcpFlags = &b.flags
	}
	return fl
}

// setTime sets t to Unix nanoseconds ns as timestamppb.New does.
func setTime(t *timestamppb.Timestamp, ns int64) {
	at := time.Unix(0, ns)
	*t = timestamppb.Timestamp{Seconds: at.Unix(), Nanos: int32(at.Nanosecond())}
}

// layer4 is the reported ports: the backend's when conntrack translated
// the destination.
func (b *FlowBuilder) layer4(r *Record) *flowlensv1.Layer4 {
	sp, dp := uint32(r.Key.Sport), uint32(r.Key.Dport)
	if r.Xlat {
		dp = uint32(r.XlatDport)
	}
	switch r.Key.Proto {
	case protoTCP:
		b.tcpL4 = flowlensv1.TCP{SourcePort: sp, DestinationPort: dp}
		b.tcp = flowlensv1.Layer4_Tcp{Tcp: &b.tcpL4}
		b.l4 = flowlensv1.Layer4{Protocol: &b.tcp}
	case protoUDP:
		b.udpL4 = flowlensv1.UDP{SourcePort: sp, DestinationPort: dp}
		b.udp = flowlensv1.Layer4_Udp{Udp: &b.udpL4}
		b.l4 = flowlensv1.Layer4{Protocol: &b.udp}
	case protoSCTP:
		b.sctpL4 = flowlensv1.SCTP{SourcePort: sp, DestinationPort: dp}
		b.sctp = flowlensv1.Layer4_Sctp{Sctp: &b.sctpL4}
		b.l4 = flowlensv1.Layer4{Protocol: &b.sctp}
	case protoICMP:
		b.icmp4L4 = flowlensv1.ICMPv4{Type: dp >> 8, Code: dp & 0xff}
		b.icmp4 = flowlensv1.Layer4_Icmpv4{Icmpv4: &b.icmp4L4}
		b.l4 = flowlensv1.Layer4{Protocol: &b.icmp4}
	case protoICMPv6:
		b.icmp6L4 = flowlensv1.ICMPv6{Type: dp >> 8, Code: dp & 0xff}
		b.icmp6 = flowlensv1.Layer4_Icmpv6{Icmpv6: &b.icmp6L4}
		b.l4 = flowlensv1.Layer4{Protocol: &b.icmp6}
	default:
		return nil
	}
	return &b.l4
}
