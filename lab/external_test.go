package lab

import (
	"context"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExternalWorld: the outside namespace under the hand-written rules, on two nodes. Pods reach
// it and are reached from it through their own node; policy applies to both directions; nothing
// is left behind.
func TestExternalWorld(t *testing.T) {
	needRoot(t)
	sc := scenario.DefaultScenario()
	out := func(name, pod, peer string, port int, allowed bool, node string) scenario.ExternalCase {
		return scenario.ExternalCase{Name: name, Pod: pod, Peer: netip.MustParseAddr(peer), Protocol: "TCP", Port: port, Allowed: allowed, Enforcer: node}
	}
	in := func(c scenario.ExternalCase) scenario.ExternalCase { c.Inbound = true; return c }
	udp := out("udp out", "demo/frontend", "203.0.113.10", 5300, true, "node1")
	udp.Protocol = "UDP"
	sc.External = &scenario.External{
		NamedCIDRs: []scenario.NamedCIDR{{Name: "proxmox", Prefix: netip.MustParsePrefix("10.0.1.10/32")}},
		Cases: []scenario.ExternalCase{
			out("not isolated out", "demo/frontend", "203.0.113.10", 443, true, "node1"),
			out("node2 out", "demo/remote", "10.0.1.10", 8006, true, "node2"),
			out("egress denied", "other/outsider", "203.0.113.10", 443, false, "node1"),
			udp,
			in(out("lan in", "other/outsider", "192.168.1.50", 8080, true, "node1")),
			in(out("lan in denied", "demo/db", "192.168.1.50", 8080, false, "node1")),
			in(out("lan in denied node2", "demo/remote", "192.168.1.50", 8080, false, "node2")),
		},
	}
	prefix := netns.NewPrefix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Up(ctx, Config{Prefix: prefix, Nodes: 2, Scenario: sc, External: true})
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, l.Close())
		assert.Empty(t, labNetNS(t, prefix), "namespaces leaked")
	})
	assert.Equal(t, prefix+"-ext", l.ExternalNetNS())
	assert.Contains(t, l.NetNSNames(), prefix+"-ext")
	assert.Equal(t, []string{"proxmox=10.0.1.10/32"}, l.NamedCIDRs())
	// ext0 is no bridge port: the agent must never attach to it.
	out0, err := l.Exec(ctx, l.Nodes()[0].NetNS, "ip", "-o", "link", "show", "ext0")
	require.NoError(t, err)
	assert.NotContains(t, string(out0), "master")

	pods, err := traffic.StartServers(l)
	require.NoError(t, err)
	defer pods.Close()
	outside, err := traffic.StartExternalServers(l)
	require.NoError(t, err)
	defer outside.Close()

	require.Len(t, l.ExternalCases(), len(sc.External.Cases))
	for i, c := range l.ExternalCases() {
		r := traffic.RunExternalCase(ctx, l, pods, outside, c, 41000+i)
		assert.Equal(t, c.Allowed, r.Allowed, "%s: %s", c.Name, r.Detail)
		if c.Inbound {
			assert.Equal(t, c.Peer, r.Src.Addr(), c.Name)
		} else {
			assert.Equal(t, l.Pod(c.Pod).IP, r.Src.Addr(), c.Name)
			assert.Equal(t, c.Peer, r.Dst.Addr(), c.Name)
		}
		assert.Equal(t, uint16(41000+i), r.Src.Port())
	}
	// Leaving the cluster, pod traffic is masqueraded to the node's ext0 address, as Flannel does.
	ct, err := l.Exec(ctx, l.Nodes()[0].NetNS, "iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG")
	require.NoError(t, err)
	assert.Contains(t, string(ct), "MASQUERADE")
}

func TestExternalNeedsNamespace(t *testing.T) {
	l := &Lab{scenario: scenario.DefaultScenario()}
	_, err := traffic.StartExternalServers(l)
	require.ErrorContains(t, err, "Config.External")
	assert.Empty(t, l.ExternalCases())
	assert.Empty(t, l.NamedCIDRs())
}

func TestHomelabNeedsKubeRouter(t *testing.T) {
	sc, err := scenario.HomelabScenario()
	require.NoError(t, err)
	_, err = Up(t.Context(), Config{Scenario: sc})
	require.ErrorContains(t, err, "kube-router")
}
