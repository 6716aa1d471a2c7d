package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Addresses. The lab segment is TEST-NET-1 (as lab/ uses for node uplinks): it exists only inside
// lab namespaces. The control plane sits at .254 on a bridge in its own namespace; node N is .N.
var (
	segment     = netip.MustParsePrefix("192.0.2.0/24")
	apiserverIP = netip.MustParseAddr("192.0.2.254")
	clusterCIDR = netip.MustParsePrefix("10.42.0.0/16")
	serviceCIDR = netip.MustParsePrefix("10.43.0.0/16")
	kubeSvcIP   = netip.MustParseAddr("10.43.0.1") // the kubernetes Service, first of serviceCIDR
)

const (
	netnsDir  = "/run/netns"
	podMTU    = 1450 // as FLANNEL_MTU on K3s
	apiPort   = 6443
	segBridge = "lab0"
)

func nodeIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}) }

// nodePodCIDR is node n's /24: node1 10.42.0.0/24, node2 10.42.1.0/24 (K3s's allocation order).
func nodePodCIDR(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(n - 1), 0}), 24)
}

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

func addNetNS(ctx context.Context, name string) error {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("create netns %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func delNetNS(ctx context.Context, name string) error {
	if _, err := os.Stat(netnsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("delete netns %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// handleIn opens a netlink handle in the named namespace; close releases both.
func handleIn(name string) (*netlink.Handle, func(), error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	return h, func() { h.Close(); ns.Close() }, nil
}

func addr(a netip.Addr, bits int) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// setupControlPlaneNet gives the control-plane namespace lo and the segment bridge with the
// apiserver's address.
func setupControlPlaneNet(cp string) error {
	h, closeFn, err := handleIn(cp)
	if err != nil {
		return err
	}
	defer closeFn()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo in %s: %w", cp, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up in %s: %w", cp, err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: segBridge}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add %s in %s: %w", segBridge, cp, err)
	}
	if err := h.AddrAdd(br, addr(apiserverIP, segment.Bits())); err != nil {
		return fmt.Errorf("address %s: %w", segBridge, err)
	}
	return h.LinkSetUp(br)
}

// attachNode joins node namespace nodeNS (node n) to the segment: eth0 with the node's IP, a
// default route via the control plane, and in the control plane a route to the node's pod CIDR
// (pod to ClusterIP 10.43.0.1 is DNATed to the apiserver without masquerade).
func attachNode(cp, nodeNS string, n int) error {
	h, closeFn, err := handleIn(cp)
	if err != nil {
		return err
	}
	defer closeFn()
	nh, nclose, err := handleIn(nodeNS)
	if err != nil {
		return err
	}
	defer nclose()
	nsh, err := netns.GetFromName(nodeNS)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nodeNS, err)
	}
	defer nsh.Close()
	port := fmt.Sprintf("node%d", n)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(nsh))}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("add uplink of %s: %w", nodeNS, err)
	}
	br, err := h.LinkByName(segBridge)
	if err != nil {
		return fmt.Errorf("find %s: %w", segBridge, err)
	}
	hostSide, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s: %w", port, err)
	}
	if err := h.LinkSetMaster(hostSide, br); err != nil {
		return fmt.Errorf("enslave %s: %w", port, err)
	}
	if err := h.LinkSetUp(hostSide); err != nil {
		return fmt.Errorf("set %s up: %w", port, err)
	}
	if err := h.RouteAdd(&netlink.Route{Dst: prefixNet(nodePodCIDR(n)), Gw: nodeIP(n).AsSlice()}); err != nil {
		return fmt.Errorf("route to %s: %w", nodePodCIDR(n), err)
	}
	for _, name := range []string{"lo", "eth0"} {
		l, err := nh.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", name, nodeNS, err)
		}
		if name == "eth0" {
			if err := nh.AddrAdd(l, addr(nodeIP(n), segment.Bits())); err != nil {
				return fmt.Errorf("address eth0 in %s: %w", nodeNS, err)
			}
		}
		if err := nh.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up in %s: %w", name, nodeNS, err)
		}
	}
	if err := nh.RouteAdd(&netlink.Route{Gw: apiserverIP.AsSlice()}); err != nil {
		return fmt.Errorf("default route in %s: %w", nodeNS, err)
	}
	_, err = nsExec(context.Background(), nodeNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return err
}

// nsExec runs argv inside the namespace file with nsenter --net and returns its output.
func nsExec(ctx context.Context, ns string, argv ...string) (string, error) {
	full := append([]string{"--net=" + netnsPath(ns), "--"}, argv...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// onThreadIn runs fn on a locked OS thread switched into target. If switching back fails the
// thread stays locked, so the runtime retires it rather than reuse it in the wrong namespace.
func onThreadIn(target netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("leave netns: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}
