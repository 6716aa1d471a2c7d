package outside

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/flowlens/flowlens/lab/netns"
)

// Build wires the outside namespace name, which the caller has created: the peers' addresses on
// its lo, and one veth pair to every node.
func Build(name string, peers []netip.Addr, nodes []*netns.Node) error {
	eh, ensh, err := netns.Handle(name)
	if err != nil {
		return err
	}
	defer ensh.Close()
	defer eh.Close()
	if err := netns.SetUp(eh, "lo"); err != nil {
		return err
	}
	lo, err := eh.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", name, err)
	}
	for _, a := range peers {
		if err := eh.AddrAdd(lo, netns.IPNet(a, 32)); err != nil {
			return fmt.Errorf("address %s on lo in %s: %w", a, name, err)
		}
	}
	for _, n := range nodes {
		if err := join(n, eh, ensh, name); err != nil {
			return err
		}
	}
	return nil
}

// join adds node n's ext0 <-> nodeN pair: the node's default route goes out ext0, ext's
// route to the node's pod /24 comes back over it.
func join(n *netns.Node, eh *netlink.Handle, ensh vnetns.NsHandle, extName string) error {
	nh, nnsh, err := netns.Handle(n.NetNS)
	if err != nil {
		return err
	}
	defer nnsh.Close()
	defer nh.Close()
	peerName := fmt.Sprintf("node%d", n.Index)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "ext0", MTU: netns.UplinkMTU},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(ensh)),
		PeerMTU:       netns.UplinkMTU,
	}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add ext0 between %s and %s: %w", n.NetNS, extName, err)
	}
	ext0, err := nh.LinkByName("ext0")
	if err != nil {
		return fmt.Errorf("find ext0 in %s: %w", n.NetNS, err)
	}
	if err := nh.AddrAdd(ext0, netns.IPNet(netns.ExtNodeIP(n.Index), 30)); err != nil {
		return fmt.Errorf("address ext0 in %s: %w", n.NetNS, err)
	}
	if err := nh.LinkSetUp(ext0); err != nil {
		return fmt.Errorf("set ext0 up in %s: %w", n.NetNS, err)
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: ext0.Attrs().Index, Gw: netns.ExtPeerIP(n.Index).AsSlice()}); err != nil {
		return fmt.Errorf("default route via ext0 in %s: %w", n.NetNS, err)
	}
	peer, err := eh.LinkByName(peerName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", peerName, extName, err)
	}
	if err := eh.AddrAdd(peer, netns.IPNet(netns.ExtPeerIP(n.Index), 30)); err != nil {
		return fmt.Errorf("address %s in %s: %w", peerName, extName, err)
	}
	if err := eh.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up in %s: %w", peerName, extName, err)
	}
	cidr := netns.NodePodCIDR(n.Index)
	if err := eh.RouteAdd(&netlink.Route{
		LinkIndex: peer.Attrs().Index,
		Dst:       &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)},
		Gw:        netns.ExtNodeIP(n.Index).AsSlice(),
	}); err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", cidr, peerName, extName, err)
	}
	return nil
}
