package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// Bridge is a bare K3s-like node: one node namespace with cni0 (br_netfilter on) and pods on
// veths, with no rules, scenario or enforcer. The bpf and e2e tests and benchmarks build it
// when they need a datapath and nothing else.
type Bridge struct {
	Node *Node
	Pods []*Pod
	all  []string // namespaces created, in creation order
}

// NewBridge builds <prefix>-node1 and pods <prefix>-p<i> at 10.42.0.(10+i). On error it removes
// what it created.
func NewBridge(ctx context.Context, prefix string, pods int) (_ *Bridge, err error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	b := &Bridge{Node: &Node{Name: NodeName(1), NetNS: NodeNetNS(prefix, 1), PodCIDR: NodePodCIDR(1), IP: NodeIP(1), Index: 1}}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Close())
		}
	}()
	if err := b.add(ctx, b.Node.NetNS); err != nil {
		return nil, err
	}
	if err := SetupNode(b.Node); err != nil {
		return nil, err
	}
	for range pods {
		if _, err := b.AddPod(ctx); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *Bridge) add(ctx context.Context, name string) error {
	if err := Add(ctx, name); err != nil {
		return err
	}
	b.all = append(b.all, name)
	return nil
}

// AddPod adds one more pod, at the next address.
func (b *Bridge) AddPod(ctx context.Context) (*Pod, error) {
	i := len(b.Pods)
	base := NodePodCIDR(1).Addr().As4()
	p := &Pod{
		Namespace: "default", Name: fmt.Sprintf("p%d", i), Node: b.Node.Name,
		IP:    netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(FirstPodIP + i)}),
		NetNS: fmt.Sprintf("%s-p%d", b.Node.NetNS[:len(b.Node.NetNS)-len("-node1")], i),
	}
	if err := b.add(ctx, p.NetNS); err != nil {
		return nil, err
	}
	if err := AddPodLinks(b.Node, p); err != nil {
		return nil, err
	}
	b.Pods = append(b.Pods, p)
	return p, nil
}

// Close removes every namespace the bridge created. It is idempotent.
func (b *Bridge) Close() error {
	// A fresh context: cleanup must run even when the caller's is done.
	ctx := context.Background()
	var errs []error
	for i := len(b.all) - 1; i >= 0; i-- {
		if err := Del(ctx, b.all[i]); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", b.all[i], err))
		}
	}
	b.all = nil
	return errors.Join(errs...)
}
