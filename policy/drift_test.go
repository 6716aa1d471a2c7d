package policy

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Two specs digest alike exactly when reflect.DeepEqual, once defaulted,
// calls them equal (what Diff compared before it kept digests): nil and
// empty differ, map order does not, defaulting does not.
func TestDigestsAgreeWithDeepEqual(t *testing.T) {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	p80, pHTTP, end := intstr.FromInt32(80), intstr.FromString("http"), int32(90)
	specs := map[string]networkingv1.NetworkPolicySpec{
		"empty":                {},
		"ingress type":         {PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		"both types":           {PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
		"empty match labels":   {PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{}}},
		"labels a":             {PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"a": "1", "b": "2"}}},
		"labels a again":       {PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"b": "2", "a": "1"}}},
		"labels ab":            {PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"a": "12"}}},
		"labels split":         {PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"a": "1", "b": ""}}},
		"expression":           {PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpIn, Values: []string{"x"}}}}},
		"expression no values": {PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpExists}}}},
		"expression []values":  {PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpExists, Values: []string{}}}}},
		"allow all in":         {Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
		"allow all in, empty":  {Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{}, Ports: []networkingv1.NetworkPolicyPort{}}}},
		"port 80":              {Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &p80}}}}},
		"port 80 tcp":          {Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &p80, Protocol: &tcp}}}}},
		"port 80 udp":          {Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &p80, Protocol: &udp}}}}},
		"port 80-90":           {Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &p80, EndPort: &end}}}}},
		"port http":            {Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &pHTTP}}}}},
		"any port":             {Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{}}}}},
		"ns peer":              {Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}}}},
		"pod peer":             {Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}},
		"block":                {Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}}}},
		"block, empty except":  {Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{}}}}}}},
		"block except":         {Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}}}},
		"egress, types":        {PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}}}},
	}
	equalPairs := 0
	for an, a := range specs {
		for bn, b := range specs {
			pa := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "p"}, Spec: a}
			pb := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "p", ResourceVersion: "7"}, Spec: b}
			want := reflect.DeepEqual(normalize(&pa.Spec), normalize(&pb.Spec))
			got := Digests([]networkingv1.NetworkPolicy{pa})["n/p"] == Digests([]networkingv1.NetworkPolicy{pb})["n/p"]
			assert.Equal(t, want, got, "%s vs %s", an, bn)
			if want && an != bn {
				equalPairs++
			}
		}
	}
	assert.Positive(t, equalPairs, "some different-looking specs are equal once defaulted")
}
