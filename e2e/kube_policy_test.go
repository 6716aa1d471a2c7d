//go:build kubelab

// The real-cluster tests run with `make test-kubernetes` (build tag kubelab):
// they need the Kubernetes binaries, a long build the first time.

package e2e

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// allowFrontendToBackend isolates demo/backend for ingress and lets only app=frontend reach TCP 8080.
func allowFrontendToBackend() *networkingv1.NetworkPolicy {
	port := intstr.FromInt32(8080)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "backend-from-frontend"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "backend"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}
}

// testPolicyFromCluster applies a NetworkPolicy through the API server with the real kube-router
// enforcing it, and checks that kube-router's enforcement and flowlens's intended verdicts both
// change, and agree, on the scenario's cases; the dropped flow is then read through a real
// port-forward (`flowlens observe -P` without --node: every agent, merged).
func testPolicyFromCluster(t *testing.T, e *kubeEnv, backendIP string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	require.NoError(t, e.c.StartKubeRouter(ctx, kubeRouterBin(t)))
	// Before the policy: nothing isolates backend.
	ok, out, err := e.c.Connect(ctx, "demo", "intruder", "tcp", backendIP+":8080")
	require.NoError(t, err, out)
	require.True(t, ok, "intruder -> backend:8080 before any policy: %s", out)
	f := e.waitFlow(t, "demo/intruder -> demo/backend:8080 forwarded", 45*time.Second, podFlow("demo", "intruder", "demo", "backend", 8080))
	assert.Equal(t, flowlensv1.Verdict_FORWARDED, f.GetVerdict())
	assert.Equal(t, flowlensv1.IntendedVerdict_NOT_ISOLATED, f.GetPolicy().GetVerdict())

	_, err = e.cs.NetworkingV1().NetworkPolicies("demo").Create(ctx, allowFrontendToBackend(), metav1.CreateOptions{})
	require.NoError(t, err)
	cases := []struct {
		client string
		port   int
		allow  bool
	}{
		{"frontend", 8080, true},
		{"frontend", 9090, false}, // port not in the rule
		{"intruder", 8080, false}, // label not in the rule
	}
	// kube-router syncs on the policy event; poll until it enforces.
	require.Eventually(t, func() bool {
		ok, _, err := e.c.Connect(ctx, "demo", "intruder", "tcp", backendIP+":8080")
		return err == nil && !ok
	}, 30*time.Second, time.Second, "kube-router never blocked intruder -> backend:8080")
	for _, tc := range cases {
		ok, out, err := e.c.Connect(ctx, "demo", tc.client, "tcp", backendIP+":"+strconv.Itoa(tc.port))
		require.NoError(t, err, out)
		assert.Equal(t, tc.allow, ok, "kube-router: %s -> backend:%d", tc.client, tc.port)
	}
	for _, tc := range cases {
		want := flowlensv1.IntendedVerdict_DENY
		verdict := flowlensv1.Verdict_DROPPED
		if tc.allow {
			want, verdict = flowlensv1.IntendedVerdict_ALLOW, flowlensv1.Verdict_FORWARDED
		}
		match := podFlow("demo", tc.client, "demo", "backend", uint32(tc.port))
		f := e.waitFlow(t, tc.client+" -> backend "+verdict.String(), 45*time.Second, func(f *flowlensv1.Flow) bool {
			return match(f) && f.GetVerdict() == verdict && f.GetPolicy().GetVerdict() != flowlensv1.IntendedVerdict_NOT_ISOLATED
		})
		assert.Equal(t, want, f.GetPolicy().GetVerdict(), "flowlens intent for %s -> backend:%d", tc.client, tc.port)
		assert.Equal(t, flowlensv1.Mismatch_NONE, f.GetPolicy().GetMismatch(), "flowlens and kube-router disagree on %s -> backend:%d", tc.client, tc.port)
	}

	// The human-readable path a user takes: compact output through the port-forward.
	out, err = e.c.ExecIn(ctx, e.c.ControlPlaneNetNS(), bins.cli, "observe", "-P", "--kubeconfig", e.c.Kubeconfig(),
		"--last", "2000", "--verdict", "DROPPED", "--color", "never")
	require.NoError(t, err, out)
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "demo/intruder") && strings.Contains(l, "demo/backend") && strings.Contains(l, ":8080") {
			line = l
		}
	}
	require.NotEmpty(t, line, "no dropped demo/intruder -> demo/backend:8080 line in:\n%s", out)
	t.Logf("observe -P: %s", line)
}

// testStatusPortForward checks `flowlens status -P` through the port-forward.
func testStatusPortForward(t *testing.T, e *kubeEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := e.c.ExecIn(ctx, e.c.ControlPlaneNetNS(), bins.cli, "status", "-P", "--kubeconfig", e.c.Kubeconfig())
	require.NoError(t, err, out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^Node:\s+node1$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^Interfaces:\s+[1-9]\d* attached$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^Enrichment:\s+kubernetes`), out)
	t.Logf("status -P:\n%s", out)
}

// selfReview are the resources every authenticated user may create (system:basic-user): asking
// the API what one may do is not a write.
var selfReview = map[string]bool{
	"selfsubjectaccessreviews.authorization.k8s.io": true,
	"selfsubjectrulesreviews.authorization.k8s.io":  true,
	"selfsubjectreviews.authentication.k8s.io":      true,
}

// testServiceAccountReadOnly asks RBAC what the agent's ServiceAccount may do: list and watch
// what the agent's informers need, write nothing.
func testServiceAccountReadOnly(t *testing.T, e *kubeEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const sa = "--as=system:serviceaccount:flowlens:flowlens"
	out, err := e.c.Kubectl(ctx, "auth", "can-i", "--list", sa)
	require.NoError(t, err, out)
	t.Logf("can-i --list:\n%s", out)
	// Resources  Non-Resource URLs  Resource Names  Verbs, e.g. "pods  []  []  [get list watch]".
	row := regexp.MustCompile(`^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*)\]$`)
	verbs := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		m := row.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil || m[1] == "" {
			continue // the header, and non-resource URLs (/healthz, /version: get only)
		}
		verbs[m[1]] = "[" + m[4] + "]"
		if selfReview[m[1]] {
			continue
		}
		for _, v := range strings.Fields(m[4]) {
			assert.Contains(t, []string{"get", "list", "watch"}, v, "%s may %s", m[1], v)
		}
	}
	for _, r := range []string{"pods", "namespaces", "services", "nodes", "endpointslices.discovery.k8s.io",
		"networkpolicies.networking.k8s.io", "replicasets.apps", "jobs.batch"} {
		assert.Equal(t, "[get list watch]", verbs[r], "the agent's informers need list and watch on %s", r)
	}
	for _, verb := range []string{"create", "update", "patch", "delete"} {
		for _, r := range []string{"pods", "networkpolicies", "configmaps", "secrets", "daemonsets", "nodes"} {
			out, _ := e.c.Kubectl(ctx, "auth", "can-i", verb, r, sa, "--all-namespaces")
			assert.Equal(t, "no", strings.TrimSpace(out), "the agent may %s %s", verb, r)
		}
	}
}
