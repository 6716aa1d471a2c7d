package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestCrossNode is issue 2's test 8: two node namespaces joined over
// flannel-style VXLAN, one agent each. An allowed connection is FORWARDED by
// both agents and each counts its packets once (not again on flannel.1 or
// the uplink); an egress deny is DROPPED on the source node, an ingress deny
// on the destination node; the VXLAN outer packets are never pod flows.
func TestCrossNode(t *testing.T) {
	l := startLab(t, 2)
	a1 := startAgent(t, l, "node1")
	a2 := startAgent(t, l, "node2")
	// Every pod veth, and not the uplink (eth0, a veth too in the lab) or
	// flannel.1: only bridge ports are pods.
	for _, a := range []*agentProc{a1, a2} {
		st, err := a.status()
		require.NoError(t, err)
		assert.EqualValues(t, len(podsOn(l, a.node.Name)), st.GetAttachedInterfaces(), "interfaces attached on %s", a.node.Name)
	}

	t.Run("allowed, seen by both nodes once", func(t *testing.T) { checkCrossNodeAllowed(t, l, a1, a2) })

	t.Run("egress deny dropped on the source node", func(t *testing.T) { checkCrossNodeEgressDenied(t, l, a1, a2) })

	t.Run("ingress deny dropped on the destination node", func(t *testing.T) { checkCrossNodeIngressDenied(t, l, a1, a2) })

	// No record on either node is a VXLAN outer packet or carries node IPs.
	for _, a := range []*agentProc{a1, a2} {
		vx := a.match(func(f *flowlensv1.Flow) bool {
			return f.GetL4().GetUdp().GetDestinationPort() == 8472 || f.GetL4().GetUdp().GetSourcePort() == 8472 ||
				strings.HasPrefix(f.GetIp().GetSource(), "192.0.2.") || strings.HasPrefix(f.GetIp().GetDestination(), "192.0.2.")
		})
		assert.Empty(t, vx, "node %s reported VXLAN outer packets as flows", a.node.Name)
	}
}

// checkCrossNodeAllowed checks that both nodes see an allowed cross-node connection, each counting
// its bytes once.
func checkCrossNodeAllowed(t *testing.T, l *testLab, a1, a2 *agentProc) {
	t.Helper()
	fe := l.Pod("demo/frontend")
	payload := payloadOf(200 << 10)
	remote, rdst := podAddr(t, l, "demo/remote", 8080)
	tp, reply, err := tcpExchange(t, fe, rdst, 42001, payload)
	require.NoError(t, err)
	okReply(t, reply, payload, "demo/remote")
	fwd := and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))
	rev := and(tp.reverse().is, verdict(flowlensv1.Verdict_FORWARDED))
	settled := func(a *agentProc) func() bool {
		return func() bool {
			_, b := sum(a.match(fwd))
			_, r := sum(a.match(rev))
			return b >= uint64(len(payload)) && r > 0
		}
	}
	a1.waitFor("frontend->remote on node1", 5*time.Second, settled(a1))
	a2.waitFor("frontend->remote on node2", 5*time.Second, settled(a2))
	time.Sleep(1200 * time.Millisecond) // let both agents flush the tail
	p1, b1 := sum(a1.match(fwd))
	p2, b2 := sum(a2.match(fwd))
	r1, _ := sum(a1.match(rev))
	r2, _ := sum(a2.match(rev))
	t.Logf("client direction: node1 %d pkts/%d B, node2 %d pkts/%d B; reply: node1 %d, node2 %d", p1, b1, p2, b2, r1, r2)
	// GRO may merge segments differently on each side of the tunnel, so
	// packet counts can differ; bytes of the same IP packets cannot,
	// except for header bytes of merged segments. A double count would
	// be 2x.
	assert.InEpsilon(t, float64(b1), float64(b2), 0.1, "both nodes count the same bytes once")
	assert.Less(t, b1, uint64(2*len(payload)), "node1 counts once, not again on flannel.1 or eth0")
	assert.Less(t, b2, uint64(2*len(payload)), "node2 counts once")
	assert.Equal(t, flowlensv1.TrafficDirection_EGRESS, a1.match(fwd)[0].GetTrafficDirection())
	assert.Equal(t, flowlensv1.TrafficDirection_INGRESS, a2.match(fwd)[0].GetTrafficDirection())
	assert.Equal(t, remote.Name, a1.match(fwd)[0].GetDestination().GetPodName())
	assert.Equal(t, fe.Name, a2.match(fwd)[0].GetSource().GetPodName())
	assert.Empty(t, a1.match(and(tp.is, verdict(flowlensv1.Verdict_DROPPED))))
	assert.Empty(t, a2.match(and(tp.is, verdict(flowlensv1.Verdict_DROPPED))))
}

// checkCrossNodeEgressDenied checks that an egress deny drops on the source node; the packet never
// reaches the other.
func checkCrossNodeEgressDenied(t *testing.T, l *testLab, a1, a2 *agentProc) {
	t.Helper()
	rc := l.Pod("other/remote-client")
	require.NotNil(t, rc)
	_, dst := podAddr(t, l, "demo/backend", 8080)
	tp, _, err := tcpExchange(t, rc, dst, 42002, []byte("hi"))
	requireRefused(t, err)
	drop := and(tp.is, verdict(flowlensv1.Verdict_DROPPED))
	a2.waitFor("egress drop on node2", 3*time.Second, func() bool { return len(a2.match(drop)) > 0 })
	assert.Equal(t, "NETFILTER_DROP", a2.match(drop)[0].GetDropReason())
	time.Sleep(1200 * time.Millisecond)
	assert.Empty(t, a2.match(and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))), "never FORWARDED on node2")
	assert.Empty(t, a1.match(tp.is), "the packet never reached node1")
}

// checkCrossNodeIngressDenied checks that an ingress deny drops on the destination node, after the
// source node allowed it.
func checkCrossNodeIngressDenied(t *testing.T, l *testLab, a1, a2 *agentProc) {
	t.Helper()
	rm := l.Pod("demo/remote")
	_, dst := podAddr(t, l, "demo/db", 8080)
	tp, _, err := tcpExchange(t, rm, dst, 42003, []byte("hi"))
	requireRefused(t, err)
	drop := and(tp.is, verdict(flowlensv1.Verdict_DROPPED))
	a1.waitFor("ingress drop on node1", 3*time.Second, func() bool { return len(a1.match(drop)) > 0 })
	f := a1.match(drop)[0]
	assert.Equal(t, "NETFILTER_DROP", f.GetDropReason())
	assert.Equal(t, "remote", f.GetSource().GetPodName())
	assert.Equal(t, "db", f.GetDestination().GetPodName())
	time.Sleep(1200 * time.Millisecond)
	assert.Empty(t, a1.match(and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))), "never FORWARDED on node1")
	assert.Empty(t, a2.match(and(tp.is, verdict(flowlensv1.Verdict_DROPPED))), "node2's egress allowed it")
}
