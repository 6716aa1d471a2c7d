package scenario

import (
	"bytes"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Synthetic is a large cluster on paper, the node issue 9 sizes the agent
// for: namespaces, pods shaped like a Deployment's (labels, owner, a named
// port) and, per namespace, a default deny plus allow rules selecting apps
// by label from other namespaces' teams. Its pods exist only in the cluster
// file; traffic "from" them is sent with their addresses as the source.
type Synthetic struct {
	Pods, Namespaces, Policies int
	// Base is the first pod address; pods take 250 addresses of each /24
	// from there, so they can be kept clear of a lab's real pods.
	Base netip.Addr
}

// PodIP is the address of synthetic pod i.
func (s Synthetic) PodIP(i int) netip.Addr {
	b := s.Base.As4()
	n := int(b[2])*250 + i
	return netip.AddrFrom4([4]byte{b[0], b[1], byte(n / 250), byte(n%250 + 2)})
}

// YAML renders the cluster (namespaces and pods) and the policies as
// multi-document YAML, as --cluster-file and --policies read them.
func (s Synthetic) YAML() (cluster, policies []byte, err error) {
	var out, pols bytes.Buffer
	add := func(to *bytes.Buffer, o any) {
		if err != nil {
			return
		}
		var raw []byte
		if raw, err = yaml.Marshal(o); err != nil {
			err = fmt.Errorf("rendering synthetic %T: %w", o, err)
			return
		}
		to.WriteString("---\n")
		to.Write(raw)
	}
	for n := range s.Namespaces {
		add(&out, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("ns-%d", n), Labels: map[string]string{"kubernetes.io/metadata.name": fmt.Sprintf("ns-%d", n), "team": fmt.Sprintf("t%d", n%7)}}})
	}
	controller := true
	for i := range s.Pods {
		app := fmt.Sprintf("app-%d", i/5)
		ip := s.PodIP(i).String()
		add(&out, &corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i/5%s.Namespaces), Name: fmt.Sprintf("%s-5d8f-%05d", app, i),
				Labels:          map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "pod-template-hash": "5d8f", "tier": "web"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-5d8f", Controller: &controller}}},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", i%5), Containers: []corev1.Container{{Name: "c",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		})
	}
	for p := range s.Policies {
		ns := fmt.Sprintf("ns-%d", p%s.Namespaces)
		np := &networkingv1.NetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("allow-%d", p)}}
		if p < s.Namespaces {
			np.Name = "default-deny"
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		} else {
			port := intstr.FromString("http")
			np.Spec.PodSelector.MatchLabels = map[string]string{"app.kubernetes.io/name": fmt.Sprintf("app-%d", p)}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", p%7)}},
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16"}}}}}
		}
		add(&pols, np)
	}
	return out.Bytes(), pols.Bytes(), err
}
