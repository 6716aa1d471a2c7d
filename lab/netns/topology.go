package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Node is one emulated K3s node: a network namespace holding cni0, the host-side veths, and with
// two nodes the uplink eth0 and flannel.1.
type Node struct {
	Name    string       `json:"name"` // Kubernetes node name, "node1"
	NetNS   string       `json:"netns"`
	PodCIDR netip.Prefix `json:"podCIDR"`
	IP      netip.Addr   `json:"ip"`                // InternalIP
	VTEPMAC string       `json:"vtepMAC,omitempty"` // flannel.1's MAC, with two nodes
	// Index is the node's number, 1 or 2: its addresses derive from it (addressing.go). It is
	// not recorded; Attach sets it from the node's position.
	Index int `json:"-"`
}

// Pod is one pod namespace with eth0; HostVeth is its peer on cni0 in the node namespace.
type Pod struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Node      string            `json:"node"`
	IP        netip.Addr        `json:"ip"`
	NetNS     string            `json:"netns"`
	HostVeth  string            `json:"hostVeth"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// nlHandle opens a netlink handle bound to the named namespace; the caller closes both.
func Handle(ns string) (*netlink.Handle, vnetns.NsHandle, error) {
	h, err := vnetns.GetFromName(ns)
	if err != nil {
		return nil, 0, fmt.Errorf("open netns %s: %w", ns, err)
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, 0, fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	return nh, h, nil
}

func IPNet(a netip.Addr, bits int) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}}
}

func SetUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// setupNode configures an existing node namespace: lo, cni0 with the gateway address, forwarding
// and bridge netfilter.
func SetupNode(n *Node) error {
	h, nsh, err := Handle(n.NetNS)
	if err != nil {
		return err
	}
	defer nsh.Close()
	defer h.Close()
	if err := SetUp(h, "lo"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0", MTU: PodMTU}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add cni0 in %s: %w", n.NetNS, err)
	}
	if err := h.AddrAdd(br, IPNet(NodeGateway(n.Index), 24)); err != nil {
		return fmt.Errorf("address cni0 in %s: %w", n.NetNS, err)
	}
	if err := SetUp(h, "cni0"); err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.forwarding", "1"},
	} {
		if err := WriteSysctl(n.NetNS, kv[0], kv[1]); err != nil {
			return err
		}
	}
	return ensureBridgeNF(n.NetNS)
}

// ensureBridgeNF makes bridged pod-to-pod traffic traverse iptables; without it no policy is
// enforced between pods of one node (research/kube-router-lab.md §3).
func ensureBridgeNF(ns string) error {
	const key = "net.bridge.bridge-nf-call-iptables"
	v, err := ReadSysctl(ns, key)
	if errors.Is(err, os.ErrNotExist) {
		if _, merr := Run(context.Background(), "", "", "modprobe", "br_netfilter"); merr != nil {
			return fmt.Errorf("%s missing and br_netfilter did not load: %w", key, merr)
		}
		v, err = ReadSysctl(ns, key)
	}
	if err != nil {
		return err
	}
	if v != "1" {
		if err := WriteSysctl(ns, key, "1"); err != nil {
			return err
		}
	}
	return nil
}

// addPodLinks creates the veth pair (host side in the node namespace on cni0, eth0 in the pod
// namespace) and configures eth0 the way the CNI bridge plugin does.
func AddPodLinks(n *Node, p *Pod) error {
	h, nsh, err := Handle(n.NetNS)
	if err != nil {
		return err
	}
	defer nsh.Close()
	defer h.Close()
	ph, pnsh, err := Handle(p.NetNS)
	if err != nil {
		return err
	}
	defer pnsh.Close()
	defer ph.Close()

	br, err := h.LinkByName("cni0")
	if err != nil {
		return fmt.Errorf("find cni0 in %s: %w", n.NetNS, err)
	}
	for attempt := 0; ; attempt++ {
		p.HostVeth = RandomVethName()
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: p.HostVeth, MTU: PodMTU},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(pnsh)),
			PeerMTU:       PodMTU,
		}
		err = h.LinkAdd(veth)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || attempt > 3 {
			return fmt.Errorf("add veth %s for %s: %w", p.HostVeth, p.Key(), err)
		}
	}
	host, err := h.LinkByName(p.HostVeth)
	if err != nil {
		return fmt.Errorf("find %s: %w", p.HostVeth, err)
	}
	if err := h.LinkSetMaster(host, br); err != nil {
		return fmt.Errorf("enslave %s to cni0: %w", p.HostVeth, err)
	}
	if err := h.LinkSetHairpin(host, true); err != nil { // CNI bridge hairpinMode, as K3s configures it
		return fmt.Errorf("hairpin on %s: %w", p.HostVeth, err)
	}
	if err := h.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", p.HostVeth, err)
	}

	if err := SetUp(ph, "lo"); err != nil {
		return err
	}
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 in %s: %w", p.NetNS, err)
	}
	if err := ph.AddrAdd(eth0, IPNet(p.IP, 24)); err != nil {
		return fmt.Errorf("address eth0 of %s: %w", p.Key(), err)
	}
	if err := ph.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set eth0 of %s up: %w", p.Key(), err)
	}
	gw := NodeGateway(n.Index).AsSlice()
	for _, dst := range []*net.IPNet{
		{IP: ClusterCIDR.Addr().AsSlice(), Mask: net.CIDRMask(ClusterCIDR.Bits(), 32)},
		nil, // default
	} {
		r := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: dst, Gw: gw}
		if err := ph.RouteAdd(r); err != nil {
			return fmt.Errorf("route %v via %s in %s: %w", dst, NodeGateway(n.Index), p.Key(), err)
		}
	}
	return nil
}

// JoinNodes links two node namespaces as Flannel's VXLAN backend does: an uplink eth0 in each,
// flannel.1 (VNI 1, UDP 8472, no learning) with 10.42.N.0/32, and for the peer a permanent
// neighbour, an FDB entry and an onlink /24 route via flannel.1.
func JoinNodes(a, b *Node) error {
	return withHandles(a, b, func(ha, hb *netlink.Handle, nsb vnetns.NsHandle) error {
		if err := addUplink(ha, hb, nsb, a, b); err != nil {
			return err
		}
		return joinVTEPs(ha, hb, a, b)
	})
}

// addUplink puts a veth pair named eth0 between the two nodes, addressed
// with their IPs, as the LAN between K3s nodes.
func addUplink(ha, hb *netlink.Handle, nsb vnetns.NsHandle, a, b *Node) error {
	uplink := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0", MTU: UplinkMTU},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(nsb)),
		PeerMTU:       UplinkMTU,
	}
	if err := ha.LinkAdd(uplink); err != nil {
		return fmt.Errorf("add uplink between %s and %s: %w", a.NetNS, b.NetNS, err)
	}
	for _, side := range []struct {
		h *netlink.Handle
		n *Node
	}{{ha, a}, {hb, b}} {
		eth0, err := side.h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find uplink in %s: %w", side.n.NetNS, err)
		}
		if err := side.h.AddrAdd(eth0, IPNet(side.n.IP, UplinkCIDR.Bits())); err != nil {
			return fmt.Errorf("address uplink in %s: %w", side.n.NetNS, err)
		}
		if err := side.h.LinkSetUp(eth0); err != nil {
			return fmt.Errorf("set uplink up in %s: %w", side.n.NetNS, err)
		}
	}
	return nil
}

// JoinVTEPs links two nodes whose uplinks (eth0, addressed with their IPs) already reach each
// other, with flannel.1 as JoinNodes makes it: the real-cluster lab's nodes share a segment with
// the control plane.
func JoinVTEPs(a, b *Node) error {
	return withHandles(a, b, func(ha, hb *netlink.Handle, _ vnetns.NsHandle) error {
		return joinVTEPs(ha, hb, a, b)
	})
}

// withHandles runs fn with netlink handles in both nodes' namespaces (and
// b's namespace handle, to move a veth peer there), closing them after.
func withHandles(a, b *Node, fn func(ha, hb *netlink.Handle, nsb vnetns.NsHandle) error) error {
	ha, nsa, err := Handle(a.NetNS)
	if err != nil {
		return err
	}
	defer nsa.Close()
	defer ha.Close()
	hb, nsb, err := Handle(b.NetNS)
	if err != nil {
		return err
	}
	defer nsb.Close()
	defer hb.Close()
	return fn(ha, hb, nsb)
}

func joinVTEPs(ha, hb *netlink.Handle, a, b *Node) error {
	if err := addVTEP(ha, a); err != nil {
		return err
	}
	if err := addVTEP(hb, b); err != nil {
		return err
	}
	if err := peerVTEP(ha, a, b); err != nil {
		return err
	}
	return peerVTEP(hb, b, a)
}

func addVTEP(h *netlink.Handle, n *Node) error {
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find uplink in %s: %w", n.NetNS, err)
	}
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: "flannel.1", MTU: PodMTU},
		VxlanId:      vxlanID,
		VtepDevIndex: eth0.Attrs().Index,
		SrcAddr:      n.IP.AsSlice(),
		Port:         vxlanPort,
		Learning:     false,
	}
	if err := h.LinkAdd(vx); err != nil {
		return fmt.Errorf("add flannel.1 in %s: %w", n.NetNS, err)
	}
	if err := h.AddrAdd(vx, IPNet(NodeVTEP(n.Index), 32)); err != nil {
		return fmt.Errorf("address flannel.1 in %s: %w", n.NetNS, err)
	}
	if err := h.LinkSetUp(vx); err != nil {
		return fmt.Errorf("set flannel.1 up in %s: %w", n.NetNS, err)
	}
	// The kernel picks the MAC; Flannel publishes what it reads back, so do the same.
	l, err := h.LinkByName("flannel.1")
	if err != nil {
		return fmt.Errorf("read flannel.1 in %s: %w", n.NetNS, err)
	}
	n.VTEPMAC = l.Attrs().HardwareAddr.String()
	return nil
}

func peerVTEP(h *netlink.Handle, local, remote *Node) error {
	vx, err := h.LinkByName("flannel.1")
	if err != nil {
		return fmt.Errorf("find flannel.1 in %s: %w", local.NetNS, err)
	}
	mac, err := net.ParseMAC(remote.VTEPMAC)
	if err != nil {
		return fmt.Errorf("remote VTEP MAC %q: %w", remote.VTEPMAC, err)
	}
	idx := vx.Attrs().Index
	if err := h.NeighSet(&netlink.Neigh{
		LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST,
		IP: NodeVTEP(remote.Index).AsSlice(), HardwareAddr: mac,
	}); err != nil {
		return fmt.Errorf("neighbour %s on flannel.1 in %s: %w", NodeVTEP(remote.Index), local.NetNS, err)
	}
	if err := h.NeighSet(&netlink.Neigh{
		LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
		IP: remote.IP.AsSlice(), HardwareAddr: mac,
	}); err != nil {
		return fmt.Errorf("fdb %s on flannel.1 in %s: %w", remote.IP, local.NetNS, err)
	}
	cidr := NodePodCIDR(remote.Index)
	if err := h.RouteAdd(&netlink.Route{
		LinkIndex: idx,
		Dst:       &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)},
		Gw:        NodeVTEP(remote.Index).AsSlice(),
		Flags:     int(netlink.FLAG_ONLINK),
	}); err != nil {
		return fmt.Errorf("route %s via flannel.1 in %s: %w", cidr, local.NetNS, err)
	}
	return nil
}

// addNodeIPOnLoopback gives a lone node its InternalIP somewhere local, as a real node has it on
// its uplink, so addrtype LOCAL and the cluster YAML's hostIP agree.
func AddNodeIPOnLoopback(n *Node) error {
	h, nsh, err := Handle(n.NetNS)
	if err != nil {
		return err
	}
	defer nsh.Close()
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", n.NetNS, err)
	}
	if err := h.AddrAdd(lo, IPNet(n.IP, 32)); err != nil && !strings.Contains(err.Error(), "exists") {
		return fmt.Errorf("address lo in %s: %w", n.NetNS, err)
	}
	return nil
}
