package observer

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/filter"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// BenchmarkRingMemory prints what a full recent-flow ring costs: the
// default 65,536 flows as the agent stores them (endpoints shared with the
// enrichment cache, a policy verdict each shared with the judge, 200
// distinct ones), in
// bytes per flow and in total; between pods, and from a client address of
// its own each (a node serving clients outside the cluster). The agent's
// whole state, ring included, is agent's BenchmarkAgentMemory.
func BenchmarkRingMemory(b *testing.B) {
	sh := newBenchShared()
	for _, bc := range []struct {
		name string
		edit func(i int, fl *flowlensv1.Flow)
	}{
		{"pods", func(int, *flowlensv1.Flow) {}},
		{"a client address each", func(i int, fl *flowlensv1.Flow) { fl.Ip.Source = fmt.Sprintf("203.0.%d.%d", i/256, i%256) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				r := NewRing(DefaultRingCapacity)
				for i := 0; i < DefaultRingCapacity; i++ {
					ev := benchFlow(i, sh)
					bc.edit(i, ev.GetFlow())
					r.Write(ev)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/DefaultRingCapacity, "bytes/flow")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB/full-ring")
				runtime.KeepAlive(r)
			}
		})
	}
}

// benchShared is what the agent's flows share: the enrichment cache's
// endpoints, one per pod, and the judge's verdicts, one per pod pair.
type benchShared struct {
	eps      []*flowlensv1.Endpoint
	verdicts []*flowlensv1.PolicyVerdict
}

func newBenchShared() benchShared {
	eps := make([]*flowlensv1.Endpoint, 200)
	for i := range eps {
		eps[i] = &flowlensv1.Endpoint{
			Kind: flowlensv1.EndpointKind_POD, Namespace: fmt.Sprintf("ns-%d", i%20), PodName: fmt.Sprintf("pod-%d", i),
			Labels: []string{"app=x", "tier=web"}, Workloads: []*flowlensv1.Workload{{Kind: "Deployment", Name: "x"}}, NodeName: "node1",
		}
	}
	verdicts := make([]*flowlensv1.PolicyVerdict, len(eps))
	for i := range verdicts {
		src, dst := eps[i], eps[(i+1)%len(eps)]
		verdicts[i] = &flowlensv1.PolicyVerdict{
			Verdict: flowlensv1.IntendedVerdict_ALLOW, Source: "files:/policies", Mismatch: flowlensv1.Mismatch_NONE,
			Summary: fmt.Sprintf("allow: %s/%s egress not isolated; %s/%s ingress allowed by ns-2/allow-web rule 0",
				src.Namespace, src.PodName, dst.Namespace, dst.PodName),
			Ingress: &flowlensv1.PolicySide{Applicable: true, Isolated: true, Allowed: true,
				IsolatedBy: []*flowlensv1.PolicyRef{{Namespace: "ns-2", Name: "default-deny-ingress", Rule: -1}},
				AllowedBy:  []*flowlensv1.PolicyRef{{Namespace: "ns-2", Name: "allow-web", Rule: 0}}},
			Egress: &flowlensv1.PolicySide{Applicable: true},
		}
	}
	return benchShared{eps: eps, verdicts: verdicts}
}

// benchFlow is the i-th flow as the agent records it.
func benchFlow(i int, sh benchShared) *flowlensv1.GetFlowsResponse {
	eps := sh.eps
	return &flowlensv1.GetFlowsResponse{
		NodeName: "node1",
		Time:     timestamppb.Now(),
		ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: &flowlensv1.Flow{
			Time: timestamppb.Now(), NodeName: "node1", Verdict: flowlensv1.Verdict_FORWARDED,
			Ip:          &flowlensv1.IP{Source: "10.42.0.10", Destination: "10.42.0.11", IpVersion: flowlensv1.IPVersion_IPV4},
			L4:          &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: uint32(30000 + i%30000), DestinationPort: 8080}}},
			Source:      eps[i%len(eps)],
			Destination: eps[(i+1)%len(eps)],
			Counters:    &flowlensv1.Counters{Packets: 10, Bytes: 1000, FirstSeen: timestamppb.Now(), LastSeen: timestamppb.Now()},
			Interface:   &flowlensv1.Interface{Index: 3, Name: "veth1234abcd"},
			TcpFlags:    &flowlensv1.TCPFlags{SYN: true, ACK: true},
			Uuid:        "01234567-89ab-cdef-0123-456789abcdef",
			Policy:      sh.verdicts[i%len(sh.verdicts)],
		}},
	}
}

// BenchmarkRingScan prices the read side of the compact ring: a filtered
// query that scans a full ring and matches nothing rebuilds every flow.
func BenchmarkRingScan(b *testing.B) {
	sh := newBenchShared()
	r := NewRing(DefaultRingCapacity)
	for i := 0; i < DefaultRingCapacity; i++ {
		r.Write(benchFlow(i, sh))
	}
	f, err := filter.Compile([]*flowlensv1.FlowFilter{{SourcePod: []string{"nobody/"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		out := &countStream{}
		if err := r.run(context.Background(), &query{filter: f, number: 20}, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/DefaultRingCapacity, "ns/flow")
}
