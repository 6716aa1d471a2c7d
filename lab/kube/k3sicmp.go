package kube

import (
	"context"
	"fmt"
	"net/netip"

	labnetns "github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/rules"
)

// AcceptK3sICMP gives every node K3s >= 1.33's ICMP accepts (echo request, destination
// unreachable, time exceeded before any policy; rules.K3sICMP), as the netns lab's
// --k3s-icmp does. Call it before StartKubeRouter: kube-router's first sync then keeps the
// accepts ahead of its pod chains.
func (c *Cluster) AcceptK3sICMP(ctx context.Context) error {
	for _, n := range c.Nodes() {
		cidr, err := netip.ParsePrefix(n.PodCIDR)
		if err != nil {
			return fmt.Errorf("K3s ICMP rules on %s: pod CIDR: %w", n.Name, err)
		}
		if _, err := labnetns.Run(ctx, n.NetNS, rules.K3sICMP(cidr), "iptables-restore", "--noflush"); err != nil {
			return fmt.Errorf("K3s ICMP rules on %s: %w", n.Name, err)
		}
	}
	return nil
}
