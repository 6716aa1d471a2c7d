package observer

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// response rebuilds the record compactOf was given. Each call returns a new
// message (the endpoints and nothing else are shared), so a reader may hand
// it to gRPC while the writer goes on.
func (c *compactFlow) response() *flowlensv1.GetFlowsResponse {
	fl := &flowlensv1.Flow{
		Time:             c.timestamp(hasTime, c.time),
		NodeName:         value(c.node),
		Verdict:          flowlensv1.Verdict(c.verdict),
		DropReason:       value(c.dropReason),
		L4:               c.layer4(),
		Source:           c.source,
		Destination:      c.destination,
		TrafficDirection: flowlensv1.TrafficDirection(c.direction),
		IsReply:          c.isReply,
		ObservationPoint: flowlensv1.ObservationPoint(c.obs),
	}
	if c.has&hasIP != 0 {
		fl.Ip = &flowlensv1.IP{Source: value(c.src), Destination: value(c.dst),
			IpVersion: flowlensv1.IPVersion(c.ipVersion), DestinationOriginal: value(c.dstOrig)}
	}
	if c.has&hasCounters != 0 {
		fl.Counters = &flowlensv1.Counters{Packets: c.packets, Bytes: c.bytes,
			FirstSeen: c.timestamp(hasFirstSeen, c.firstSeen), LastSeen: c.timestamp(hasLastSeen, c.lastSeen)}
	}
	if c.has&hasInterface != 0 {
		fl.Interface = &flowlensv1.Interface{Index: c.ifIndex, Name: value(c.ifName)}
	}
	if c.has&hasTCPFlags != 0 {
		fl.TcpFlags = unpackFlags(c.tcpFlags)
	}
	if c.has&hasUUID != 0 {
		fl.Uuid = formatUUID(c.uuid)
	}
	if c.service != (uniqueService{}) {
		s := c.service.Value()
		fl.DestinationService = &flowlensv1.Service{Namespace: s.namespace, Name: s.name, Port: s.port}
	}
	if c.policy != (uniquePolicy{}) {
		fl.Policy = c.policy.Value().proto()
	}
	return &flowlensv1.GetFlowsResponse{
		ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: fl},
		NodeName:      value(c.respNode),
		Time:          c.timestamp(hasRespTime, c.respTime),
	}
}

func (c *compactFlow) timestamp(bit presence, nano int64) *timestamppb.Timestamp {
	if c.has&bit == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, nano))
}

func (c *compactFlow) layer4() *flowlensv1.Layer4 {
	if c.has&hasL4 == 0 {
		return nil
	}
	a, b := uint32(c.port1), uint32(c.port2)
	l4 := &flowlensv1.Layer4{}
	switch c.l4 {
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
