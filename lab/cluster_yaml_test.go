package lab

import (
	"bytes"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowlens/flowlens/manifest"
)

// fakeLab is a Lab with the state Up would record, built without privileges.
func fakeLab(nodes int) *Lab {
	sc := scenario.DefaultScenario().WithNodes(nodes)
	l := &Lab{prefix: "fltest", scenario: sc}
	for i := 1; i <= nodes; i++ {
		l.nodes = append(l.nodes, &netns.Node{Name: netns.NodeName(i), NetNS: netns.NodeNetNS("fltest", i), PodCIDR: netns.NodePodCIDR(i), IP: netns.NodeIP(i), Index: i})
	}
	for _, s := range sc.Pods {
		l.pods = append(l.pods, &scenario.Pod{Pod: &netns.Pod{Namespace: s.Namespace, Name: s.Name, Node: netns.NodeName(s.Node), IP: s.IP,
			NetNS: netns.PodNetNS("fltest", s.Namespace, s.Name), HostVeth: netns.RandomVethName(), Labels: s.Labels}, Spec: s})
	}
	return l
}

func splitDocs(t *testing.T, b []byte) []string {
	t.Helper()
	docs, err := manifest.SplitDocuments(b)
	require.NoError(t, err)
	require.NotEmpty(t, docs)
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = string(d)
	}
	return out
}

func TestClusterYAML(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, fakeLab(2).ClusterYAML(&buf))
	kinds := map[string]int{}
	pods := map[string]corev1.Pod{}
	var slice discoveryv1.EndpointSlice
	var svc corev1.Service
	var node2 corev1.Node
	for i, doc := range splitDocs(t, buf.Bytes()) {
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal([]byte(doc), &tm), "document %d", i)
		kinds[tm.Kind]++
		switch tm.Kind {
		case "Pod":
			var p corev1.Pod
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &p), "document %d", i)
			pods[p.Namespace+"/"+p.Name] = p
		case "EndpointSlice":
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &slice))
		case "Service":
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &svc))
		case "Node":
			var n corev1.Node
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &n))
			if n.Name == "node2" {
				node2 = n
			}
		case "Namespace":
			var ns corev1.Namespace
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &ns))
			assert.Equal(t, ns.Name, ns.Labels["kubernetes.io/metadata.name"])
		}
	}
	assert.Equal(t, map[string]int{"Namespace": 2, "Node": 2, "Pod": 6, "Service": 1, "EndpointSlice": 1}, kinds)

	be := pods["demo/backend"]
	assert.Equal(t, map[string]string{"app": "backend"}, be.Labels)
	assert.Equal(t, "node1", be.Spec.NodeName)
	assert.Equal(t, "10.42.0.11", be.Status.PodIP)
	assert.Equal(t, []corev1.PodIP{{IP: "10.42.0.11"}}, be.Status.PodIPs)
	assert.Equal(t, "192.0.2.1", be.Status.HostIP)
	assert.Equal(t, corev1.PodRunning, be.Status.Phase)
	require.Len(t, be.Spec.Containers, 1)
	assert.Contains(t, be.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP})
	require.Len(t, be.OwnerReferences, 1)
	assert.Equal(t, "ReplicaSet", be.OwnerReferences[0].Kind)
	assert.Equal(t, "StatefulSet", pods["demo/db"].OwnerReferences[0].Kind)
	assert.Equal(t, "192.0.2.2", pods["demo/remote"].Status.HostIP)

	assert.Equal(t, "10.42.1.0/24", node2.Spec.PodCIDR)
	assert.Equal(t, []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.2"}, {Type: corev1.NodeHostName, Address: "node2"}}, node2.Status.Addresses)

	assert.Equal(t, "10.43.0.20", svc.Spec.ClusterIP)
	assert.Equal(t, int32(80), svc.Spec.Ports[0].Port)
	assert.Equal(t, int32(8080), svc.Spec.Ports[0].TargetPort.IntVal)
	assert.Equal(t, "backend", slice.Labels[discoveryv1.LabelServiceName])
	var addrs []string
	for _, ep := range slice.Endpoints {
		addrs = append(addrs, ep.Addresses...)
	}
	assert.ElementsMatch(t, []string{"10.42.0.11", "10.42.1.10"}, addrs)
}

func TestPolicyYAML(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, fakeLab(1).PolicyYAML(&buf))
	got := map[string]networkingv1.NetworkPolicy{}
	for _, doc := range splitDocs(t, buf.Bytes()) {
		var np networkingv1.NetworkPolicy
		require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &np))
		assert.Equal(t, "networking.k8s.io/v1", np.APIVersion)
		assert.Equal(t, "NetworkPolicy", np.Kind)
		got[np.Namespace+"/"+np.Name] = np
	}
	require.Len(t, got, 3)
	allow := got["demo/allow-frontend-to-backend"]
	assert.Equal(t, map[string]string{"app": "backend"}, allow.Spec.PodSelector.MatchLabels)
	require.Len(t, allow.Spec.Ingress, 1)
	assert.Len(t, allow.Spec.Ingress[0].Ports, 2)
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, got["other/deny-egress"].Spec.PolicyTypes)
	assert.Empty(t, got["other/deny-egress"].Spec.Egress)
}

// Every policy in the YAML has hand-written rules, and vice versa, so the two descriptions of
// the intent cannot drift apart by a whole policy.
func TestPoliciesAndRulesPair(t *testing.T) {
	sc := scenario.DefaultScenario()
	var a, b []string
	for _, p := range sc.Policies {
		a = append(a, p.Namespace+"/"+p.Name)
	}
	for _, r := range sc.Rules {
		b = append(b, r.Key())
	}
	assert.ElementsMatch(t, a, b)
}

func TestStateRoundTrip(t *testing.T) {
	l := fakeLab(2)
	path := t.TempDir() + "/state.json"
	require.NoError(t, SaveState(path, l.State()))
	st, err := LoadState(path)
	require.NoError(t, err)
	back, err := Attach(st, nil)
	require.NoError(t, err)
	assert.Equal(t, "fltest", back.Prefix())
	p := back.Pod("demo/remote")
	require.NotNil(t, p)
	assert.Equal(t, netip.MustParseAddr("10.42.1.10"), p.IP)
	assert.Equal(t, "node2", p.Node)
	assert.Equal(t, l.Pod("demo/remote").HostVeth, p.HostVeth)
	assert.Equal(t, []scenario.Port{{Name: "http", Port: 8080, Protocol: "TCP"}, {Name: "mdns", Port: 5353, Protocol: "UDP"}}, p.Spec.Ports)
	assert.Len(t, back.Nodes(), 2)
	assert.Equal(t, 2, back.Node("node2").Index)
	assert.Len(t, back.Scenario().Cases, len(scenario.DefaultScenario().Cases))

	_, err = Attach(State{Prefix: "BAD"}, nil)
	assert.ErrorContains(t, err, "prefix")
}
