package lab

import (
	"fmt"
	"net/netip"
)

// K3s defaults (research/k3s-datapath.md §3).
var (
	clusterCIDR = netip.MustParsePrefix("10.42.0.0/16")
	serviceCIDR = netip.MustParsePrefix("10.43.0.0/16")
	uplinkCIDR  = netip.MustParsePrefix("192.0.2.0/24") // TEST-NET-1; lives only inside lab namespaces
)

const (
	podMTU     = 1450 // flannel.1 = uplink 1500 - 50, and FLANNEL_MTU for cni0, veths, pod eth0
	uplinkMTU  = 1500
	vxlanPort  = 8472
	vxlanID    = 1
	firstPodIP = 10
)

// nodePodCIDR is node n's /24: node1 10.42.0.0/24, node2 10.42.1.0/24.
func nodePodCIDR(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(n - 1), 0}), 24)
}

// nodeGateway is cni0's address, 10.42.N.1.
func nodeGateway(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 42, byte(n - 1), 1}) }

// nodeVTEP is flannel.1's address, 10.42.N.0.
func nodeVTEP(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 42, byte(n - 1), 0}) }

// nodeIP is the node's InternalIP on the uplink, 192.0.2.N.
func nodeIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}) }

func nodeName(n int) string { return fmt.Sprintf("node%d", n) }
