package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The world outside the cluster is one more namespace, <prefix>-ext, joined to every node by a
// veth pair of its own (ext0 in the node, nodeN in ext). It holds the outside peers' addresses on
// lo and serves their ports. ext0 is not a bridge port, so the agent never attaches to it, as it
// never attaches to a real node's uplink.
//
// Pod traffic leaving the cluster is masqueraded to ext0's address by the FLANNEL-POSTRTG rules
// the lab already writes (-s 10.42.0.0/16 ! -d 224.0.0.0/4 MASQUERADE), as on K3s, so replies come
// back to the node; kube-router judges the packet in FORWARD, before POSTROUTING, so it still sees
// the pod address. ext also routes each node's pod /24 back over that node's veth, which only the
// inbound cases (a LAN user dialling a pod address) use: on a real LAN that path is a static route
// or a LoadBalancer, and the source address stays the client's either way.

// External is the part of a scenario outside the cluster.
type External struct {
	// NamedCIDRs are what the agent is told to call the outside peers (--named-cidr).
	NamedCIDRs []NamedCIDR `json:"namedCIDRs,omitempty"`
	// StandIns maps each public address the scenario's source wrote to the TEST-NET address the
	// lab uses instead: lab traffic never goes to a public address, even inside a namespace.
	StandIns map[netip.Addr]netip.Addr `json:"standIns,omitempty"`
	Cases    []ExternalCase            `json:"cases,omitempty"`
}

// NamedCIDR is one --named-cidr entry.
type NamedCIDR struct {
	Name   string       `json:"name"`
	Prefix netip.Prefix `json:"prefix"`
}

// String is the flag form, "name=CIDR".
func (n NamedCIDR) String() string { return n.Name + "=" + n.Prefix.String() }

// ExternalCase is a traffic check with one end outside the cluster.
type ExternalCase struct {
	Name string `json:"name"`
	Pod  string `json:"pod"` // "namespace/pod", the cluster end
	// Peer is the outside end's lab address; Written is the address the source wrote when the lab
	// substituted a stand-in (StandIns), else empty.
	Peer    netip.Addr `json:"peer"`
	Written string     `json:"written,omitempty"`
	// Inbound: Peer connects to Pod; otherwise Pod connects to Peer.
	Inbound  bool   `json:"inbound,omitempty"`
	Protocol string `json:"protocol"` // TCP or UDP
	Port     int    `json:"port"`
	Allowed  bool   `json:"allowed"`
	// Enforcer is the k8s node whose rules decide the case: the pod's.
	Enforcer string `json:"enforcer"`
}

// extLinkCIDR holds the node<->ext point-to-point links (TEST-NET-2, only inside lab namespaces).
var extLinkCIDR = netip.MustParsePrefix("198.51.100.0/24")

// testNets are the documentation ranges (RFC 5737): safe stand-ins for public addresses.
var testNets = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

// extNetNS is the outside world's namespace name.
func extNetNS(prefix string) string { return prefix + "-ext" }

// extPeerIP is ext's end of node n's link, 198.51.100.(4n-3)/30; extNodeIP is ext0's, 4n-2.
func extPeerIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(4*(n-1) + 1)}) }
func extNodeIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(4*(n-1) + 2)}) }

// outsideAddr resolves an address a scenario file wrote for an outside end: a stand-in when one
// is mapped, the address itself when it is private or TEST-NET, an error when it is public or
// collides with the lab's own ranges.
func outsideAddr(written string, standIns map[netip.Addr]netip.Addr) (netip.Addr, error) {
	a, err := netip.ParseAddr(written)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("outside end %q: not an IP address: %w", written, err)
	}
	if s, ok := standIns[a]; ok {
		a = s
	}
	if err := checkOutside(a); err != nil {
		return netip.Addr{}, fmt.Errorf("outside end %q: %w", written, err)
	}
	return a, nil
}

// checkOutside enforces the safety rule on a lab address for an outside peer.
func checkOutside(a netip.Addr) error {
	if !a.Is4() {
		return fmt.Errorf("%s: only IPv4 outside peers are supported", a)
	}
	for _, own := range []netip.Prefix{clusterCIDR, serviceCIDR, uplinkCIDR, extLinkCIDR} {
		if own.Contains(a) {
			return fmt.Errorf("%s is inside the lab's own range %s", a, own)
		}
	}
	if a.IsPrivate() || slices.ContainsFunc(testNets, func(p netip.Prefix) bool { return p.Contains(a) }) {
		return nil
	}
	return fmt.Errorf("%s is a public address: map it to a TEST-NET stand-in (RFC 5737)", a)
}

// validateExternal checks ext against the scenario's pods.
func validateExternal(s *Scenario) error {
	ext := s.External
	if ext == nil {
		return nil
	}
	pods := map[string]bool{}
	for _, p := range s.Pods {
		pods[p.Key()] = true
	}
	names := map[string]bool{}
	for i, n := range ext.NamedCIDRs {
		if n.Name == "" || strings.ContainsAny(n.Name, " \t/=,") {
			return fmt.Errorf("scenario %q: external.namedCIDRs[%d]: name %q is empty or has a space, '/', '=' or ','", s.Name, i, n.Name)
		}
		if names[n.Name] {
			return fmt.Errorf("scenario %q: external.namedCIDRs[%d]: name %q given twice", s.Name, i, n.Name)
		}
		names[n.Name] = true
		if !n.Prefix.IsValid() {
			return fmt.Errorf("scenario %q: external.namedCIDRs[%d] %q: no prefix", s.Name, i, n.Name)
		}
	}
	for from, to := range ext.StandIns {
		if err := checkOutside(to); err != nil {
			return fmt.Errorf("scenario %q: external stand-in for %s: %w", s.Name, from, err)
		}
	}
	for i, c := range ext.Cases {
		where := fmt.Sprintf("scenario %q: external.cases[%d] %q", s.Name, i, c.Name)
		if !pods[c.Pod] {
			return fmt.Errorf("%s: pod %q is not a pod of the scenario", where, c.Pod)
		}
		if err := checkOutside(c.Peer); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := validatePort(Port{Port: c.Port, Protocol: c.Protocol}); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

// peers lists the distinct outside addresses of the cases.
func (e *External) peers() []netip.Addr {
	var out []netip.Addr
	for _, c := range e.Cases {
		if !slices.Contains(out, c.Peer) {
			out = append(out, c.Peer)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// setupExternalLocked creates <prefix>-ext, puts the peers' addresses on its lo and joins it to
// every node.
func (l *Lab) setupExternalLocked(ctx context.Context) error {
	name := extNetNS(l.prefix)
	if err := l.createNetNS(ctx, name); err != nil {
		return err
	}
	l.extNS = name
	eh, ensh, err := nlHandle(name)
	if err != nil {
		return err
	}
	defer ensh.Close()
	defer eh.Close()
	if err := setUp(eh, "lo"); err != nil {
		return err
	}
	lo, err := eh.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", name, err)
	}
	if l.scenario.External != nil {
		for _, a := range l.scenario.External.peers() {
			if err := eh.AddrAdd(lo, ipNet(a, 32)); err != nil {
				return fmt.Errorf("address %s on lo in %s: %w", a, name, err)
			}
		}
	}
	for _, n := range l.nodes {
		if err := joinExternal(n, eh, ensh, name); err != nil {
			return err
		}
	}
	return nil
}

// joinExternal adds node n's ext0 <-> nodeN pair: the node's default route goes out ext0, ext's
// route to the node's pod /24 comes back over it.
func joinExternal(n *Node, eh *netlink.Handle, ensh netns.NsHandle, extName string) error {
	nh, nnsh, err := nlHandle(n.NetNS)
	if err != nil {
		return err
	}
	defer nnsh.Close()
	defer nh.Close()
	peerName := fmt.Sprintf("node%d", n.index)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "ext0", MTU: uplinkMTU},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(ensh)),
		PeerMTU:       uplinkMTU,
	}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add ext0 between %s and %s: %w", n.NetNS, extName, err)
	}
	ext0, err := nh.LinkByName("ext0")
	if err != nil {
		return fmt.Errorf("find ext0 in %s: %w", n.NetNS, err)
	}
	if err := nh.AddrAdd(ext0, ipNet(extNodeIP(n.index), 30)); err != nil {
		return fmt.Errorf("address ext0 in %s: %w", n.NetNS, err)
	}
	if err := nh.LinkSetUp(ext0); err != nil {
		return fmt.Errorf("set ext0 up in %s: %w", n.NetNS, err)
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: ext0.Attrs().Index, Gw: extPeerIP(n.index).AsSlice()}); err != nil {
		return fmt.Errorf("default route via ext0 in %s: %w", n.NetNS, err)
	}
	peer, err := eh.LinkByName(peerName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", peerName, extName, err)
	}
	if err := eh.AddrAdd(peer, ipNet(extPeerIP(n.index), 30)); err != nil {
		return fmt.Errorf("address %s in %s: %w", peerName, extName, err)
	}
	if err := eh.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up in %s: %w", peerName, extName, err)
	}
	cidr := nodePodCIDR(n.index)
	if err := eh.RouteAdd(&netlink.Route{
		LinkIndex: peer.Attrs().Index,
		Dst:       &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)},
		Gw:        extNodeIP(n.index).AsSlice(),
	}); err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", cidr, peerName, extName, err)
	}
	return nil
}

// ExternalNetNS is the outside world's namespace, or "" when the lab was built without one.
func (l *Lab) ExternalNetNS() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.extNS
}

// ExternalCases are the scenario's cases with an outside end whose pod is in the lab; none when
// the lab has no outside world.
func (l *Lab) ExternalCases() []ExternalCase {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.extNS == "" || l.scenario.External == nil {
		return nil
	}
	var out []ExternalCase
	for _, c := range l.scenario.External.Cases {
		if l.podLocked(c.Pod) != nil {
			out = append(out, c)
		}
	}
	return out
}

// ExternalCase returns the outside case with that name.
func (l *Lab) ExternalCase(name string) (ExternalCase, bool) {
	for _, c := range l.ExternalCases() {
		if c.Name == name {
			return c, true
		}
	}
	return ExternalCase{}, false
}

// NamedCIDRs is the scenario's outside naming as --named-cidr values ("proxmox=10.0.1.10/32").
func (l *Lab) NamedCIDRs() []string {
	if l.scenario.External == nil {
		return nil
	}
	out := make([]string, 0, len(l.scenario.External.NamedCIDRs))
	for _, n := range l.scenario.External.NamedCIDRs {
		out = append(out, n.String())
	}
	return out
}
