package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab"
	"github.com/flowlens/flowlens/lab/rules"
	"github.com/flowlens/flowlens/lab/scenario"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestK3sICMPThroughKubeRouter: ENFORCER_ALLOW from real kernel traffic. The homelab runs under
// the real kube-router v2.1.0 with K3s >= 1.33's ICMP accepts (lab.Config.KubeRouterK3sICMP).
// linkding pings homepage through both namespaces' default deny and gets replies, as on a K3s
// node, while TCP between them stays rejected. The agent's default profile (k3s-kube-router)
// reports the ping as ENFORCER_ALLOW with the reason, and counts it only under that class. A
// full kube-router sync keeps the accepts ahead of its pod chains. The same lab without the
// option rejects the ping: the accepts come from the option, not from v2.1.0.
func TestK3sICMPThroughKubeRouter(t *testing.T) {
	plain := startHomelab(t)
	require.Error(t, ping(t, plain, "linkding/linkding-0", "homepage/homepage-0"), "kube-router v2.1.0 alone rejects the ping")
	require.NoError(t, plain.Close())

	l := startHomelab(t, func(c *lab.Config) { c.KubeRouterK3sICMP = true })
	a := startAgent(t, l, "node1")
	from, to := l.Pod("linkding/linkding-0"), l.Pod("homepage/homepage-0")
	require.NoError(t, ping(t, l, from.Key(), to.Key()), "K3s accepts echo requests before any policy")
	echo := and(isEcho(from, to), verdict(flowlensv1.Verdict_FORWARDED))
	a.waitFor("the echo request", 10*time.Second, func() bool { return len(a.match(echo)) > 0 })
	for _, f := range a.match(echo) {
		p := f.GetPolicy()
		assert.Equal(t, flowlensv1.IntendedVerdict_DENY, p.GetVerdict(), p.GetSummary())
		assert.Equal(t, flowlensv1.Mismatch_ENFORCER_ALLOW, p.GetMismatch())
		assert.Equal(t, "k3s-kube-router", p.GetEnforcer())
		assert.Contains(t, p.GetEnforcerReason(), "KUBE-NWPLCY-COMMON")
		assert.Contains(t, p.GetSummary(), "accepted anyway by enforcer k3s-kube-router")
	}

	c, ok := l.Scenario().Case("lateral movement: linkding -> homepage")
	require.True(t, ok)
	tcp := tryCase(t, l, c, 49000)
	require.False(t, tcp.allowed, "the accepts open ICMP only: %s", tcp.detail)
	a.waitFor("the rejected TCP flow", 10*time.Second, func() bool { return flowOf(a, tcp) != nil })
	assert.Equal(t, flowlensv1.Mismatch_NONE, flowOf(a, tcp).GetPolicy().GetMismatch())

	metrics := scrape(t, a)
	assert.Regexp(t, `flowlens_policy_mismatches_total\{destination_namespace="homepage",mismatch="ENFORCER_ALLOW",source_namespace="linkding"\} [1-9]`, metrics)
	for _, m := range []string{"UNEXPECTED_DROP", "UNEXPECTED_ALLOW"} {
		assert.NotContains(t, metrics, `{destination_namespace="homepage",mismatch="`+m+`",source_namespace="linkding"}`, "the alert's classes")
	}

	// Same policies: kube-router still renames every chain and restores the whole filter table.
	before := kubeRouterForward(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, l.SetEnforcedPolicies(ctx, l.Scenario().Policies))
	after := kubeRouterForward(t, l)
	assert.NotEqual(t, podChainJumps(before), podChainJumps(after), "the sync rewrote the pod chains")
	require.Greater(t, len(after), 2)
	for _, r := range after[:2] {
		assert.Contains(t, r, "-j "+rules.K3sICMPChain, "the accepts still come first:\n%s", strings.Join(after, "\n"))
	}
	n := len(a.match(echo))
	require.NoError(t, ping(t, l, from.Key(), to.Key()), "after the sync")
	a.waitFor("the echo request after the sync", 10*time.Second, func() bool { return len(a.match(echo)) > n })
	assert.Equal(t, flowlensv1.Mismatch_ENFORCER_ALLOW, a.match(echo)[n].GetPolicy().GetMismatch())
}

// ping sends two echo requests from one pod to another and fails unless both are answered.
func ping(t *testing.T, l *testLab, from, to string) error {
	t.Helper()
	src, dst := l.Pod(from), l.Pod(to)
	require.NotNil(t, src, from)
	require.NotNil(t, dst, to)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := l.Exec(ctx, src.NetNS, "ping", "-c", "2", "-i", "0.2", "-W", "1", dst.IP.String())
	return err
}

// isEcho selects the echo requests from one pod to another.
func isEcho(from, to *scenario.Pod) func(*flowlensv1.Flow) bool {
	return func(f *flowlensv1.Flow) bool {
		return f.GetIp().GetSource() == from.IP.String() && f.GetIp().GetDestination() == to.IP.String() &&
			f.GetL4().GetIcmpv4() != nil && f.GetL4().GetIcmpv4().GetType() == 8
	}
}

// kubeRouterForward lists node1's KUBE-ROUTER-FORWARD rules in order.
func kubeRouterForward(t *testing.T, l *testLab) []string {
	t.Helper()
	out, err := l.Exec(context.Background(), l.Node("node1").NetNS, "iptables", "-w", "-S", "KUBE-ROUTER-FORWARD")
	require.NoError(t, err)
	var rs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "-A ") {
			rs = append(rs, line)
		}
	}
	return rs
}

// podChainJumps are the targets of the per-pod jumps; their names change with every sync.
func podChainJumps(rs []string) []string {
	var out []string
	for _, r := range rs {
		if _, chain, ok := strings.Cut(r, "-j KUBE-POD-FW-"); ok {
			out = append(out, chain)
		}
	}
	return out
}
