package scenario

import (
	"github.com/flowlens/flowlens/lab/netns"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOutsideAddr(t *testing.T) {
	standIns := map[netip.Addr]netip.Addr{netip.MustParseAddr("1.1.1.1"): netip.MustParseAddr("203.0.113.10")}
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "1.1.1.1", want: "203.0.113.10"},
		{in: "203.0.113.7", want: "203.0.113.7"},
		{in: "10.0.1.10", want: "10.0.1.10"},
		{in: "172.16.0.5", want: "172.16.0.5"},
		{in: "192.168.1.50", want: "192.168.1.50"},
		{in: "8.8.8.8", err: "public address"},
		{in: "10.42.0.10", err: "lab's own range 10.42.0.0/16"},
		{in: "10.43.0.1", err: "lab's own range"},
		{in: "198.51.100.2", err: "lab's own range"},
		{in: "fd00::1", err: "only IPv4"},
		{in: "proxmox", err: "not an IP address"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := outsideAddr(tc.in, standIns)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.String())
		})
	}
}

func TestValidateExternal(t *testing.T) {
	good := func() *Scenario {
		sc := DefaultScenario()
		sc.External = &External{
			NamedCIDRs: []NamedCIDR{{Name: "proxmox", Prefix: netip.MustParsePrefix("10.0.1.10/32")}},
			Cases: []ExternalCase{{Name: "out", Pod: "demo/frontend", Peer: netip.MustParseAddr("203.0.113.10"),
				Protocol: "TCP", Port: 443, Allowed: true, Enforcer: "node1"}},
		}
		return sc
	}
	require.NoError(t, good().ValidateExternal())
	require.NoError(t, DefaultScenario().ValidateExternal(), "no outside world is fine")
	for _, tc := range []struct {
		name  string
		edit  func(*External)
		error string
	}{
		{"unknown pod", func(e *External) { e.Cases[0].Pod = "demo/nope" }, `pod "demo/nope" is not a pod`},
		{"public peer", func(e *External) { e.Cases[0].Peer = netip.MustParseAddr("1.1.1.1") }, "public address"},
		{"pod range peer", func(e *External) { e.Cases[0].Peer = netip.MustParseAddr("10.42.0.99") }, "lab's own range"},
		{"bad protocol", func(e *External) { e.Cases[0].Protocol = "ICMP" }, `protocol "ICMP"`},
		{"bad port", func(e *External) { e.Cases[0].Port = 0 }, "out of range"},
		{"dup name", func(e *External) { e.NamedCIDRs = append(e.NamedCIDRs, e.NamedCIDRs[0]) }, "given twice"},
		{"bad name", func(e *External) { e.NamedCIDRs[0].Name = "a=b" }, "namedCIDRs[0]"},
		{"no prefix", func(e *External) { e.NamedCIDRs[0].Prefix = netip.Prefix{} }, "no prefix"},
		{"public stand-in", func(e *External) {
			e.StandIns = map[netip.Addr]netip.Addr{netip.MustParseAddr("1.1.1.1"): netip.MustParseAddr("9.9.9.9")}
		}, "stand-in for 1.1.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := good()
			tc.edit(sc.External)
			require.ErrorContains(t, sc.ValidateExternal(), tc.error)
		})
	}
}

func TestLoadHomelabExternal(t *testing.T) {
	d, err := HomelabDir()
	require.NoError(t, err)
	for _, nodes := range []int{1, 2} {
		sc, err := LoadHomelab(d, nodes)
		require.NoError(t, err)
		require.NotNil(t, sc.External)
		ext := sc.External
		assert.Len(t, ext.Cases, 25, "every TCP/UDP expectation with an outside end")
		pods := map[string]PodSpec{}
		for _, p := range sc.Pods {
			pods[p.Key()] = p
		}
		inbound := 0
		for _, c := range ext.Cases {
			require.NoError(t, checkOutside(c.Peer), c.Name)
			assert.NotEqual(t, "1.1.1.1", c.Peer.String(), "%s: the public address is never used", c.Name)
			if c.Written != "" {
				assert.Equal(t, "1.1.1.1", c.Written)
				assert.Equal(t, "203.0.113.10", c.Peer.String())
			}
			assert.Equal(t, netns.NodeName(pods[c.Pod].Node), c.Enforcer, c.Name)
			if c.Inbound {
				inbound++
				assert.True(t, servesPort(pods[c.Pod], c.Port, c.Protocol), "%s: %s serves %d", c.Name, c.Pod, c.Port)
			}
		}
		assert.Equal(t, 2, inbound, "the LAN user and the internet client")
		lan := slices.IndexFunc(ext.Cases, func(c ExternalCase) bool { return c.Peer.String() == "192.168.1.50" })
		require.GreaterOrEqual(t, lan, 0)
		assert.True(t, ext.Cases[lan].Inbound)
		assert.True(t, ext.Cases[lan].Allowed)
		assert.Equal(t, "kube-system/traefik-6f9d4c7b8-x7k2p", ext.Cases[lan].Pod)
		var flags []string
		for _, n := range ext.NamedCIDRs {
			flags = append(flags, n.String())
		}
		assert.Contains(t, flags, "proxmox=10.0.1.10/32")
		assert.Contains(t, flags, "control-plane=10.0.40.100/30")
	}
}
