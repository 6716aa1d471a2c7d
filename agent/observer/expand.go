package observer

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// expander rebuilds compact flows for one reader. It fills one scratch
// flow, reused, for the filter: a scan of a full ring that matches little
// allocates next to nothing. The zero value is ready; an expander is not
// safe for concurrent use.
type expander struct {
	// The scratch flow view returns, and its messages.
	fl                        flowlensv1.Flow
	ip                        flowlensv1.IP
	counters                  flowlensv1.Counters
	iface                     flowlensv1.Interface
	time, firstSeen, lastSeen timestamppb.Timestamp
}

// response rebuilds the record compactOf was given. Each call returns new
// messages except the endpoints and the policy explanation, which are
// shared and must not be modified.
func (x *expander) response(c *compactFlow) *flowlensv1.GetFlowsResponse {
	fl := &flowlensv1.Flow{}
	x.fill(c, fl, nil)
	m := c.meta.Value()
	return &flowlensv1.GetFlowsResponse{
		ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: fl},
		NodeName:      m.respNode,
		Time:          m.timestamp(hasRespTime, c.time+int64(c.respTime), nil),
	}
}

// view is c as a flow for the filter, valid until the next call.
func (x *expander) view(c *compactFlow) *flowlensv1.Flow {
	x.fill(c, &x.fl, x)
	return &x.fl
}

// fill sets every field of fl from c; with scratch, the nested messages
// that have no pointer to share are scratch's, not new ones.
func (x *expander) fill(c *compactFlow, fl *flowlensv1.Flow, scratch *expander) {
	var ip *flowlensv1.IP
	var counters *flowlensv1.Counters
	var iface *flowlensv1.Interface
	var tm, first, last *timestamppb.Timestamp
	if scratch != nil {
		ip, counters, iface = &scratch.ip, &scratch.counters, &scratch.iface
		tm, first, last = &scratch.time, &scratch.firstSeen, &scratch.lastSeen
	}
	m, p := c.meta.Value(), c.peers.Value()
	*fl = flowlensv1.Flow{
		Time:               m.timestamp(hasTime, c.time, tm),
		NodeName:           m.node,
		Verdict:            flowlensv1.Verdict(m.verdict),
		DropReason:         m.dropReason,
		L4:                 c.layer4(&m),
		Source:             p.source,
		Destination:        p.destination,
		TrafficDirection:   flowlensv1.TrafficDirection(m.direction),
		IsReply:            m.isReply,
		ObservationPoint:   flowlensv1.ObservationPoint(m.obs),
		Policy:             p.policy,
		AggregatedAttempts: uint64(c.attempts),
	}
	var svc serviceKey
	if p.service != (uniqueService{}) {
		svc = p.service.Value()
	}
	if m.has&hasIP != 0 {
		a := p.addrs
		fl.Ip = reuse(ip)
		*fl.Ip = flowlensv1.IP{Source: a.src, Destination: a.dst,
			IpVersion: flowlensv1.IPVersion(m.ipVersion), DestinationOriginal: svc.dstOrig}
	}
	if m.has&hasCounters != 0 {
		fl.Counters = reuse(counters)
		*fl.Counters = flowlensv1.Counters{Packets: c.packets, Bytes: c.bytes,
			FirstSeen: m.timestamp(hasFirstSeen, c.firstSeen, first), LastSeen: m.timestamp(hasLastSeen, c.time+int64(c.lastSeen), last)}
	}
	if m.has&hasInterface != 0 {
		fl.Interface = reuse(iface)
		*fl.Interface = flowlensv1.Interface{Index: m.ifIndex, Name: m.ifName}
	}
	if m.has&hasTCPFlags != 0 {
		fl.TcpFlags = unpackFlags(m.tcpFlags)
	}
	if m.has&hasUUID != 0 {
		fl.Uuid = formatUUID(c.uuid)
	}
	if svc.present {
		fl.DestinationService = &flowlensv1.Service{Namespace: svc.namespace, Name: svc.name, Port: svc.port}
	}
}

// reuse returns m, or a new message when m is nil.
func reuse[T any](m *T) *T {
	if m == nil {
		return new(T)
	}
	return m
}

// timestamp is the time at bit, in to (or a new message), nil when absent.
func (m *flowMeta) timestamp(bit presence, nano int64, to *timestamppb.Timestamp) *timestamppb.Timestamp {
	if m.has&bit == 0 {
		return nil
	}
	t := time.Unix(0, nano)
	to = reuse(to)
	*to = timestamppb.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
	return to
}

func (c *compactFlow) layer4(m *flowMeta) *flowlensv1.Layer4 {
	if m.has&hasL4 == 0 {
		return nil
	}
	a, b := uint32(c.port1), uint32(c.port2)
	l4 := &flowlensv1.Layer4{}
	switch m.l4 {
	case l4TCP:
		l4.Protocol = &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: a, DestinationPort: b}}
	case l4UDP:
		l4.Protocol = &flowlensv1.Layer4_Udp{Udp: &flowlensv1.UDP{SourcePort: a, DestinationPort: b}}
	case l4SCTP:
		l4.Protocol = &flowlensv1.Layer4_Sctp{Sctp: &flowlensv1.SCTP{SourcePort: a, DestinationPort: b}}
	case l4ICMPv4:
		l4.Protocol = &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{Type: a, Code: b}}
	case l4ICMPv6:
		l4.Protocol = &flowlensv1.Layer4_Icmpv6{Icmpv6: &flowlensv1.ICMPv6{Type: a, Code: b}}
	}
	return l4
}
