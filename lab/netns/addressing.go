package netns

import (
	"fmt"
	"net/netip"
)

// K3s defaults (research/k3s-datapath.md §3).
var (
	ClusterCIDR = netip.MustParsePrefix("10.42.0.0/16")
	ServiceCIDR = netip.MustParsePrefix("10.43.0.0/16")
	UplinkCIDR  = netip.MustParsePrefix("192.0.2.0/24") // TEST-NET-1; lives only inside lab namespaces
)

const (
	PodMTU     = 1450 // flannel.1 = uplink 1500 - 50, and FLANNEL_MTU for cni0, veths, pod eth0
	UplinkMTU  = 1500
	vxlanPort  = 8472
	vxlanID    = 1
	FirstPodIP = 10
)

// nodePodCIDR is node n's /24: node1 10.42.0.0/24, node2 10.42.1.0/24.
func NodePodCIDR(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(n - 1), 0}), 24)
}

// nodeGateway is cni0's address, 10.42.N.1.
func NodeGateway(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 42, byte(n - 1), 1}) }

// nodeVTEP is flannel.1's address, 10.42.N.0.
func NodeVTEP(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 42, byte(n - 1), 0}) }

// nodeIP is the node's InternalIP on the uplink, 192.0.2.N.
func NodeIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}) }

func NodeName(n int) string { return fmt.Sprintf("node%d", n) }

// ExtLinkCIDR holds the node<->outside point-to-point links (TEST-NET-2, only inside lab
// namespaces).
var ExtLinkCIDR = netip.MustParsePrefix("198.51.100.0/24")

// ExtPeerIP is the outside end of node n's link, 198.51.100.(4n-3)/30; ExtNodeIP is the node's
// end (ext0), 4n-2.
func ExtPeerIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(4*(n-1) + 1)}) }
func ExtNodeIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(4*(n-1) + 2)}) }
