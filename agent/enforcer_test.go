package agent

import (
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/policy"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// profileState: one database pod on node1 and a monitoring pod on node2.
type profileState struct{}

func (profileState) Snapshot() ([]corev1.Namespace, []corev1.Pod) {
	pod := func(ns, name, node, ip string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{PodIP: ip}}
	}
	return nil, []corev1.Pod{pod("database", "pg-0", "node1", "10.42.0.10"), pod("monitoring", "uptime-0", "node2", "10.42.1.10")}
}
func (profileState) Changed() <-chan struct{} { return nil }
func (profileState) Nodes() []corev1.Node {
	return []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: corev1.NodeSpec{PodCIDR: "10.42.0.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}}}}}
}

// TestEnforcerProfileClassifies: under K3s's kube-router a forwarded ping
// that the policies deny is ENFORCER_ALLOW, counted under its own label
// value; the same ping judged by the spec is UNEXPECTED_ALLOW; the pod's own
// node is allowed by the engine (no longer by a special case in the judge).
func TestEnforcerProfileClassifies(t *testing.T) {
	deny := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "database", Name: "default-deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	ping := func(src string) *flowlensv1.Flow {
		return &flowlensv1.Flow{
			Verdict: flowlensv1.Verdict_FORWARDED,
			Ip:      &flowlensv1.IP{Source: src, Destination: "10.42.0.10"},
			L4:      &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{Type: 8}}},
		}
	}
	tests := []struct {
		profile, src string
		want         flowlensv1.Mismatch
		intended     flowlensv1.IntendedVerdict
		summary      string
	}{
		{policy.EnforcerK3sKubeRouter, "10.42.1.10", flowlensv1.Mismatch_ENFORCER_ALLOW, flowlensv1.IntendedVerdict_DENY, "accepted anyway by enforcer k3s-kube-router"},
		{policy.EnforcerNetworkPolicy, "10.42.1.10", flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.IntendedVerdict_DENY, "deny: database/pg-0 ingress"},
		{policy.EnforcerKubeRouterV21, "192.168.1.10", flowlensv1.Mismatch_NONE, flowlensv1.IntendedVerdict_ALLOW, "allow: traffic from node node1 to its own pod database/pg-0"},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			j := newPolicyJudge(slog.New(slog.NewTextHandler(io.Discard, nil)), "files:test", profileState{})
			j.enforcer, _ = policy.EnforcerByName(tt.profile)
			j.setPolicies([]networkingv1.NetworkPolicy{deny})
			j.rebuild()
			src, _ := j.State()
			assert.Equal(t, "files:test, enforcer "+tt.profile, src, "the status names the profile")
			fl := ping(tt.src)
			names := fakeNamer{tt.src: {Kind: flowlensv1.EndpointKind_POD, Namespace: "monitoring"},
				"10.42.0.10": {Kind: flowlensv1.EndpointKind_POD, Namespace: "database"}}
			(&annotator{names: names, judge: j}).annotate(fl)
			require.NotNil(t, fl.GetPolicy())
			assert.Equal(t, tt.want, fl.GetPolicy().GetMismatch())
			assert.Equal(t, tt.intended, fl.GetPolicy().GetVerdict())
			assert.Contains(t, fl.GetPolicy().GetSummary(), tt.summary)
			assert.Equal(t, tt.profile, fl.GetPolicy().GetEnforcer())

			reg := prometheus.NewPedanticRegistry()
			m, err := newFlowMetrics(reg, "node1", false)
			require.NoError(t, err)
			m.observe(fl)
			if tt.want == flowlensv1.Mismatch_NONE {
				for _, mm := range []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.Mismatch_ENFORCER_ALLOW} {
					assert.Zero(t, testutil.ToFloat64(m.mismatches.WithLabelValues(mm.String(), "monitoring", "database")), mm.String())
				}
				return
			}
			assert.Equal(t, 1.0, testutil.ToFloat64(m.mismatches.WithLabelValues(tt.want.String(), "monitoring", "database")),
				"counted under its own label value")
		})
	}
}
