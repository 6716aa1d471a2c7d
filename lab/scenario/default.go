package scenario

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DefaultScenario is the issue-2 scenario: a default-deny ingress in demo, one allow rule
// (frontend -> backend on TCP 8080 and UDP 5353), and an egress deny for every pod in other.
// With two nodes, demo/remote (a second backend) and other/remote-client live on node2, so that an
// egress deny is decided on the source node and an ingress deny on the destination node.
func DefaultScenario() *Scenario {
	return &Scenario{
		Name:       "default",
		Namespaces: []string{"demo", "other"},
		Pods:       defaultPods(),
		Services: []ServiceSpec{{
			Namespace: "demo", Name: "backend", ClusterIP: netip.MustParseAddr("10.43.0.20"),
			Ports:    []ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
			Selector: map[string]string{"app": "backend"},
			Backends: []string{"demo/backend", "demo/remote"},
		}},
		Rules: []PolicyRules{
			{Namespace: "demo", Name: "default-deny-ingress", Ingress: true},
			{
				Namespace: "demo", Name: "allow-frontend-to-backend", Ingress: true,
				IngressRules: []RuleSpec{{Ports: []Port{{Port: 8080, Protocol: "TCP"}, {Port: 5353, Protocol: "UDP"}}}},
			},
			{Namespace: "other", Name: "deny-egress", Egress: true},
		},
		Policies: defaultPolicies(),
		Cases:    defaultCases(),
	}
}

func defaultPods() []PodSpec {
	const (
		denyIngress = "demo/default-deny-ingress"
		allowFE     = "demo/allow-frontend-to-backend"
		denyEgress  = "other/deny-egress"
	)
	http := Port{Name: "http", Port: 8080, Protocol: "TCP"}
	dns := Port{Name: "mdns", Port: 5353, Protocol: "UDP"}
	metrics := Port{Port: 9090, Protocol: "TCP"}
	return []PodSpec{
		{
			Namespace: "demo", Name: "frontend", Node: 1, IP: netip.MustParseAddr("10.42.0.10"),
			Labels:   map[string]string{"app": "frontend"},
			Ports:    []Port{http},
			Owner:    Owner{Kind: "ReplicaSet", Name: "frontend-7c9d6b5f4d"},
			TargetOf: []string{denyIngress},
			PeerOf:   []string{allowFE + "/ingress/0"},
		},
		{
			Namespace: "demo", Name: "backend", Node: 1, IP: netip.MustParseAddr("10.42.0.11"),
			Labels:   map[string]string{"app": "backend"},
			Ports:    []Port{http, dns},
			Listen:   []Port{metrics},
			Owner:    Owner{Kind: "ReplicaSet", Name: "backend-5f8b9c7d6e"},
			TargetOf: []string{denyIngress, allowFE},
		},
		{
			Namespace: "demo", Name: "db", Node: 1, IP: netip.MustParseAddr("10.42.0.12"),
			Labels:   map[string]string{"app": "db"},
			Ports:    []Port{{Name: "sql", Port: 8080, Protocol: "TCP"}},
			Owner:    Owner{Kind: "StatefulSet", Name: "db"},
			TargetOf: []string{denyIngress},
		},
		{
			Namespace: "other", Name: "outsider", Node: 1, IP: netip.MustParseAddr("10.42.0.20"),
			Labels:   map[string]string{"app": "frontend"},
			Ports:    []Port{http},
			Owner:    Owner{Kind: "ReplicaSet", Name: "outsider-6b7c8d9e5f"},
			TargetOf: []string{denyEgress},
		},
		{
			Namespace: "demo", Name: "remote", Node: 2, IP: netip.MustParseAddr("10.42.1.10"),
			Labels:   map[string]string{"app": "backend"},
			Ports:    []Port{http, dns},
			Listen:   []Port{metrics},
			Owner:    Owner{Kind: "ReplicaSet", Name: "remote-84d5c6f7b9"},
			TargetOf: []string{denyIngress, allowFE},
		},
		{
			Namespace: "other", Name: "remote-client", Node: 2, IP: netip.MustParseAddr("10.42.1.11"),
			Labels:   map[string]string{"app": "client"},
			Owner:    Owner{Kind: "ReplicaSet", Name: "remote-client-9f6d7c8b5a"},
			TargetOf: []string{denyEgress},
		},
	}
}

func defaultPolicies() []networkingv1.NetworkPolicy {
	return []networkingv1.NetworkPolicy{
		netpol("demo", "default-deny-ingress", metav1.LabelSelector{},
			[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, nil, nil),
		netpol("demo", "allow-frontend-to-backend",
			metav1.LabelSelector{MatchLabels: map[string]string{"app": "backend"}},
			[]networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			[]networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, 8080), npPort(corev1.ProtocolUDP, 5353)},
			}}, nil),
		netpol("other", "deny-egress", metav1.LabelSelector{},
			[]networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, nil, nil),
	}
}

func defaultCases() []Case {
	return []Case{
		{Name: "allowed-tcp", From: "demo/frontend", To: "demo/backend", Protocol: "TCP", Port: 8080, Allowed: true, Enforcer: "node1"},
		{Name: "ingress-port-not-allowed", From: "demo/frontend", To: "demo/backend", Protocol: "TCP", Port: 9090, Enforcer: "node1"},
		{Name: "default-deny-ingress", From: "demo/frontend", To: "demo/db", Protocol: "TCP", Port: 8080, Enforcer: "node1"},
		{Name: "egress-deny", From: "other/outsider", To: "demo/backend", Protocol: "TCP", Port: 8080, Enforcer: "node1"},
		{Name: "udp-burst", From: "demo/frontend", To: "demo/backend", Protocol: "UDP", Port: 5353, Count: 10, Allowed: true, Enforcer: "node1"},
		{Name: "service-clusterip", From: "demo/frontend", Service: "demo/backend", Protocol: "TCP", Port: 80, Allowed: true, Enforcer: "node1"},
		{Name: "cross-node-allowed", From: "demo/frontend", To: "demo/remote", Protocol: "TCP", Port: 8080, Allowed: true, Enforcer: "node2", MinNodes: 2},
		{Name: "cross-node-egress-deny", From: "other/remote-client", To: "demo/backend", Protocol: "TCP", Port: 8080, Enforcer: "node2", MinNodes: 2},
		{Name: "cross-node-ingress-deny", From: "demo/remote", To: "demo/db", Protocol: "TCP", Port: 8080, Enforcer: "node1", MinNodes: 2},
	}
}

func netpol(ns, name string, sel metav1.LabelSelector, types []networkingv1.PolicyType,
	ingress []networkingv1.NetworkPolicyIngressRule, egress []networkingv1.NetworkPolicyEgressRule,
) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: sel, PolicyTypes: types, Ingress: ingress, Egress: egress,
		},
	}
}

func npPort(proto corev1.Protocol, port int) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}
