package aggregate

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// legacyRecord is how aggregation built a flow before records went through
// the queue as values (issue 9), kept as the reference the builder must
// match field for field.
func legacyRecord(a *aggregator, key *bpf.FlowKey, cur *bpf.FlowStats, verdict flowlensv1.Verdict, pkts, bytes uint64, id string) *flowlensv1.Flow {
	wall := func(mono uint64) *timestamppb.Timestamp {
		return timestamppb.New(time.Unix(0, int64(mono)+a.monoToWall))
	}
	layer4 := func(k *bpf.FlowKey) *flowlensv1.Layer4 {
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
	src, dst := key.Addrs()
	f := &flowlensv1.Flow{
		Time:     wall(cur.LastNs),
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
			FirstSeen: wall(cur.FirstNs),
			LastSeen:  wall(cur.LastNs),
		},
		Uuid: id,
	}
	if key.Family == 6 {
		f.Ip.IpVersion = flowlensv1.IPVersion_IPV6
	}
	if key.Flags&bpf.FlowKeyAttempts != 0 {
		f.AggregatedAttempts = pkts
	}
	if cur.Xlat != 0 {
		f.Ip.DestinationOriginal = f.Ip.Destination
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
		b := cur.TcpFlags
		f.TcpFlags = &flowlensv1.TCPFlags{FIN: b&0x01 != 0, SYN: b&0x02 != 0, RST: b&0x04 != 0, PSH: b&0x08 != 0,
			ACK: b&0x10 != 0, URG: b&0x20 != 0, ECE: b&0x40 != 0, CWR: b&0x80 != 0}
	}
	return f
}

type recordCase struct {
	name    string
	key     bpf.FlowKey
	stats   bpf.FlowStats
	verdict flowlensv1.Verdict
}

func recordCases() []recordCase {
	v4 := func(src, dst string, sport, dport uint16, proto uint8) bpf.FlowKey {
		return bpf.FlowKey{Saddr: mapped(src), Daddr: mapped(dst), Sport: sport, Dport: dport, Proto: proto, Family: 4}
	}
	v6 := func(src, dst string, sport, dport uint16, proto uint8) bpf.FlowKey {
		return bpf.FlowKey{Saddr: mapped(src), Daddr: mapped(dst), Sport: sport, Dport: dport, Proto: proto, Family: 6}
	}
	attempts := v4("10.42.0.10", "10.42.0.11", 0, 8080, protoTCP)
	attempts.Flags = bpf.FlowKeyAttempts
	times := bpf.FlowStats{FirstNs: 90*sec + 123, LastNs: 99*sec + 999_999_999}
	with := func(s bpf.FlowStats) bpf.FlowStats {
		s.FirstNs, s.LastNs = times.FirstNs, times.LastNs
		return s
	}
	return []recordCase{
		{"tcp forwarded from a pod", v4("10.42.0.10", "10.42.0.11", 40000, 8080, protoTCP),
			with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3, TcpFlags: 0x12}), fwd},
		{"tcp reply to a pod, every flag", v4("10.42.0.11", "10.42.0.10", 8080, 40000, protoTCP),
			with(bpf.FlowStats{Obs: bpf.ObsToPod, Ifindex: 4, TcpFlags: 0xff, IsReply: 1}), fwd},
		{"tcp dropped by netfilter", v4("10.42.0.10", "10.42.0.12", 40001, 5432, protoTCP),
			with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3, DropIfindex: 9, DropReason: 12, TcpFlags: 0x02}), drop},
		{"drop without an interface or a direction", v4("192.0.2.1", "10.42.0.12", 1, 2, protoTCP),
			with(bpf.FlowStats{DropReason: 77}), drop},
		{"udp", v4("10.42.0.10", "10.42.0.11", 5000, 53, protoUDP), with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3}), fwd},
		{"sctp", v4("10.42.0.10", "10.42.0.11", 5000, 3868, protoSCTP), with(bpf.FlowStats{Obs: bpf.ObsToPod, Ifindex: 4}), fwd},
		{"icmp echo", v4("10.42.0.10", "10.42.0.11", 7, 8<<8, protoICMP), with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3}), fwd},
		{"icmp unreachable dropped", v4("10.42.0.1", "10.42.0.10", 0, 3<<8|13, protoICMP),
			with(bpf.FlowStats{Obs: bpf.ObsToPod, DropIfindex: 4, DropReason: 12}), drop},
		{"ipv6 tcp", v6("fd00:42::10", "fd00:42::11", 40000, 80, protoTCP), with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3, TcpFlags: 0x11}), fwd},
		{"icmpv6 echo reply", v6("fd00:42::11", "fd00:42::10", 9, 129<<8, protoICMPv6),
			with(bpf.FlowStats{Obs: bpf.ObsToPod, Ifindex: 4, IsReply: 1}), fwd},
		{"another protocol (GRE)", v4("10.42.0.10", "10.42.0.11", 0, 0, 47), with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3}), fwd},
		{"connection attempts", attempts, with(bpf.FlowStats{Obs: bpf.ObsToPod, DropIfindex: 4, DropReason: 12, TcpFlags: 0x02}), drop},
		{"service translated, udp", v4("10.42.0.10", "10.43.0.10", 5000, 53, protoUDP),
			with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3, Xlat: 1, XlatDaddr: mapped("10.42.0.11"), XlatDport: 5353}), fwd},
		{"service translated, tcp dropped", v4("10.42.0.10", "10.43.0.11", 40000, 80, protoTCP),
			with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3, DropIfindex: 4, DropReason: 12, TcpFlags: 0x02,
				Xlat: 1, XlatDaddr: mapped("10.42.0.12"), XlatDport: 8080}), drop},
		{"service translated, ipv6", v6("fd00:42::10", "fd00:43::10", 40000, 443, protoTCP),
			with(bpf.FlowStats{Obs: bpf.ObsFromPod, Ifindex: 3, Xlat: 1, XlatDaddr: mapped("fd00:42::12"), XlatDport: 8443}), fwd},
		{"zero times", v4("10.42.0.10", "10.42.0.11", 1, 2, protoUDP), bpf.FlowStats{Obs: bpf.ObsFromPod}, fwd},
	}
}

// The records that go through the queue build the same flows, field for
// field, as aggregation built before (legacyRecord), whether each has a
// new builder or they share one in turn as the pipeline does.
func TestRecordBuildsTheLegacyFlow(t *testing.T) {
	reasons := bpf.DropReasons{12: "NETFILTER_DROP", 77: "NO_SOCKET"}
	names := map[uint32]string{3: "vethaaaa", 4: "vethbbbb", 9: "cni0"}
	agg := newAggregator("node-1", false, time.Minute, reasons.Name, func(i uint32) string { return names[i] }, int64(1_000_000*sec)+7)
	agg.newUUID = func() [16]byte { return testUUID }
	var shared FlowBuilder
	for _, tc := range recordCases() {
		t.Run(tc.name, func(t *testing.T) {
			const pkts, bytes = 3, 1500
			want := legacyRecord(agg, &tc.key, &tc.stats, tc.verdict, pkts, bytes, uuid.UUID(testUUID).String())
			r := agg.record(&tc.key, &tc.stats, tc.verdict, pkts, bytes)
			got := r.Proto()
			assert.True(t, proto.Equal(want, got), "want %v\n got %v", want, got)
			reused := shared.Build(&r)
			assert.True(t, proto.Equal(want, reused), "want %v\n got %v (reused builder)", want, reused)
		})
	}
}

// A builder writes only into messages it owns: one a consumer put in the
// flow (a named service, an endpoint) survives the next build.
func TestFlowBuilderLeavesConsumersMessages(t *testing.T) {
	var b FlowBuilder
	xlat := Record{Key: bpf.FlowKey{Saddr: mapped("10.42.0.10"), Daddr: mapped("10.43.0.10"), Sport: 1, Dport: 53, Proto: protoUDP, Family: 4},
		Xlat: true, XlatDaddr: mapped("10.42.0.11"), XlatDport: 5353, Verdict: fwd}
	fl := b.Build(&xlat)
	named := &flowlensv1.Service{Namespace: "kube-system", Name: "kube-dns", Port: 53}
	ep := &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, PodName: "a"}
	fl.DestinationService, fl.Source = named, ep
	fl.Policy = &flowlensv1.PolicyVerdict{Summary: "allowed"}

	other := xlat
	other.Key.Dport = 80
	fl2 := b.Build(&other)
	require.Same(t, fl, fl2, "one flow, reused")
	assert.Equal(t, uint32(80), fl2.DestinationService.Port)
	assert.Equal(t, uint32(53), named.Port, "the named service was not written into")
	assert.Equal(t, "kube-dns", named.Name)
	assert.Equal(t, "a", ep.PodName)
	assert.Nil(t, fl2.Source, "consumers' fields are cleared")
	assert.Nil(t, fl2.Policy)
}

// Building a record into a reused flow allocates only its strings.
func TestFlowBuilderAllocations(t *testing.T) {
	var b FlowBuilder
	r := Record{Key: bpf.FlowKey{Saddr: mapped("10.42.0.10"), Daddr: mapped("10.42.0.11"), Sport: 1, Dport: 80, Proto: protoTCP, Family: 4},
		Verdict: fwd, Ifindex: 3, IfName: "veth0", UUID: testUUID}
	// Two addresses and the UUID.
	assert.LessOrEqual(t, testing.AllocsPerRun(100, func() { b.Build(&r) }), 3.0)
}

// BenchmarkBuild prices a record's proto three ways: as aggregation built
// it before records crossed the queue as values (legacy), anew from a
// record (Record.Proto), and into a reused builder as the pipeline does.
func BenchmarkBuild(b *testing.B) {
	agg := newAggregator("node-1", false, time.Minute, bpf.DropReasons{12: "NETFILTER_DROP"}.Name,
		func(uint32) string { return "vethaaaa" }, 0)
	k := bpf.FlowKey{Saddr: mapped("10.42.0.10"), Daddr: mapped("10.42.0.11"), Sport: 40000, Dport: 8080, Proto: protoTCP, Family: 4}
	st := bpf.FlowStats{FirstNs: 90 * sec, LastNs: 99 * sec, Obs: bpf.ObsFromPod, Ifindex: 3, TcpFlags: 0x12}
	agg.newUUID = func() [16]byte { return testUUID }
	r := agg.record(&k, &st, fwd, 10, 1000)
	b.Run("legacy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			// The old builder made the flow ID's string too.
			legacyRecord(agg, &k, &st, fwd, 10, 1000, uuid.UUID(testUUID).String())
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Proto()
		}
	})
	b.Run("reused", func(b *testing.B) {
		b.ReportAllocs()
		var fb FlowBuilder
		for b.Loop() {
			fb.Build(&r)
		}
	})
}
