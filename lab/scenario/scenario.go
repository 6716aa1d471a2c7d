package scenario

import (
	"fmt"
	"github.com/flowlens/flowlens/lab/netns"
	"net/netip"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// Scenario is a small cluster: its pods, services, and its NetworkPolicy intent written twice by
// hand, once as kube-router's view (Rules plus each pod's TargetOf/PeerOf memberships) and once as
// real NetworkPolicy objects (Policies). The lab enforces Rules; Policies is what flowlens reads.
type Scenario struct {
	Name       string                       `json:"name"`
	Namespaces []string                     `json:"namespaces"`
	Pods       []PodSpec                    `json:"pods"`
	Services   []ServiceSpec                `json:"services,omitempty"`
	Rules      []PolicyRules                `json:"rules,omitempty"`
	Policies   []networkingv1.NetworkPolicy `json:"policies,omitempty"`
	Cases      []Case                       `json:"cases,omitempty"`
	// External is the world outside the cluster (external.go), used when Config.External is set.
	External *External `json:"external,omitempty"`
}

// PodSpec describes one pod. Memberships (TargetOf, PeerOf) are written by hand: they are the
// answer kube-router's selector evaluation would give, so the lab needs no policy engine.
type PodSpec struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Node      int               `json:"node"`        // 1 or 2; pods of node 2 are left out of a one-node lab
	IP        netip.Addr        `json:"ip,omitzero"` // zero: the next free address from .10 of the node's /24
	Labels    map[string]string `json:"labels,omitempty"`
	Ports     []Port            `json:"ports,omitempty"`  // containerPorts; traffic servers listen on each
	Listen    []Port            `json:"listen,omitempty"` // extra ports served but not declared (e.g. 9090)
	Owner     Owner             `json:"owner,omitzero"`
	// TargetOf lists "namespace/policy" for every policy selecting this pod.
	TargetOf []string `json:"targetOf,omitempty"`
	// PeerOf lists "namespace/policy/ingress/N" or ".../egress/N": the rules whose from/to peers
	// include this pod.
	PeerOf []string `json:"peerOf,omitempty"`
}

// Key is "namespace/name".
func (p PodSpec) Key() string { return p.Namespace + "/" + p.Name }

// Port is a container or rule port. Protocol is "TCP" or "UDP".
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// Owner is the pod's controller, for the ownerReference in the cluster YAML.
type Owner struct {
	Kind string `json:"kind,omitempty"` // ReplicaSet, StatefulSet, DaemonSet
	Name string `json:"name,omitempty"`
}

// ServiceSpec is a ClusterIP service. Backends is written by hand ("namespace/pod"), like the
// memberships, rather than evaluated from Selector.
type ServiceSpec struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	ClusterIP netip.Addr        `json:"clusterIP"`
	Ports     []ServicePort     `json:"ports"`
	Selector  map[string]string `json:"selector,omitempty"`
	Backends  []string          `json:"backends"`
}

// ServicePort maps the service's Port to the backends' TargetPort.
type ServicePort struct {
	Name       string `json:"name"`
	Port       int    `json:"port"`
	TargetPort int    `json:"targetPort"`
	Protocol   string `json:"protocol"`
}

// PolicyRules is kube-router's view of one NetworkPolicy: which directions it isolates and its
// allow rules in order (rule N's peers are the pods whose PeerOf names it).
type PolicyRules struct {
	Namespace    string     `json:"namespace"`
	Name         string     `json:"name"`
	Ingress      bool       `json:"ingress"`
	Egress       bool       `json:"egress"`
	IngressRules []RuleSpec `json:"ingressRules,omitempty"`
	EgressRules  []RuleSpec `json:"egressRules,omitempty"`
}

// Key is "namespace/name".
func (p PolicyRules) Key() string { return p.Namespace + "/" + p.Name }

// RuleSpec is one allow rule. AnyPeer means the rule has no from/to (all sources/destinations);
// no Ports means all ports.
type RuleSpec struct {
	AnyPeer bool   `json:"anyPeer,omitempty"`
	Ports   []Port `json:"ports,omitempty"`
}

// Case is one traffic check the scenario is built for.
type Case struct {
	Name     string `json:"name"`
	From     string `json:"from"`              // "namespace/pod"
	To       string `json:"to,omitempty"`      // "namespace/pod"
	Service  string `json:"service,omitempty"` // "namespace/service", instead of To
	Protocol string `json:"protocol"`          // TCP or UDP
	Port     int    `json:"port"`
	Count    int    `json:"count,omitempty"` // UDP datagrams per attempt
	Allowed  bool   `json:"allowed"`
	// Enforcer is the k8s node whose rules decide the case (egress: source node, ingress:
	// destination node).
	Enforcer string `json:"enforcer"`
	MinNodes int    `json:"minNodes,omitempty"`
}

// WithNodes returns a copy of s restricted to a lab of n nodes: pods on other nodes, cases that
// need more nodes, and backends that are gone are left out.
func (s *Scenario) WithNodes(n int) *Scenario {
	out := *s
	out.Pods = nil
	present := map[string]bool{}
	for _, p := range s.Pods {
		if p.Node <= n {
			out.Pods = append(out.Pods, p)
			present[p.Key()] = true
		}
	}
	out.Services = nil
	for _, svc := range s.Services {
		svc.Backends = filterKeys(svc.Backends, present)
		out.Services = append(out.Services, svc)
	}
	out.Cases = nil
	for _, c := range s.Cases {
		if c.MinNodes <= n && present[c.From] && (c.To == "" || present[c.To]) {
			out.Cases = append(out.Cases, c)
		}
	}
	return &out
}

func filterKeys(keys []string, keep map[string]bool) []string {
	var out []string
	for _, k := range keys {
		if keep[k] {
			out = append(out, k)
		}
	}
	return out
}

// Validate checks every reference in the scenario and names the first problem it finds.
func (s *Scenario) Validate(nodes int) error {
	if s == nil {
		return fmt.Errorf("scenario is nil")
	}
	nsSet := map[string]bool{}
	for _, ns := range s.Namespaces {
		if !dnsLabel(ns) {
			return fmt.Errorf("scenario %q: namespace %q is not a DNS label", s.Name, ns)
		}
		nsSet[ns] = true
	}
	rules := map[string]PolicyRules{}
	for i, r := range s.Rules {
		if !nsSet[r.Namespace] {
			return fmt.Errorf("scenario %q: rules[%d] %s: unknown namespace", s.Name, i, r.Key())
		}
		if !r.Ingress && !r.Egress {
			return fmt.Errorf("scenario %q: rules[%d] %s: neither ingress nor egress", s.Name, i, r.Key())
		}
		if _, dup := rules[r.Key()]; dup {
			return fmt.Errorf("scenario %q: rules[%d] %s: duplicate", s.Name, i, r.Key())
		}
		for _, rs := range append(append([]RuleSpec{}, r.IngressRules...), r.EgressRules...) {
			for _, p := range rs.Ports {
				if err := validatePort(p); err != nil {
					return fmt.Errorf("scenario %q: rules %s: %w", s.Name, r.Key(), err)
				}
			}
		}
		rules[r.Key()] = r
	}
	pods := map[string]bool{}
	ips := map[netip.Addr]string{}
	for i, p := range s.Pods {
		where := fmt.Sprintf("scenario %q: pods[%d] %s", s.Name, i, p.Key())
		if !nsSet[p.Namespace] {
			return fmt.Errorf("%s: unknown namespace %q", where, p.Namespace)
		}
		if !dnsLabel(p.Name) {
			return fmt.Errorf("%s: name is not a DNS label", where)
		}
		if pods[p.Key()] {
			return fmt.Errorf("%s: duplicate pod", where)
		}
		pods[p.Key()] = true
		if p.Node < 1 || p.Node > 2 {
			return fmt.Errorf("%s: node %d, want 1 or 2", where, p.Node)
		}
		if p.IP.IsValid() {
			if p.Node <= nodes && !netns.NodePodCIDR(p.Node).Contains(p.IP) {
				return fmt.Errorf("%s: ip %s outside node%d's %s", where, p.IP, p.Node, netns.NodePodCIDR(p.Node))
			}
			if other, dup := ips[p.IP]; dup {
				return fmt.Errorf("%s: ip %s already used by %s", where, p.IP, other)
			}
			ips[p.IP] = p.Key()
		}
		for _, port := range append(append([]Port{}, p.Ports...), p.Listen...) {
			if err := validatePort(port); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		if err := validateMemberships(p, rules); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return s.validateTraffic(pods)
}

// validateTraffic checks the services and cases against the scenario's pods.
func (s *Scenario) validateTraffic(pods map[string]bool) error {
	nsSet := map[string]bool{}
	for _, ns := range s.Namespaces {
		nsSet[ns] = true
	}
	for i, svc := range s.Services {
		where := fmt.Sprintf("scenario %q: services[%d] %s/%s", s.Name, i, svc.Namespace, svc.Name)
		if !nsSet[svc.Namespace] {
			return fmt.Errorf("%s: unknown namespace", where)
		}
		if !netns.ServiceCIDR.Contains(svc.ClusterIP) {
			return fmt.Errorf("%s: clusterIP %s outside %s", where, svc.ClusterIP, netns.ServiceCIDR)
		}
		if len(svc.Ports) == 0 {
			return fmt.Errorf("%s: no ports", where)
		}
		for _, sp := range svc.Ports {
			if err := validatePort(Port{Port: sp.Port, Protocol: sp.Protocol}); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if sp.Name == "" || sp.TargetPort < 1 || sp.TargetPort > 65535 {
				return fmt.Errorf("%s: port %d needs a name and a targetPort in 1-65535", where, sp.Port)
			}
		}
		for _, b := range svc.Backends {
			if !pods[b] {
				return fmt.Errorf("%s: backend %q is not a pod of the scenario", where, b)
			}
		}
	}
	for i, c := range s.Cases {
		where := fmt.Sprintf("scenario %q: cases[%d] %q", s.Name, i, c.Name)
		if !pods[c.From] {
			return fmt.Errorf("%s: from %q is not a pod", where, c.From)
		}
		if (c.To == "") == (c.Service == "") {
			return fmt.Errorf("%s: want exactly one of to and service", where)
		}
		if c.To != "" && !pods[c.To] {
			return fmt.Errorf("%s: to %q is not a pod", where, c.To)
		}
		if err := validatePort(Port{Port: c.Port, Protocol: c.Protocol}); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

func validateMemberships(p PodSpec, rules map[string]PolicyRules) error {
	for _, t := range p.TargetOf {
		r, ok := rules[t]
		if !ok {
			return fmt.Errorf("targetOf %q: no such policy rules", t)
		}
		if r.Namespace != p.Namespace {
			return fmt.Errorf("targetOf %q: a policy selects pods of its own namespace only", t)
		}
	}
	for _, ref := range p.PeerOf {
		parts := strings.Split(ref, "/")
		if len(parts) != 4 {
			return fmt.Errorf("peerOf %q: want namespace/policy/ingress|egress/N", ref)
		}
		r, ok := rules[parts[0]+"/"+parts[1]]
		if !ok {
			return fmt.Errorf("peerOf %q: no such policy rules", ref)
		}
		var idx int
		if _, err := fmt.Sscanf(parts[3], "%d", &idx); err != nil {
			return fmt.Errorf("peerOf %q: rule index: %w", ref, err)
		}
		var list []RuleSpec
		switch parts[2] {
		case "ingress":
			list = r.IngressRules
		case "egress":
			list = r.EgressRules
		default:
			return fmt.Errorf("peerOf %q: direction %q, want ingress or egress", ref, parts[2])
		}
		if idx < 0 || idx >= len(list) {
			return fmt.Errorf("peerOf %q: policy has %d %s rules", ref, len(list), parts[2])
		}
		if list[idx].AnyPeer {
			return fmt.Errorf("peerOf %q: that rule allows any peer", ref)
		}
	}
	return nil
}

func validatePort(p Port) error {
	if p.Protocol != "TCP" && p.Protocol != "UDP" {
		return fmt.Errorf("port %d: protocol %q, want TCP or UDP", p.Port, p.Protocol)
	}
	if p.Port < 1 || p.Port > 65535 {
		return fmt.Errorf("port %d out of range", p.Port)
	}
	return nil
}

func dnsLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1
		if !ok {
			return false
		}
	}
	return true
}

// Case returns the case with that name.
func (s *Scenario) Case(name string) (Case, bool) {
	for _, c := range s.Cases {
		if c.Name == name {
			return c, true
		}
	}
	return Case{}, false
}
