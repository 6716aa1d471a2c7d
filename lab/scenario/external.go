package scenario

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/flowlens/flowlens/lab/netns"
)

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

// testNets are the documentation ranges (RFC 5737): safe stand-ins for public addresses.
var testNets = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

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
	for _, own := range []netip.Prefix{netns.ClusterCIDR, netns.ServiceCIDR, netns.UplinkCIDR, netns.ExtLinkCIDR} {
		if own.Contains(a) {
			return fmt.Errorf("%s is inside the lab's own range %s", a, own)
		}
	}
	if a.IsPrivate() || slices.ContainsFunc(testNets, func(p netip.Prefix) bool { return p.Contains(a) }) {
		return nil
	}
	return fmt.Errorf("%s is a public address: map it to a TEST-NET stand-in (RFC 5737)", a)
}

// ValidateExternal checks the outside world against the scenario's pods.
func (s *Scenario) ValidateExternal() error {
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

// Peers lists the distinct outside addresses of the cases.
func (e *External) Peers() []netip.Addr {
	var out []netip.Addr
	for _, c := range e.Cases {
		if !slices.Contains(out, c.Peer) {
			out = append(out, c.Peer)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
