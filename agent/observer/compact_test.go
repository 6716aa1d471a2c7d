package observer

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// fullFlow sets every field of a flow to something other than its default.
func fullFlow() *flowlensv1.GetFlowsResponse {
	t := timestamppb.New(base)
	fl := &flowlensv1.Flow{
		Time: t, NodeName: "node-a", Verdict: flowlensv1.Verdict_DROPPED, DropReason: "NETFILTER_DROP",
		Ip:                 &flowlensv1.IP{Source: "10.42.0.10", Destination: "10.42.0.20", IpVersion: flowlensv1.IPVersion_IPV4, DestinationOriginal: "10.43.0.1"},
		L4:                 &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: 40000, DestinationPort: 5432}}},
		Source:             &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "client", PodName: "client-0", Labels: []string{"app=c"}},
		Destination:        &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "db", PodName: "pg-0", Workloads: []*flowlensv1.Workload{{Kind: "StatefulSet", Name: "pg"}}},
		DestinationService: &flowlensv1.Service{Namespace: "db", Name: "pg", Port: 5432},
		TrafficDirection:   flowlensv1.TrafficDirection_INGRESS, IsReply: true,
		Counters:         &flowlensv1.Counters{Packets: 3, Bytes: 180, FirstSeen: timestamppb.New(base.Add(-1e9)), LastSeen: t},
		ObservationPoint: flowlensv1.ObservationPoint_KFREE_SKB,
		Interface:        &flowlensv1.Interface{Index: 7, Name: "veth1234"},
		TcpFlags:         &flowlensv1.TCPFlags{FIN: true, SYN: true, RST: true, PSH: true, ACK: true, URG: true, ECE: true, CWR: true},
		Policy: &flowlensv1.PolicyVerdict{
			Verdict: flowlensv1.IntendedVerdict_ALLOW, Mismatch: flowlensv1.Mismatch_UNEXPECTED_DROP,
			Egress: &flowlensv1.PolicySide{Applicable: true},
			Ingress: &flowlensv1.PolicySide{Isolated: true, Allowed: true, Applicable: true,
				IsolatedBy: []*flowlensv1.PolicyRef{{Namespace: "db", Name: "deny"}, {Namespace: "db", Name: "ünïcode/∞"}},
				AllowedBy:  []*flowlensv1.PolicyRef{{Namespace: "db", Name: "allow-pg", Rule: 2}, {Namespace: "db", Name: "neg", Rule: -1}}},
			Summary: "allow: ...", Source: "files:/p", Enforcer: "k3s-kube-router", EnforcerReason: "icmp echo",
		},
		Uuid:               "0123abcd-89ab-cdef-0123-456789abcdef",
		AggregatedAttempts: 3,
	}
	return &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: fl}, NodeName: "node-a", Time: t}
}

func withFlow(edit func(*flowlensv1.Flow)) *flowlensv1.GetFlowsResponse {
	r := fullFlow()
	edit(r.GetFlow())
	return r
}

// atTime sets the times of r that the agent sets alike, the response's,
// the flow's and its last packet's, to t; then edits r's flow.
func atTime(t *timestamppb.Timestamp, r *flowlensv1.GetFlowsResponse, edits ...func(*flowlensv1.Flow)) *flowlensv1.GetFlowsResponse {
	fl := r.GetFlow()
	r.Time, fl.Time, fl.Counters.LastSeen = t, t, t
	for _, edit := range edits {
		edit(fl)
	}
	return r
}

// withTimes is a full flow with the response's time and the flow's last
// packet's at other times than the flow's.
func withTimes(resp, last time.Time) *flowlensv1.GetFlowsResponse {
	r := fullFlow()
	r.Time, r.GetFlow().Counters.LastSeen = timestamppb.New(resp), timestamppb.New(last)
	return r
}

func TestCompactRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   *flowlensv1.GetFlowsResponse
		// whole: the record cannot be compacted exactly and is kept as is.
		whole bool
	}{
		{name: "every field", in: fullFlow()},
		{name: "bare flow", in: &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: &flowlensv1.Flow{}}}},
		{name: "empty messages stay present", in: atTime(&timestamppb.Timestamp{}, withFlow(func(f *flowlensv1.Flow) {
			f.Ip, f.L4, f.Interface, f.TcpFlags = &flowlensv1.IP{}, &flowlensv1.Layer4{}, &flowlensv1.Interface{}, &flowlensv1.TCPFlags{}
			f.DestinationService, f.Policy = &flowlensv1.Service{}, &flowlensv1.PolicyVerdict{}
		}), func(f *flowlensv1.Flow) { f.Counters = &flowlensv1.Counters{} })},
		{name: "no sides", in: withFlow(func(f *flowlensv1.Flow) { f.Policy.Egress, f.Policy.Ingress = nil, nil })},
		// The service and the original destination are interned together:
		// either one alone comes back alone.
		{name: "service, no original destination", in: withFlow(func(f *flowlensv1.Flow) { f.Ip.DestinationOriginal = "" })},
		{name: "original destination, no service", in: withFlow(func(f *flowlensv1.Flow) { f.DestinationService = nil })},
		{name: "no ip, service", in: withFlow(func(f *flowlensv1.Flow) { f.Ip = nil })},
		{name: "udp ipv6", in: withFlow(func(f *flowlensv1.Flow) {
			f.Ip = &flowlensv1.IP{Source: "fd00::1", Destination: "fd00::2", IpVersion: flowlensv1.IPVersion_IPV6}
			f.L4 = &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Udp{Udp: &flowlensv1.UDP{SourcePort: 65535, DestinationPort: 53}}}
		})},
		{name: "sctp", in: withFlow(func(f *flowlensv1.Flow) {
			f.L4 = &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Sctp{Sctp: &flowlensv1.SCTP{SourcePort: 1, DestinationPort: 2}}}
		})},
		{name: "icmpv4", in: withFlow(func(f *flowlensv1.Flow) {
			f.L4 = &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{Type: 8}}}
		})},
		{name: "icmpv6", in: withFlow(func(f *flowlensv1.Flow) {
			f.L4 = &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv6{Icmpv6: &flowlensv1.ICMPv6{Type: 1, Code: 4}}}
		})},
		{name: "time before 1970", in: atTime(&timestamppb.Timestamp{Seconds: -5, Nanos: 7}, fullFlow())},
		// The response's time and the last packet's are kept as offsets
		// from the flow's time (the agent sets all three alike).
		{name: "times 2 s apart", in: withTimes(base.Add(2e9), base.Add(-2e9))},
		{name: "response time 3 s later", whole: true, in: withTimes(base.Add(3e9), base)},
		{name: "last seen 3 s earlier", whole: true, in: withTimes(base, base.Add(-3e9))},
		{name: "times too far apart for int64", whole: true, in: func() *flowlensv1.GetFlowsResponse {
			r := withTimes(base.AddDate(200, 0, 0), base)
			r.GetFlow().Time = &timestamppb.Timestamp{Seconds: -1 << 33}
			return r
		}()},
		{name: "port out of range", whole: true, in: withFlow(func(f *flowlensv1.Flow) {
			f.L4 = &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: 70000}}}
		})},
		{name: "nil oneof member", whole: true, in: withFlow(func(f *flowlensv1.Flow) {
			f.L4 = &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{}}
		})},
		{name: "upper-case uuid", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.Uuid = "0123ABCD-89ab-cdef-0123-456789abcdef" })},
		{name: "other uuid", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.Uuid = "flow-1" })},
		{name: "braced uuid", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.Uuid = "{0123abcd-89ab-cdef-0123-456789abcdef}" })},
		{name: "urn uuid", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.Uuid = "urn:uuid:0123abcd-89ab-cdef-0123-456789abcdef" })},
		{name: "undashed uuid", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.Uuid = "0123abcd89abcdef0123456789abcdef" })},
		{name: "attempts beyond 32 bits", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.AggregatedAttempts = 1 << 32 })},
		{name: "unknown enum", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.Verdict = 300 })},
		{name: "invalid timestamp", whole: true, in: withFlow(func(f *flowlensv1.Flow) { f.Counters.LastSeen = &timestamppb.Timestamp{Nanos: -1} })},
		{name: "lost events", whole: true, in: &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_LostEvents{
			LostEvents: &flowlensv1.LostEvents{Source: flowlensv1.LostEventSource_AGENT_QUEUE, NumEventsLost: 3}}}},
	}
	// One expander for all cases: its scratch view must not carry a field
	// from one flow into the next.
	x := &expander{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := proto.Clone(tc.in).(*flowlensv1.GetFlowsResponse)
			c, ok := compactOf(tc.in)
			require.Equal(t, !tc.whole, ok)
			if ok {
				got := x.response(&c)
				assert.True(t, proto.Equal(want, got), "got %v\nwant %v", got, want)
				view := x.view(&c)
				assert.True(t, proto.Equal(want.GetFlow(), view), "view %v\nwant %v", view, want.GetFlow())
				assert.Same(t, tc.in.GetFlow().GetSource(), got.GetFlow().GetSource(), "endpoints are shared, not copied")
				assert.Same(t, tc.in.GetFlow().GetPolicy(), got.GetFlow().GetPolicy(), "so is the policy verdict")
			}
			// Through the ring, both kinds come back as they went in.
			r := NewRing(4)
			r.Write(tc.in)
			var got []*flowlensv1.GetFlowsResponse
			require.NoError(t, r.run(context.Background(), &query{}, recordFunc(func(ev *flowlensv1.GetFlowsResponse) {
				got = append(got, ev)
			})))
			require.Len(t, got, 1)
			assert.True(t, proto.Equal(want, got[0]), "got %v\nwant %v", got[0], want)
		})
	}
}

// TestCompactCoversEveryField fails when the API gains a field the compact
// form does not carry: add it to compactFlow (and fullFlow) first.
func TestCompactCoversEveryField(t *testing.T) {
	counts := map[protoreflect.Message]int{
		(&flowlensv1.GetFlowsResponse{}).ProtoReflect(): 4,
		(&flowlensv1.Flow{}).ProtoReflect():             18,
		(&flowlensv1.IP{}).ProtoReflect():               4,
		(&flowlensv1.Layer4{}).ProtoReflect():           5,
		(&flowlensv1.Counters{}).ProtoReflect():         4,
		(&flowlensv1.Interface{}).ProtoReflect():        2,
		(&flowlensv1.TCPFlags{}).ProtoReflect():         len(tcpFlagBits),
		(&flowlensv1.Service{}).ProtoReflect():          3,
		(&flowlensv1.PolicyVerdict{}).ProtoReflect():    8,
		(&flowlensv1.PolicySide{}).ProtoReflect():       5,
		(&flowlensv1.PolicyRef{}).ProtoReflect():        3,
	}
	for m, n := range counts {
		assert.Equal(t, n, m.Descriptor().Fields().Len(), "%s", m.Descriptor().FullName())
	}
	// And every field of fullFlow is set, so the round trip covers it.
	var unset []string
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			f := fields.Get(i)
			if f.ContainingOneof() != nil && m.WhichOneof(f.ContainingOneof()) != nil {
				continue // one member of a oneof is enough here; the table covers the others
			}
			if f.FullName() == "flowlens.v1.GetFlowsResponse.lost_events" {
				continue
			}
			if !m.Has(f) {
				unset = append(unset, string(f.FullName()))
				continue
			}
			if f.Message() != nil && !f.IsList() && f.Message().FullName() != "google.protobuf.Timestamp" {
				walk(m.Get(f).Message())
			}
		}
	}
	walk(fullFlow().ProtoReflect())
	assert.Empty(t, unset)
}

// TestCompactSize keeps a stored flow within the 96-byte allocation
// size class (the proto form is ~1.5 KB; issue 9 measures the full ring).
func TestCompactSize(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(entry{}), uintptr(96))
}

type recordFunc func(*flowlensv1.GetFlowsResponse)

func (f recordFunc) record(_ *entry, ev *flowlensv1.GetFlowsResponse) error { f(ev); return nil }
func (recordFunc) lost(uint64, int64, int64) error                          { return nil }
func (recordFunc) lastTime() int64                                          { return 0 }
