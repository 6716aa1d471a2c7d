package aggregate

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// addUplink gives the node an uplink veth, ext0 (10.99.0.1), to a namespace
// of its own standing for the network outside (10.99.0.2, routing the pod
// subnet back through the node), and returns that namespace as a peer.
func addUplink(t *testing.T, tn *testNode) *testPod {
	t.Helper()
	ext := uniquePrefix() + "-ext"
	run(t, "ip", "netns", "add", ext)
	t.Cleanup(func() { run(t, "ip", "netns", "del", ext) })
	tn.exec("ip", "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", ext)
	tn.exec("ip", "addr", "add", "10.99.0.1/24", "dev", "ext0")
	tn.exec("ip", "link", "set", "ext0", "up")
	for _, args := range [][]string{
		{"ip", "addr", "add", "10.99.0.2/24", "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "link", "set", "lo", "up"},
		{"ip", "route", "add", "10.42.0.0/24", "via", "10.99.0.1"},
	} {
		run(t, append([]string{"ip", "netns", "exec", ext}, args...)...)
	}
	return &testPod{ns: ext, ip: "10.99.0.2"}
}

// In the egress mode a pod's packets are known past policy where they
// leave the node: leaving through an uplink (tc_exit on it), or delivered
// to the node itself (the netfilter link on LOCAL_IN). The records count
// every datagram once, FORWARDED. With the uplink left out of the exit
// interfaces nothing confirms the packets: none is reported forwarded,
// which shows tc_exit is what confirmed them in the first case.
func TestCaptureEgressExits(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name      string
		exits     []string
		toNode    bool
		wantExits string
		want      uint64
	}{
		{name: "leaving through the uplink", wantExits: "1", want: 23},
		{name: "uplink not watched", exits: []string{"flannel.*"}, wantExits: "0", want: 0},
		{name: "to the node itself", toNode: true, wantExits: "1", want: 23},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn := newTestNode(t, "10.42.0", 1)
			dst := addUplink(t, tn)
			if tt.toNode {
				dst = &testPod{ns: tn.node, ip: "10.42.0.1"} // cni0's address
			}
			rc := startCapture(t, tn, bpf.Config{Accepted: bpf.AcceptedEgress, ExitInterfaces: tt.exits})
			st := rc.c.Status()
			assert.Equal(t, "tc-egress", st[bpf.StatusAccepted])
			require.Eventually(t, func() bool { return rc.c.Status()[bpf.StatusExits] == tt.wantExits },
				5*time.Second, 10*time.Millisecond, "exit interfaces attached: %v", rc.c.Status())

			port := udpBurst(t, tn.pods[0], dst, 5300, 23)
			evs := rc.stop(t)
			udp := flowsFor(evs, tn.pods[0].ip, dst.ip, protoUDP, uint32(port), 5300)
			assert.Empty(t, byVerdict(udp, flowlensv1.Verdict_DROPPED))
			pkts, _ := sumPackets(byVerdict(udp, flowlensv1.Verdict_FORWARDED))
			assert.Equal(t, tt.want, pkts, "forwarded datagrams: %s", fmt.Sprint(udp))
		})
	}
}
