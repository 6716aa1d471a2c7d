package lab

import (
	"context"
	"net/netip"

	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/outside"
	"github.com/flowlens/flowlens/lab/scenario"
)

// setupExternalLocked creates <prefix>-ext and builds the outside world in it (lab/outside).
func (l *Lab) setupExternalLocked(ctx context.Context) error {
	name := netns.ExtNetNS(l.prefix)
	if err := l.createNetNS(ctx, name); err != nil {
		return err
	}
	l.extNS = name
	var peers []netip.Addr
	if l.scenario.External != nil {
		peers = l.scenario.External.Peers()
	}
	return outside.Build(name, peers, l.nodes)
}

// ExternalNetNS is the outside world's namespace, or "" when the lab was built without one.
func (l *Lab) ExternalNetNS() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.extNS
}

// ExternalCases are the scenario's cases with an outside end whose pod is in the lab; none when
// the lab has no outside world.
func (l *Lab) ExternalCases() []scenario.ExternalCase {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.extNS == "" || l.scenario.External == nil {
		return nil
	}
	var out []scenario.ExternalCase
	for _, c := range l.scenario.External.Cases {
		if l.podLocked(c.Pod) != nil {
			out = append(out, c)
		}
	}
	return out
}

// ExternalCase returns the outside case with that name.
func (l *Lab) ExternalCase(name string) (scenario.ExternalCase, bool) {
	for _, c := range l.ExternalCases() {
		if c.Name == name {
			return c, true
		}
	}
	return scenario.ExternalCase{}, false
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
