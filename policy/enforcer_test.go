package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/manifest"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// profileState: web (a) on node1, client (b) on node2; both namespaces deny
// all ingress.
func profileEngine(t *testing.T, profile string) *Engine {
	t.Helper()
	objs, err := manifest.Decode("profile", strings.NewReader(`
apiVersion: v1
kind: PodList
items:
- metadata: {name: web, namespace: a, labels: {app: web}}
  spec: {nodeName: node1}
  status: {podIP: 10.42.0.5}
- metadata: {name: client, namespace: b, labels: {app: client}}
  spec: {nodeName: node2}
  status: {podIP: 10.42.1.5}
---
`+np("a", "deny", denyIngressA)+"---\n"+np("b", "deny", denyIngressA)))
	require.NoError(t, err)
	node := func(name, ip, cidr string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	}
	e, err := Compile(ClusterState{Pods: objs.Pods, Nodes: []corev1.Node{
		node("node1", "192.168.1.10", "10.42.0.0/24"), node("node2", "192.168.1.11", "10.42.1.0/24"),
	}}, objs.NetworkPolicies)
	require.NoError(t, err)
	en, err := EnforcerByName(profile)
	require.NoError(t, err)
	return e.WithEnforcer(en)
}

func TestEnforcerProfiles(t *testing.T) {
	web, client := netip.MustParseAddr("10.42.0.5"), netip.MustParseAddr("10.42.1.5")
	node1, node2 := netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("192.168.1.11")
	cni1 := netip.MustParseAddr("10.42.0.1")
	ping := func(src, dst netip.Addr, typ uint8) Query {
		return Query{Src: src, Dst: dst, Protocol: ProtocolICMP, ICMPType: typ}
	}
	tcp := Query{Src: client, Dst: web, Port: 80, Protocol: corev1.ProtocolTCP}
	tests := []struct {
		name, profile string
		q             Query
		allowed       bool   // what the policies (and the spec's own-node rule) say
		enforcer      bool   // the profile accepts what the policies deny
		ownNode       string // the own-node exemption applied
		summary       string // a part of the summary
	}{
		{name: "k3s: echo request accepted before policy", profile: EnforcerK3sKubeRouter, q: ping(client, web, 8), enforcer: true,
			summary: "accepted anyway by enforcer k3s-kube-router: K3s's kube-router accepts ICMP echo"},
		{name: "k3s: echo reply too", profile: EnforcerK3sKubeRouter, q: ping(client, web, 0), enforcer: true},
		{name: "k3s: time exceeded", profile: EnforcerK3sKubeRouter, q: ping(client, web, 11), enforcer: true},
		{name: "k3s: timestamp request obeys policy", profile: EnforcerK3sKubeRouter, q: ping(client, web, 13)},
		{name: "k3s: TCP obeys policy", profile: EnforcerK3sKubeRouter, q: tcp, summary: "deny: a/web ingress isolated by a/deny"},
		{name: "v2.1: ping obeys policy", profile: EnforcerKubeRouterV21, q: ping(client, web, 8)},
		{name: "spec: ping obeys policy", profile: EnforcerNetworkPolicy, q: ping(client, web, 8)},
		{name: "own node (InternalIP) reaches its pod", profile: EnforcerNetworkPolicy, q: Query{Src: node1, Dst: web, Port: 8080},
			allowed: true, ownNode: "node1", summary: "allow: traffic from node node1 to its own pod a/web"},
		{name: "own node (cni0) reaches its pod", profile: EnforcerKubeRouterV21, q: Query{Src: cni1, Dst: web, Port: 8080},
			allowed: true, ownNode: "node1"},
		{name: "another node does not", profile: EnforcerKubeRouterV21, q: Query{Src: node2, Dst: web, Port: 8080}},
		{name: "another node's ping: k3s accepts it", profile: EnforcerK3sKubeRouter, q: ping(node2, web, 8), enforcer: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := profileEngine(t, tt.profile).Evaluate(tt.q)
			assert.Equal(t, tt.allowed, v.Allowed, v.Summary())
			assert.Equal(t, tt.enforcer, v.EnforcerAllows != "", v.Summary())
			assert.Equal(t, tt.allowed || tt.enforcer, v.Predicted())
			assert.Equal(t, tt.ownNode, v.OwnNode)
			assert.Equal(t, tt.profile, v.Enforcer)
			assert.Contains(t, v.Summary(), tt.summary)
			pv := v.Proto()
			assert.Equal(t, tt.profile, pv.GetEnforcer())
			assert.Equal(t, v.EnforcerAllows, pv.GetEnforcerReason())
		})
	}
}

func TestMismatchOfEnforcerAllow(t *testing.T) {
	deny := &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY}
	explained := &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY, EnforcerReason: "kube-router accepts ICMP echo"}
	tests := []struct {
		name   string
		kernel flowlensv1.Verdict
		pv     *flowlensv1.PolicyVerdict
		want   flowlensv1.Mismatch
	}{
		{"unexplained allow", flowlensv1.Verdict_FORWARDED, deny, flowlensv1.Mismatch_UNEXPECTED_ALLOW},
		{"explained allow", flowlensv1.Verdict_FORWARDED, explained, flowlensv1.Mismatch_ENFORCER_ALLOW},
		{"explained but dropped: as git says", flowlensv1.Verdict_DROPPED, explained, flowlensv1.Mismatch_NONE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, MismatchOf(tt.kernel, tt.pv)) })
	}
}

func TestEnforcerByName(t *testing.T) {
	en, err := EnforcerByName("")
	require.NoError(t, err)
	assert.Equal(t, DefaultEnforcer, en.Name)
	_, err = EnforcerByName("calico")
	assert.ErrorContains(t, err, "k3s-kube-router, kube-router-v2.1, networkpolicy")
}
