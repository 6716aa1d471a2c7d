package lab

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
)

func needRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t, "builds network namespaces, veths, iptables rules")
}

// labNetNS lists the namespaces carrying prefix.
func labNetNS(t *testing.T, prefix string) []string {
	t.Helper()
	names, err := netns.List()
	require.NoError(t, err)
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix+"-") {
			out = append(out, n)
		}
	}
	return out
}

func hostLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	require.NoError(t, err)
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// upLab builds a lab and registers cleanup plus a leak check for its prefix.
func upLab(t *testing.T, nodes int) *Lab {
	t.Helper()
	prefix := netns.NewPrefix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Up(ctx, Config{Prefix: prefix, Nodes: nodes})
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, l.Close())
		assert.Empty(t, labNetNS(t, prefix), "namespaces leaked")
	})
	return l
}

func TestUpCloseLeavesNothing(t *testing.T) {
	needRoot(t)
	linksBefore := hostLinks(t)
	prefix := netns.NewPrefix()
	l, err := Up(context.Background(), Config{Prefix: prefix, Nodes: 2})
	require.NoError(t, err)
	created := labNetNS(t, prefix)
	assert.ElementsMatch(t, l.NetNSNames(), created)
	assert.Len(t, created, 2+6)
	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "Close is idempotent")
	assert.Empty(t, labNetNS(t, prefix))
	assert.ElementsMatch(t, linksBefore, hostLinks(t), "host links changed")
}

func TestFailedUpCleansUp(t *testing.T) {
	needRoot(t)
	bad := scenario.DefaultScenario()
	bad.Pods[0].TargetOf = []string{"demo/missing"}
	for _, tc := range []struct {
		name      string
		scenario  *scenario.Scenario
		failAfter string
	}{
		{"bad scenario", bad, ""},
		{"after nodes", nil, "nodes"},
		{"after pods", nil, "pods"},
		{"after rules", nil, "rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := netns.NewPrefix()
			l, err := Up(context.Background(), Config{Prefix: prefix, Nodes: 2, Scenario: tc.scenario, failAfter: tc.failAfter})
			require.Error(t, err)
			assert.Nil(t, l)
			assert.Empty(t, labNetNS(t, prefix), "a failed up left namespaces behind")
		})
	}
}

func iptablesSave(t *testing.T, ns string) []string {
	t.Helper()
	out, err := netns.Run(context.Background(), ns, "", "iptables-save")
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		lines = append(lines, regexp.MustCompile(` \[\d+:\d+\]$`).ReplaceAllString(l, ""))
	}
	return lines
}

func hostIPSets(t *testing.T) string {
	t.Helper()
	out, err := netns.Run(context.Background(), "", "", "ipset", "list", "-n")
	require.NoError(t, err)
	return string(out)
}

// TestEnforcement drives every case of the default scenario across two nodes and checks the
// hand-written rules decide each one as intended, rejections included, with the host untouched.
func TestEnforcement(t *testing.T) {
	needRoot(t)
	hostBefore := iptablesSave(t, "")
	setsBefore := hostIPSets(t)
	l := upLab(t, 2)
	srv, err := traffic.StartServers(l)
	require.NoError(t, err)
	defer srv.Close()

	ctx := context.Background()
	names := map[string]bool{}
	for _, c := range l.Scenario().Cases {
		names[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			r := traffic.RunCase(ctx, l, srv, c)
			if c.Allowed {
				require.NoError(t, r.Err)
				assert.True(t, r.Allowed)
				if c.Protocol == "UDP" {
					assert.Equal(t, int64(c.Count), r.Got, "every datagram of the burst arrives")
				}
				return
			}
			assert.False(t, r.Allowed)
			require.Error(t, r.Err)
			// ECONNREFUSED (not a timeout) proves the ICMP port-unreachable of a REJECT came back.
			assert.True(t, errors.Is(r.Err, syscall.ECONNREFUSED), "want a fast REJECT, got %v", r.Err)
		})
	}
	for _, want := range []string{"allowed-tcp", "default-deny-ingress", "egress-deny", "udp-burst", "service-clusterip",
		"cross-node-allowed", "cross-node-egress-deny", "cross-node-ingress-deny"} {
		assert.True(t, names[want], "scenario lacks case %s", want)
	}

	t.Run("clusterip reaches each backend", func(t *testing.T) { assertClusterIPSplit(t, l, srv) })
	t.Run("node settings", func(t *testing.T) {
		for _, n := range l.Nodes() {
			assertNodeSettings(t, l, n)
		}
	})
	t.Run("kube-router shapes in the node", func(t *testing.T) { assertKubeRouterShapes(t, l) })
	t.Run("host untouched", func(t *testing.T) { assertHostUntouched(t, hostBefore, setsBefore) })
}

// assertClusterIPSplit checks that the scenario's ClusterIP case reaches both backends.
func assertClusterIPSplit(t *testing.T, l *Lab, srv *traffic.Servers) {
	t.Helper()
	ctx := context.Background()
	var svcCase scenario.Case
	for _, c := range l.Scenario().Cases {
		if c.Service != "" {
			svcCase = c
		}
	}
	require.NotEmpty(t, svcCase.Name)
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		r := traffic.RunCase(ctx, l, srv, svcCase)
		require.NoError(t, r.Err)
		seen[r.ServedBy] = true
	}
	assert.Equal(t, map[string]bool{"demo/backend": true, "demo/remote": true}, seen,
		"kube-proxy's random split should pick both endpoints (local and over VXLAN) within 40 tries")
}

// assertNodeSettings checks node n's sysctls, cni0 and flannel.1, its pods' links and routes,
// and its VXLAN route, neighbour and fdb entry towards the other node.
func assertNodeSettings(t *testing.T, l *Lab, n *netns.Node) {
	t.Helper()
	ctx := context.Background()
	v, err := netns.ReadSysctl(n.NetNS, "net.bridge.bridge-nf-call-iptables")
	require.NoError(t, err)
	assert.Equal(t, "1", v, n.Name)
	v, err = netns.ReadSysctl(n.NetNS, "net.ipv4.ip_forward")
	require.NoError(t, err)
	assert.Equal(t, "1", v, n.Name)
	h, nsh, err := netns.Handle(n.NetNS)
	require.NoError(t, err)
	defer nsh.Close()
	defer h.Close()
	br, err := h.LinkByName("cni0")
	require.NoError(t, err)
	assert.Equal(t, netns.PodMTU, br.Attrs().MTU)
	vx, err := h.LinkByName("flannel.1")
	require.NoError(t, err)
	require.IsType(t, &netlink.Vxlan{}, vx)
	assert.Equal(t, 1, vx.(*netlink.Vxlan).VxlanId)
	assert.Equal(t, 8472, vx.(*netlink.Vxlan).Port)
	assert.False(t, vx.(*netlink.Vxlan).Learning)
	assert.Equal(t, netns.PodMTU, vx.Attrs().MTU)
	assert.Equal(t, n.VTEPMAC, vx.Attrs().HardwareAddr.String())
	assertPodLinks(t, l, n, h, br)
	remote := l.Nodes()[2-n.Index]
	out, err := l.Exec(ctx, n.NetNS, "ip", "route", "show", "dev", "flannel.1")
	require.NoError(t, err)
	assert.Contains(t, string(out), remote.PodCIDR.String()+" via "+netns.NodeVTEP(remote.Index).String()+" onlink")
	out, err = l.Exec(ctx, n.NetNS, "ip", "neigh", "show", "dev", "flannel.1")
	require.NoError(t, err)
	assert.Contains(t, string(out), netns.NodeVTEP(remote.Index).String()+" lladdr "+remote.VTEPMAC+" PERMANENT")
	out, err = l.Exec(ctx, n.NetNS, "bridge", "fdb", "show", "dev", "flannel.1")
	require.NoError(t, err)
	assert.Contains(t, string(out), remote.VTEPMAC+" dst "+remote.IP.String()+" self permanent")
}

// assertPodLinks checks the veths and routes of node n's pods.
func assertPodLinks(t *testing.T, l *Lab, n *netns.Node, h *netlink.Handle, br netlink.Link) {
	t.Helper()
	ctx := context.Background()
	for _, p := range l.Pods() {
		if p.Node != n.Name {
			continue
		}
		v, err := h.LinkByName(p.HostVeth)
		require.NoError(t, err, p.Key())
		assert.Regexp(t, `^veth[0-9a-f]{8}$`, p.HostVeth)
		assert.Equal(t, br.Attrs().Index, v.Attrs().MasterIndex, "%s on cni0", p.HostVeth)
		assert.Equal(t, netns.PodMTU, v.Attrs().MTU)
		out, err := l.Exec(ctx, p.NetNS, "ip", "-o", "link", "show", "eth0")
		require.NoError(t, err)
		assert.Contains(t, string(out), "mtu 1450", p.Key())
		out, err = l.Exec(ctx, p.NetNS, "ip", "route")
		require.NoError(t, err)
		gw := netns.NodeGateway(n.Index).String()
		assert.Contains(t, string(out), "default via "+gw+" dev eth0", p.Key())
		assert.Contains(t, string(out), "10.42.0.0/16 via "+gw+" dev eth0", p.Key())
	}
}

func assertKubeRouterShapes(t *testing.T, l *Lab) {
	t.Helper()
	ctx := context.Background()
	save := strings.Join(iptablesSave(t, l.Node("node1").NetNS), "\n")
	for _, want := range []string{
		":KUBE-NWPLCY-COMMON -", "--nflog-group 100", "-j REJECT --reject-with icmp-port-unreachable",
		"-m physdev --physdev-is-bridged", "--nflog-prefix \"DROP by policy demo/default-deny-ingress\"",
		"-m mark --mark 0x20000/0x20000 -j ACCEPT", "-j DNAT --to-destination 10.42.1.10:8080",
	} {
		assert.Contains(t, save, want)
	}
	assert.Regexp(t, `(?m)^:KUBE-POD-FW-[A-Z2-7]{16} -$`, save)
	out, err := l.Exec(ctx, l.Node("node1").NetNS, "ipset", "list", "KUBE-SRC-4NBZEF6T3K6RXMXQ")
	require.NoError(t, err)
	assert.Contains(t, string(out), "10.42.0.10")
}

func assertHostUntouched(t *testing.T, hostBefore []string, setsBefore string) {
	t.Helper()
	// Other processes may change the host's rules meanwhile; none of the changes may be ours.
	for _, l := range added(hostBefore, iptablesSave(t, "")) {
		assert.NotRegexp(t, `KUBE-|FLANNEL|10\.4[23]\.`, l, "lab rule in the host netns")
	}
	for _, s := range added(strings.Fields(setsBefore), strings.Fields(hostIPSets(t))) {
		assert.NotContains(t, s, "KUBE-", "lab ipset in the host netns")
	}
}

func TestAddPodAfterUp(t *testing.T) {
	needRoot(t)
	l := upLab(t, 1)
	srv, err := traffic.StartServers(l)
	require.NoError(t, err)
	defer srv.Close()
	ctx := context.Background()

	p, err := l.AddPod(ctx, scenario.PodSpec{
		Namespace: "demo", Name: "late-frontend", Node: 1,
		Labels:   map[string]string{"app": "frontend"},
		TargetOf: []string{"demo/default-deny-ingress"},
		PeerOf:   []string{"demo/allow-frontend-to-backend/ingress/0"},
	})
	require.NoError(t, err)
	assert.Equal(t, "10.42.0.13", p.IP.String(), "the first free address after the fixed ones")
	assert.Same(t, p, l.Pod("demo/late-frontend"))
	h, nsh, err := netns.Handle(l.Node("node1").NetNS)
	require.NoError(t, err)
	defer nsh.Close()
	defer h.Close()
	_, err = h.LinkByName(p.HostVeth)
	require.NoError(t, err, "host veth of the new pod")

	// The re-sync put the new pod into the allow rule's peer set and gave it a pod chain.
	r := traffic.RunCase(ctx, l, srv, scenario.Case{Name: "late", From: p.Key(), To: "demo/backend", Protocol: "TCP", Port: 8080, Allowed: true})
	require.NoError(t, r.Err)
	assert.True(t, r.Allowed)
	_, err = l.Pod("demo/frontend").DialTCP(ctx, p.AddrPort(9999), time.Second)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "default-deny ingress covers the new pod")

	_, err = l.AddPod(ctx, scenario.PodSpec{Namespace: "demo", Name: "bad", Node: 1, TargetOf: []string{"demo/nope"}})
	assert.ErrorContains(t, err, "no such policy rules")
	_, err = l.AddPod(ctx, scenario.PodSpec{Namespace: "demo", Name: "far", Node: 2})
	assert.ErrorContains(t, err, "the lab has 1")
}

func TestSweep(t *testing.T) {
	needRoot(t)
	prefix := netns.NewPrefix()
	require.NoError(t, netns.Add(context.Background(), prefix+"-stray"))
	removed, err := netns.Sweep(context.Background(), prefix)
	require.NoError(t, err)
	assert.Equal(t, []string{prefix + "-stray"}, removed)
	assert.Empty(t, labNetNS(t, prefix))
}

// added returns the lines of after that are not in before.
func added(before, after []string) []string {
	seen := map[string]bool{}
	for _, l := range before {
		seen[l] = true
	}
	var out []string
	for _, l := range after {
		if !seen[l] {
			out = append(out, l)
		}
	}
	return out
}
