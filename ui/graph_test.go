package ui

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func TestEndpointOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		ep   *flowlensv1.Endpoint
		ip   string
		want endpointView
	}{
		{"pod by workload", pod("demo", "web-7c9d-abcde", "web"), "10.42.0.5",
			endpointView{ID: "demo/web", Group: "demo", Label: "web", Kind: "pod", Pod: "demo/web-7c9d-abcde", IP: "10.42.0.5"}},
		{"pod without workload", &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "demo", PodName: "solo"}, "10.42.0.6",
			endpointView{ID: "demo/solo", Group: "demo", Label: "solo", Kind: "pod", Pod: "demo/solo", IP: "10.42.0.6"}},
		{"named CIDR", &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_CIDR, Name: "lan"}, "192.168.1.20",
			endpointView{ID: "cidr:lan", Group: "outside", Label: "lan", Kind: "cidr", IP: "192.168.1.20"}},
		{"world", &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_WORLD}, "203.0.113.9",
			endpointView{ID: "world", Group: "outside", Label: "world", Kind: "world", IP: "203.0.113.9"}},
		{"node", &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_HOST, NodeName: "node1"}, "10.42.0.1",
			endpointView{ID: "host:node1", Group: "nodes", Label: "node1", Kind: "host", IP: "10.42.0.1"}},
		{"unknown", nil, "10.43.0.9",
			endpointView{ID: "ip:10.43.0.9", Group: "unknown", Label: "10.43.0.9", IP: "10.43.0.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, endpointOf(tc.ep, tc.ip))
		})
	}
}

func TestGraphAggregates(t *testing.T) {
	fe, be, db := pod("demo", "fe-1", "frontend"), pod("demo", "be-1", "backend"), pod("demo", "db-0", "db")
	fe2 := pod("demo", "fe-2", "frontend")
	mismatch := tcpFlow(6, fe, db, 5432, flowlensv1.Verdict_DROPPED)
	mismatch.Policy.Mismatch = flowlensv1.Mismatch_UNEXPECTED_DROP
	reply := tcpFlow(3, be, fe, 0, flowlensv1.Verdict_FORWARDED)
	reply.IsReply = true
	reply.L4 = &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: 8080, DestinationPort: 40001}}}
	flows := []*flowlensv1.Flow{
		tcpFlow(1, fe, be, 8080, flowlensv1.Verdict_FORWARDED),
		tcpFlow(2, fe2, be, 8080, flowlensv1.Verdict_FORWARDED), // another pod, same workload
		reply, // counts on its request's edge
		tcpFlow(4, be, fe, 9000, flowlensv1.Verdict_FORWARDED), // the other direction
		tcpFlow(5, fe, db, 5432, flowlensv1.Verdict_DROPPED),
		mismatch,
		tcpFlow(7, fe, be, 8080, flowlensv1.Verdict_DROPPED), // same port, other verdict
	}
	g := newGraph()
	for i, fl := range flows {
		v := newFlowView(fl, uint64(i))
		g.add(&v)
	}
	got := map[string]edgeView{}
	for _, e := range g.flush() {
		got[e.Key] = e
	}
	require.Len(t, got, 4)
	fwd := got["demo/frontend>demo/backend 8080/TCP FORWARDED"]
	assert.Equal(t, uint64(3), fwd.Flows, "two pods and a reply")
	assert.Equal(t, uint64(6), fwd.Packets)
	assert.Equal(t, "demo/frontend", fwd.From.ID)
	assert.Empty(t, fwd.From.Pod, "an edge joins workloads, not pods")
	assert.Equal(t, uint64(1), got["demo/backend>demo/frontend 9000/TCP FORWARDED"].Flows)
	assert.Equal(t, uint64(1), got["demo/frontend>demo/backend 8080/TCP DROPPED"].Flows)
	drop := got["demo/frontend>demo/db 5432/TCP DROPPED"]
	assert.Equal(t, uint64(2), drop.Flows)
	assert.Equal(t, uint64(1), drop.Mismatches)
	assert.Equal(t, "UNEXPECTED_DROP", drop.MismatchKind)
	assert.Equal(t, "NETFILTER_DROP", drop.DropReason)
	require.NotNil(t, drop.Why)
	assert.Equal(t, "DENY", drop.Why.Intended)

	assert.Empty(t, g.flush(), "nothing changed since the last flush")
	v := newFlowView(flows[4], 9)
	g.add(&v)
	again := g.flush()
	require.Len(t, again, 1)
	assert.Equal(t, uint64(3), again[0].Flows)
}

// A row of aggregated connection attempts carries their number and counts
// on the same edge as a single attempt to that port.
func TestFlowViewAttempts(t *testing.T) {
	fe, db := pod("demo", "frontend", "frontend"), pod("demo", "db", "db")
	one := newFlowView(tcpFlow(1, fe, db, 5432, flowlensv1.Verdict_DROPPED), 1)
	fl := tcpFlow(2, fe, db, 5432, flowlensv1.Verdict_DROPPED)
	fl.L4.GetTcp().SourcePort, fl.AggregatedAttempts = 0, 40
	agg := newFlowView(fl, 2)
	assert.Zero(t, one.Attempts)
	assert.EqualValues(t, 40, agg.Attempts)
	assert.Zero(t, agg.SrcPort)
	assert.Equal(t, one.Edge, agg.Edge)
}

func BenchmarkGraphAdd(b *testing.B) {
	// 300 workloads in 30 namespaces, each talking to 5 others.
	var views []flowView
	for i := range 300 {
		from := pod("ns"+string(rune('a'+i%30)), "p", "w"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		for j := range 5 {
			k := (i*7 + j*13) % 300
			to := pod("ns"+string(rune('a'+k%30)), "p", "w"+string(rune('a'+k%26))+string(rune('a'+k/26)))
			views = append(views, newFlowView(tcpFlow(i*5+j, from, to, uint32(8000+j), flowlensv1.Verdict_FORWARDED), 0))
		}
	}
	g := newGraph()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		g.add(&views[i%len(views)])
		if i%1000 == 999 {
			g.flush()
		}
	}
	b.ReportMetric(float64(len(g.edges)), "edges")
}
