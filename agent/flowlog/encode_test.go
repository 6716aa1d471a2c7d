package flowlog

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// everyField sets every field of a Flow (one member of each oneof).
func everyField() *flowlensv1.Flow {
	return &flowlensv1.Flow{
		Time: &timestamppb.Timestamp{Seconds: 1790000000, Nanos: 123456789}, NodeName: "node-a",
		Verdict: flowlensv1.Verdict_DROPPED, DropReason: "NETFILTER_DROP",
		Ip: &flowlensv1.IP{Source: "10.42.0.10", Destination: "10.42.0.20", IpVersion: flowlensv1.IPVersion_IPV4, DestinationOriginal: "10.43.0.1"},
		L4: &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: 40000, DestinationPort: 5432}}},
		Source: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "client", PodName: "client-0", Labels: []string{"app=c", "tier=web"},
			Workloads: []*flowlensv1.Workload{{Kind: "Deployment", Name: "c"}, {}}, NodeName: "node-a", Name: "n"},
		Destination:        &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_CIDR, Name: "proxmox"},
		DestinationService: &flowlensv1.Service{Namespace: "db", Name: "pg", Port: 5432},
		TrafficDirection:   flowlensv1.TrafficDirection_INGRESS, IsReply: true,
		Counters: &flowlensv1.Counters{Packets: 1 << 60, Bytes: 180, FirstSeen: &timestamppb.Timestamp{Seconds: 1790000000, Nanos: 1000000},
			LastSeen: &timestamppb.Timestamp{Seconds: 1790000000, Nanos: 1000}},
		ObservationPoint: flowlensv1.ObservationPoint_KFREE_SKB,
		Interface:        &flowlensv1.Interface{Index: 7, Name: "veth1234"},
		TcpFlags:         &flowlensv1.TCPFlags{FIN: true, SYN: true, RST: true, PSH: true, ACK: true, URG: true, ECE: true, CWR: true},
		Policy: &flowlensv1.PolicyVerdict{
			Verdict: flowlensv1.IntendedVerdict_ALLOW, Mismatch: flowlensv1.Mismatch_UNEXPECTED_DROP,
			Egress: &flowlensv1.PolicySide{Applicable: true},
			Ingress: &flowlensv1.PolicySide{Isolated: true, Allowed: true, Applicable: true,
				IsolatedBy: []*flowlensv1.PolicyRef{{Namespace: "db", Name: "deny"}},
				AllowedBy:  []*flowlensv1.PolicyRef{{Namespace: "db", Name: "allow-pg", Rule: 2}, {Name: "neg", Rule: -1}}},
			Summary: "allow: \"quoted\" \\ <tag> & \n\t\x01\x1f ünï ∞ \u2028", Source: "files:/p", Enforcer: "k3s-kube-router", EnforcerReason: "icmp echo",
		},
		Uuid:               "0123abcd-89ab-cdef-0123-456789abcdef",
		AggregatedAttempts: 1234,
	}
}

func edit(f func(*flowlensv1.Flow)) *flowlensv1.Flow {
	fl := everyField()
	f(fl)
	return fl
}

// TestEncoderMatchesProtojson holds appendFlow to protojson's output, byte
// for byte once protojson's (deliberately unstable) spacing is removed.
func TestEncoderMatchesProtojson(t *testing.T) {
	tests := map[string]*flowlensv1.Flow{
		"every field":    everyField(),
		"empty":          {},
		"empty messages": {Ip: &flowlensv1.IP{}, L4: &flowlensv1.Layer4{}, Source: &flowlensv1.Endpoint{}, Counters: &flowlensv1.Counters{}, Interface: &flowlensv1.Interface{}, TcpFlags: &flowlensv1.TCPFlags{}, Policy: &flowlensv1.PolicyVerdict{Egress: &flowlensv1.PolicySide{}}, DestinationService: &flowlensv1.Service{}, Time: &timestamppb.Timestamp{}},
		"udp":            edit(func(f *flowlensv1.Flow) { f.L4.Protocol = &flowlensv1.Layer4_Udp{Udp: &flowlensv1.UDP{SourcePort: 53}} }),
		"sctp": edit(func(f *flowlensv1.Flow) {
			f.L4.Protocol = &flowlensv1.Layer4_Sctp{Sctp: &flowlensv1.SCTP{DestinationPort: 9}}
		}),
		"icmpv4": edit(func(f *flowlensv1.Flow) {
			f.L4.Protocol = &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{Type: 3, Code: 3}}
		}),
		"icmpv6": edit(func(f *flowlensv1.Flow) {
			f.L4.Protocol = &flowlensv1.Layer4_Icmpv6{Icmpv6: &flowlensv1.ICMPv6{Type: 128}}
		}),
		"nil tcp member": edit(func(f *flowlensv1.Flow) { f.L4.Protocol = &flowlensv1.Layer4_Tcp{} }),
		"unknown enums":  edit(func(f *flowlensv1.Flow) { f.Verdict, f.Source.Kind = 42, -3 }),
		"whole seconds":  edit(func(f *flowlensv1.Flow) { f.Time.Nanos = 0 }),
		"before 1970":    edit(func(f *flowlensv1.Flow) { f.Time = &timestamppb.Timestamp{Seconds: -86400, Nanos: 500000000} }),
		"nil ref":        edit(func(f *flowlensv1.Flow) { f.Policy.Ingress.AllowedBy = append(f.Policy.Ingress.AllowedBy, nil) }),
	}
	for name, fl := range tests {
		t.Run(name, func(t *testing.T) {
			want, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(fl)
			require.NoError(t, err)
			var compact bytes.Buffer
			require.NoError(t, json.Compact(&compact, want))
			got, ok := appendFlow(nil, fl)
			require.True(t, ok)
			assert.Equal(t, compact.String(), string(got))
		})
	}
}

// What the encoder does not write as protojson would falls back to it.
func TestEncoderFallsBack(t *testing.T) {
	for name, fl := range map[string]*flowlensv1.Flow{
		"invalid utf-8":     edit(func(f *flowlensv1.Flow) { f.Source.Labels = []string{"a=\xff"} }),
		"timestamp too big": edit(func(f *flowlensv1.Flow) { f.Time.Seconds = 1 << 40 }),
		"negative nanos":    edit(func(f *flowlensv1.Flow) { f.Counters.LastSeen.Nanos = -1 }),
	} {
		_, ok := appendFlow(nil, fl)
		assert.False(t, ok, name)
	}
}

// TestEncoderCoversEveryField fails when the API gains a field: add it to
// appendFlow and to everyField. A field counts as covered when it is set
// somewhere in everyField.
func TestEncoderCoversEveryField(t *testing.T) {
	set := map[protoreflect.FullName]bool{}
	types := map[protoreflect.FullName]protoreflect.MessageDescriptor{}
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		types[m.Descriptor().FullName()] = m.Descriptor()
		m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			set[f.FullName()] = true
			switch {
			case f.Message() == nil || f.Message().FullName() == "google.protobuf.Timestamp":
			case f.IsList():
				for i := range v.List().Len() {
					walk(v.List().Get(i).Message())
				}
			default:
				walk(v.Message())
			}
			return true
		})
	}
	walk(everyField().ProtoReflect())
	var unset []string
	for _, d := range types {
		for i := range d.Fields().Len() {
			f := d.Fields().Get(i)
			if !set[f.FullName()] && f.ContainingOneof() == nil {
				unset = append(unset, string(f.FullName()))
			}
		}
	}
	assert.Empty(t, unset)
}

func BenchmarkEncode(b *testing.B) {
	fl := everyField()
	b.Run("appendFlow", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = appendFlow(buf[:0], fl)
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		opts := protojson.MarshalOptions{UseProtoNames: true}
		for b.Loop() {
			buf, _ = opts.MarshalAppend(buf[:0], fl)
		}
	})
}

// Encoding into a reused buffer allocates nothing: the writer encodes every
// flow the pipeline sees, and each allocation there is GC work (issue 9).
func TestAppendFlowDoesNotAllocate(t *testing.T) {
	fl := everyField()
	require.NotZero(t, fl.GetTime().GetNanos(), "a fraction of a second to encode")
	buf, ok := appendFlow(nil, fl)
	require.True(t, ok)
	assert.Zero(t, testing.AllocsPerRun(100, func() { buf, _ = appendFlow(buf[:0], fl) }))
}
