package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/traffic"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestClusterIPFlowNamesServiceAndBackend is issue 3's lab test: a
// connection to a ClusterIP, DNATed by kube-proxy-shaped rules, is reported
// once, to the backend pod, with the service it went through.
func TestClusterIPFlowNamesServiceAndBackend(t *testing.T) {
	l := startLab(t, 1)
	a := startAgent(t, l, "node1")
	fe := l.Pod("demo/frontend")
	backend := l.Pod("demo/backend")
	clusterIP := netip.AddrPortFrom(netip.MustParseAddr("10.43.0.20"), 80)
	payload := payloadOf(32 << 10)
	_, reply, err := tcpExchange(t, fe, clusterIP, 43001, payload)
	require.NoError(t, err)
	okReply(t, reply, payload, "demo/backend")

	// Reported as the translated connection, so policy is judged on the
	// backend as kube-router judges it.
	tp := tuple{src: fe.IP, dst: backend.IP, sport: 43001, dport: 8080, proto: "tcp"}
	fwd := and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))
	a.waitFor("the ClusterIP connection", 5*time.Second, func() bool {
		_, b := sum(a.match(fwd))
		return b >= uint64(len(payload))
	})
	time.Sleep(1200 * time.Millisecond)
	f := a.match(fwd)[0]
	assert.Equal(t, "10.43.0.20", f.GetIp().GetDestinationOriginal())
	assert.Equal(t, "backend", f.GetDestination().GetPodName(), "the backend pod")
	svc := f.GetDestinationService()
	require.NotNil(t, svc, "destination_service")
	assert.Equal(t, "demo", svc.GetNamespace())
	assert.Equal(t, "backend", svc.GetName())
	assert.EqualValues(t, 80, svc.GetPort())
	assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, f.GetPolicy().GetVerdict(), f.GetPolicy().GetSummary())
	_, b := sum(a.match(fwd))
	assert.Less(t, b, uint64(2*len(payload)), "counted once, not at both veths")
	// The reply comes back from the backend, also counted once.
	rev := and(tp.reverse().is, verdict(flowlensv1.Verdict_FORWARDED))
	assert.NotEmpty(t, a.match(rev), "the backend's reply")
	assert.True(t, a.match(rev)[0].GetIsReply())
	// Nothing is reported addressed to the ClusterIP itself.
	assert.Empty(t, a.match(func(f *flowlensv1.Flow) bool { return f.GetIp().GetDestination() == "10.43.0.20" }))
}

// TestClusterIPRemoteBackendReply: when kube-proxy's DNAT picks a backend
// on the other node, the reply reaches the client with the ClusterIP as
// its source. The client's node must still report it once, as the
// backend's reply (named, is_reply, judged as the connection to the
// backend), never as traffic from the ClusterIP.
func TestClusterIPRemoteBackendReply(t *testing.T) {
	l := startLab(t, 2)
	a := startAgent(t, l, "node1")
	fe := l.Pod("demo/frontend")
	remote := l.Pod("demo/remote")
	clusterIP := netip.AddrPortFrom(netip.MustParseAddr("10.43.0.20"), 80)
	// The DNAT picks a backend at random: try until the remote one answers.
	var sport int
	for try := 0; try < 40 && sport == 0; try++ {
		p := 46000 + try
		_, reply, err := tcpExchange(t, fe, clusterIP, p, []byte("hi"))
		require.NoError(t, err)
		if reply == traffic.TCPReply([]byte("hi"), "demo/remote") {
			sport = p
		}
	}
	require.NotZero(t, sport, "the ClusterIP never picked demo/remote in 40 tries")

	rev := tuple{src: remote.IP, dst: fe.IP, sport: 8080, dport: uint32(sport), proto: "tcp"}
	fwd := and(rev.is, verdict(flowlensv1.Verdict_FORWARDED))
	a.waitFor("the remote backend's reply", 5*time.Second, func() bool { return len(a.match(fwd)) > 0 })
	f := a.match(fwd)[0]
	assert.Equal(t, "remote", f.GetSource().GetPodName())
	assert.True(t, f.GetIsReply())
	assert.Equal(t, flowlensv1.TrafficDirection_INGRESS, f.GetTrafficDirection())
	assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, f.GetPolicy().GetVerdict(), f.GetPolicy().GetSummary())
	assert.Equal(t, flowlensv1.Mismatch_NONE, f.GetPolicy().GetMismatch())
	time.Sleep(1200 * time.Millisecond)
	fromVIP := a.match(func(f *flowlensv1.Flow) bool { return f.GetIp().GetSource() == "10.43.0.20" })
	assert.Empty(t, fromVIP, "no record comes from the ClusterIP")
	// The client's direction went to the backend through the service.
	out := a.match(and(tuple{src: fe.IP, dst: remote.IP, sport: uint32(sport), dport: 8080, proto: "tcp"}.is, verdict(flowlensv1.Verdict_FORWARDED)))
	require.NotEmpty(t, out)
	assert.Equal(t, "backend", out[0].GetDestinationService().GetName())
}
