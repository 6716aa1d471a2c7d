// Package synth generates a synthetic cluster, policy set and queries for
// benchmarks: mixed selectors (matchLabels and every matchExpressions
// operator, namespace and pod selectors alone and combined), ipBlocks with
// except, numeric, named and endPort ports, ingress and egress.
package synth

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Config sizes the generated data.
type Config struct {
	Namespaces, Pods, Policies int
	Seed                       uint64
}

// Cluster is a generated state and policy set.
type Cluster struct {
	Namespaces []corev1.Namespace
	Pods       []corev1.Pod
	Policies   []networkingv1.NetworkPolicy
}

// Generate builds Pods/Namespaces pods per namespace and Policies/Namespaces
// policies per namespace, deterministically from Seed.
func Generate(cfg Config) *Cluster {
	r := rand.New(rand.NewPCG(cfg.Seed, 1))
	c := &Cluster{}
	perNs := cfg.Pods / cfg.Namespaces
	polPerNs := cfg.Policies / cfg.Namespaces
	k := 0
	for n := range cfg.Namespaces {
		ns := fmt.Sprintf("ns-%02d", n)
		c.Namespaces = append(c.Namespaces, corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": fmt.Sprintf("t%d", n%5), "env": []string{"prod", "dev"}[n%2]}},
		})
		for j := range perNs {
			c.Pods = append(c.Pods, corev1.Pod{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%03d", j), Namespace: ns, Labels: map[string]string{
					"app": fmt.Sprintf("app-%d", j%10), "tier": []string{"front", "back", "db"}[j%3], "version": fmt.Sprintf("v%d", j%2),
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: int32(8080 + j%2)},
					{Name: "metrics", ContainerPort: 9090},
					{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
				}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: PodIP(k).String()},
			})
			k++
		}
		for p := range polPerNs {
			c.Policies = append(c.Policies, policy(r, ns, p, cfg.Namespaces))
		}
	}
	return c
}

// PodIP is the address of the k-th generated pod.
func PodIP(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 42, byte(k / 250), byte(k%250 + 1)})
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func tcp(p int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	proto := corev1.ProtocolTCP
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func named(n string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(n)
	return networkingv1.NetworkPolicyPort{Port: &v}
}

func policy(r *rand.Rand, ns string, i, nss int) networkingv1.NetworkPolicy {
	app := func() string { return fmt.Sprintf("app-%d", r.IntN(10)) }
	np := networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%02d", i), Namespace: ns},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *sel("app", app())},
	}
	ingress, egress := networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress
	s := &np.Spec
	switch i % 10 {
	case 0:
		s.PodSelector = metav1.LabelSelector{}
		s.PolicyTypes = []networkingv1.PolicyType{ingress}
	case 1:
		s.PodSelector = metav1.LabelSelector{}
		s.PolicyTypes = []networkingv1.PolicyType{egress}
	case 2:
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", app())}},
			Ports: []networkingv1.NetworkPolicyPort{tcp(8080)},
		}}
	case 3:
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", fmt.Sprintf("t%d", r.IntN(5))), PodSelector: sel("tier", "front")}},
			Ports: []networkingv1.NetworkPolicyPort{named("http")},
		}}
	case 4:
		end := int32(9100)
		p := tcp(9000)
		p.EndPort = &end
		s.PolicyTypes = []networkingv1.PolicyType{egress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod"}}}}}},
			Ports: []networkingv1.NetworkPolicyPort{p, named("metrics")},
		}}
	case 5:
		s.PolicyTypes = []networkingv1.PolicyType{egress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "192.168.0.0/16"}}}},
			Ports: []networkingv1.NetworkPolicyPort{tcp(443), tcp(80)},
		}}
	case 6:
		udp := corev1.ProtocolUDP
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16", Except: []string{fmt.Sprintf("10.42.%d.0/24", r.IntN(20))}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp}},
		}}
	case 7:
		s.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}}
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{},
				PodSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{app(), app()}}, {Key: "version", Operator: metav1.LabelSelectorOpExists}}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{named("metrics")},
		}}
	case 8:
		s.PolicyTypes = []networkingv1.PolicyType{ingress, egress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "legacy", Operator: metav1.LabelSelectorOpDoesNotExist}}}}}}}
	case 9:
		s.PolicyTypes = []networkingv1.PolicyType{egress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: sel("kubernetes.io/metadata.name", fmt.Sprintf("ns-%02d", r.IntN(nss))), PodSelector: sel("app", app())},
				{NamespaceSelector: sel("team", fmt.Sprintf("t%d", r.IntN(5)))},
			},
			Ports: []networkingv1.NetworkPolicyPort{tcp(8080), named("http")},
		}}
	}
	return np
}

// Query is a generated query: endpoints as "ns/pod" or an IP.
type Query struct {
	Src, Dst string
	Port     uint16
	Protocol string
}

// Queries returns n queries over the cluster: mostly pod to pod, some to
// and from outside addresses, endpoints named either way.
func Queries(c *Cluster, n int, seed uint64) []Query {
	r := rand.New(rand.NewPCG(seed, 2))
	ports := []uint16{8080, 8081, 9090, 9050, 443, 80, 53, 5432}
	outside := []string{"8.8.8.8", "1.1.1.1", "192.168.1.10", "10.0.40.10"}
	end := func() string {
		switch x := r.IntN(20); {
		case x == 0:
			return outside[r.IntN(len(outside))]
		case x < 10:
			p := &c.Pods[r.IntN(len(c.Pods))]
			return p.Namespace + "/" + p.Name
		default:
			return c.Pods[r.IntN(len(c.Pods))].Status.PodIP
		}
	}
	out := make([]Query, n)
	for i := range out {
		q := Query{Src: end(), Dst: end(), Port: ports[r.IntN(len(ports))], Protocol: "TCP"}
		if q.Port == 53 || r.IntN(10) == 0 {
			q.Protocol = "UDP"
		}
		out[i] = q
	}
	return out
}
