package scenario

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/flowlens/flowlens/lab/netns"
	"io"
	"os"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// ClusterObjects builds the Kubernetes objects for the lab's cluster state, in a stable order:
// Namespaces, Nodes, Pods, Services, EndpointSlices.
func ClusterObjects(prefix string, sc *Scenario, nodes []*netns.Node, pods []*Pod) []any {
	var objs []any
	for _, ns := range sc.Namespaces {
		objs = append(objs, &corev1.Namespace{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{
				Name: ns, UID: uid(prefix, "ns", ns),
				Labels: map[string]string{"kubernetes.io/metadata.name": ns},
			},
			Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		})
	}
	nodeByName := map[string]*netns.Node{}
	for _, n := range nodes {
		nodeByName[n.Name] = n
		objs = append(objs, &corev1.Node{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{
				Name: n.Name, UID: uid(prefix, "node", n.Name),
				Labels: map[string]string{
					"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux",
					"node-role.kubernetes.io/control-plane": "true",
				},
				Annotations: nodeAnnotations(n),
			},
			Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
			Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: n.IP.String()},
					{Type: corev1.NodeHostName, Address: n.Name},
				},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		})
	}
	podByKey := map[string]*Pod{}
	for _, p := range pods {
		podByKey[p.Key()] = p
		objs = append(objs, podObject(prefix, p, nodeByName[p.Node]))
	}
	for _, svc := range sc.Services {
		objs = append(objs, serviceObject(prefix, svc))
		objs = append(objs, endpointSlice(prefix, svc, podByKey))
	}
	return objs
}

// nodeAnnotations are the ones Flannel publishes, which carry the VTEP an observer may meet on
// the outer packets.
func nodeAnnotations(n *netns.Node) map[string]string {
	a := map[string]string{
		"flannel.alpha.coreos.com/backend-type": "vxlan",
		"flannel.alpha.coreos.com/public-ip":    n.IP.String(),
	}
	if n.VTEPMAC != "" {
		a["flannel.alpha.coreos.com/backend-data"] = fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, n.VTEPMAC)
	}
	return a
}

func podObject(prefix string, p *Pod, n *netns.Node) *corev1.Pod {
	var ports []corev1.ContainerPort
	for _, port := range p.Spec.Ports {
		ports = append(ports, corev1.ContainerPort{Name: port.Name, ContainerPort: int32(port.Port), Protocol: corev1.Protocol(port.Protocol)})
	}
	obj := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, UID: uid(prefix, "pod", p.Key()),
			Labels: p.Labels,
		},
		Spec: corev1.PodSpec{
			NodeName:   p.Node,
			Containers: []corev1.Container{{Name: p.Name, Image: "registry.invalid/flowlens-lab:latest", Ports: ports}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      p.IP.String(),
			PodIPs:     []corev1.PodIP{{IP: p.IP.String()}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	if n != nil {
		obj.Status.HostIP = n.IP.String()
		obj.Status.HostIPs = []corev1.HostIP{{IP: n.IP.String()}}
	}
	if o := p.Spec.Owner; o.Kind != "" {
		api := "apps/v1"
		ctrl := true
		obj.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: api, Kind: o.Kind, Name: o.Name, UID: uid(prefix, o.Kind, p.Namespace+"/"+o.Name), Controller: &ctrl,
		}}
	}
	return obj
}

func serviceObject(prefix string, svc ServiceSpec) *corev1.Service {
	var ports []corev1.ServicePort
	for _, sp := range svc.Ports {
		ports = append(ports, corev1.ServicePort{
			Name: sp.Name, Port: int32(sp.Port), TargetPort: intstr.FromInt32(int32(sp.TargetPort)),
			Protocol: corev1.Protocol(sp.Protocol),
		})
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name, UID: uid(prefix, "svc", svc.Namespace+"/"+svc.Name)},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: svc.ClusterIP.String(), ClusterIPs: []string{svc.ClusterIP.String()},
			Ports: ports, Selector: svc.Selector,
		},
	}
}

func endpointSlice(prefix string, svc ServiceSpec, pods map[string]*Pod) *discoveryv1.EndpointSlice {
	ready := true
	var eps []discoveryv1.Endpoint
	for _, b := range svc.Backends {
		p := pods[b]
		if p == nil {
			continue
		}
		node := p.Node
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{p.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:   &node,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: uid(prefix, "pod", p.Key())},
		})
	}
	var ports []discoveryv1.EndpointPort
	for _, sp := range svc.Ports {
		name, port, proto := sp.Name, int32(sp.TargetPort), corev1.Protocol(sp.Protocol)
		ports = append(ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto})
	}
	return &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace, Name: svc.Name + "-" + string(uid(prefix, "eps", svc.Name))[:5],
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       ports,
	}
}

func pruned(o any) (any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	v, _ = pruneValue(v)
	return v, nil
}

// pruneValue drops nulls, zeros, empty strings and containers left empty; keep reports whether
// the value survives.
func pruneValue(v any) (_ any, keep bool) {
	switch t := v.(type) {
	case nil:
		return nil, false
	case string:
		return t, t != ""
	case float64:
		return t, t != 0
	case bool:
		return t, true
	case []any:
		out := t[:0]
		for _, e := range t {
			if e, ok := pruneValue(e); ok {
				out = append(out, e)
			}
		}
		return out, len(out) > 0
	case map[string]any:
		for k, e := range t {
			if e, ok := pruneValue(e); ok {
				t[k] = e
			} else {
				delete(t, k)
			}
		}
		return t, len(t) > 0
	}
	return v, true
}

// uid is deterministic so the YAML of a lab can be compared across runs with the same prefix.
func uid(prefix, kind, name string) types.UID {
	h := sha256.Sum256([]byte(prefix + "/" + kind + "/" + name))
	s := hex.EncodeToString(h[:16])
	return types.UID(s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32])
}

// WriteDocs marshals objects as one multi-document YAML stream. With prune, zero values the
// k8s types serialise anyway (nodeInfo, daemonEndpoints, null timestamps) are left out, as
// kubectl would show the objects; never use it where an empty value means something (a
// NetworkPolicy's podSelector: {}).
func WriteDocs(w io.Writer, objs []any, prune bool) error {
	for i, o := range objs {
		if prune {
			var err error
			if o, err = pruned(o); err != nil {
				return fmt.Errorf("document %d: %w", i, err)
			}
		}
		b, err := yaml.Marshal(o)
		if err != nil {
			return fmt.Errorf("marshal document %d: %w", i, err)
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// WritePolicies writes the scenario's NetworkPolicies, sorted, as multi-document YAML.
func WritePolicies(w io.Writer, sc *Scenario) error {
	pols := append(sc.Policies[:0:0], sc.Policies...)
	sort.SliceStable(pols, func(i, j int) bool {
		return pols[i].Namespace+"/"+pols[i].Name < pols[j].Namespace+"/"+pols[j].Name
	})
	objs := make([]any, len(pols))
	for i := range pols {
		pols[i].APIVersion, pols[i].Kind = "networking.k8s.io/v1", "NetworkPolicy"
		objs[i] = &pols[i]
	}
	return WriteDocs(w, objs, false)
}

// WriteFile writes what fn produces to path.
func WriteFile(path string, fn func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
