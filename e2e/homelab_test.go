package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/lab"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// The homelab tests run the seed's homelab (examples/homelab) with the real kube-router
// network-policy controller (v2.1.0, test-only, built from lab/kuberouter) as the enforcer, and
// check that flowlens's policy engine, fed the example's own policy folder, agrees with it on
// every pod-to-pod expectation.

var kubeRouterBuild struct {
	once sync.Once
	bin  string
	err  error
}

// kubeRouterBin builds lab/kuberouter's helper once per test binary, next to the agent (so
// TestMain's cleanup removes it).
func kubeRouterBin(t *testing.T) string {
	t.Helper()
	kubeRouterBuild.once.Do(func() {
		start := time.Now()
		out := filepath.Join(filepath.Dir(bins.agent), "flowlens-kube-router")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/flowlens-kube-router")
		cmd.Dir = filepath.Join("..", "lab", "kuberouter")
		msg, err := cmd.CombinedOutput()
		if err != nil {
			kubeRouterBuild.err = fmt.Errorf("build flowlens-kube-router: %w\n%s", err, msg)
			return
		}
		kubeRouterBuild.bin = out
		t.Logf("built flowlens-kube-router in %v", time.Since(start).Round(time.Millisecond))
	})
	require.NoError(t, kubeRouterBuild.err)
	return kubeRouterBuild.bin
}

// startHomelab brings the homelab up under kube-router; the agent's --policies is the example's
// network-policies folder, the intent as written in Git. opts adjust the lab's config.
func startHomelab(t *testing.T, opts ...func(*lab.Config)) *testLab {
	t.Helper()
	requireRoot(t)
	bin := kubeRouterBin(t)
	dir, err := scenario.HomelabDir()
	require.NoError(t, err)
	sc, err := scenario.LoadHomelab(dir, 1)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	cfg := lab.Config{Prefix: netns.NewPrefix(), Scenario: sc, Enforcer: lab.EnforcerKubeRouter, KubeRouterBin: bin, External: true}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := lab.Up(ctx, cfg)
	require.NoError(t, err)
	t.Logf("homelab up with kube-router in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		for node, log := range l.KubeRouterLogs() {
			t.Logf("kube-router %s:\n%s", node, log)
		}
		require.NoError(t, l.Close())
		for _, ns := range l.NetNSNames() {
			_, err := os.Stat(filepath.Join("/run/netns", ns))
			assert.True(t, errors.Is(err, os.ErrNotExist), "netns %s left behind", ns)
		}
	})
	tl := &testLab{Lab: l, clusterFile: filepath.Join(t.TempDir(), "cluster.yaml"), policyFile: filepath.Join(dir, "network-policies")}
	require.NoError(t, l.WriteClusterYAML(tl.clusterFile))
	tl.servers, err = traffic.StartServers(l)
	require.NoError(t, err)
	t.Cleanup(func() { tl.servers.Close() })
	return tl
}

// attempt is one case's connection and what the kernel did with it.
type attempt struct {
	c       scenario.Case
	tp      tuple
	allowed bool
	detail  string
}

// tryCase makes one connection for c from a fixed source port. TCP: allowed when the server's
// full reply comes back; UDP: allowed when the server counted a datagram.
func tryCase(t *testing.T, l *testLab, c scenario.Case, sport int) attempt {
	t.Helper()
	from, dst := l.Pod(c.From), l.Pod(c.To)
	require.NotNil(t, from, c.From)
	require.NotNil(t, dst, c.To)
	at := attempt{c: c}
	if c.Protocol == "TCP" {
		payload := payloadOf(100)
		tp, reply, err := tcpExchange(t, from, dst.AddrPort(c.Port), sport, payload)
		at.tp = tp
		at.allowed = err == nil && reply == traffic.TCPReply(payload, c.To)
		at.detail = fmt.Sprintf("reply %q err %v", reply, err)
		return at
	}
	at.tp = tuple{src: from.IP, dst: dst.IP, sport: uint32(sport), dport: uint32(c.Port), proto: "udp"}
	before := l.servers.UDPReceived(c.To, c.Port)
	var conn *net.UDPConn
	require.NoError(t, netns.Do(from.NetNS, func() error {
		var err error
		conn, err = net.DialUDP("udp", &net.UDPAddr{IP: from.IP.AsSlice(), Port: sport}, net.UDPAddrFromAddrPort(dst.AddrPort(c.Port)))
		return err
	}))
	defer conn.Close()
	var sendErr error
	for range 3 {
		// After a REJECT the socket reports ECONNREFUSED on a later send: that is a result.
		if _, err := conn.Write([]byte("flowlens homelab")); err != nil {
			sendErr = err
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) && l.servers.UDPReceived(c.To, c.Port) == before {
		time.Sleep(10 * time.Millisecond)
	}
	got := l.servers.UDPReceived(c.To, c.Port) - before
	at.allowed = got > 0
	at.detail = fmt.Sprintf("%d datagrams received, send error %v", got, sendErr)
	return at
}

// flowOf returns the agent's first judged flow of the attempt's forward direction, or nil.
func flowOf(a *agentProc, at attempt) *flowlensv1.Flow {
	m := a.match(and(at.tp.is, func(f *flowlensv1.Flow) bool {
		v := f.GetVerdict()
		return v == flowlensv1.Verdict_FORWARDED || v == flowlensv1.Verdict_DROPPED
	}))
	if len(m) == 0 {
		return nil
	}
	// A dropped connection may also show forwarded records (none are expected): prefer a drop.
	for _, f := range m {
		if f.GetVerdict() == flowlensv1.Verdict_DROPPED {
			return f
		}
	}
	return m[0]
}

// TestHomelabKubeRouterAgreesWithPolicyEngine: for every pod-to-pod expectation of the homelab,
// the real kube-router enforces the seed's intent, and the agent reports the flow with the
// matching verdict, an intended verdict that agrees, and no mismatch.
func TestHomelabKubeRouterAgreesWithPolicyEngine(t *testing.T) {
	l := startHomelab(t)
	a := startAgent(t, l, "node1")
	cases := l.Scenario().Cases
	require.GreaterOrEqual(t, len(cases), 40)

	var attempts []attempt
	for i, c := range cases {
		attempts = append(attempts, tryCase(t, l, c, 46000+i))
	}
	a.waitFor("a judged flow for every case", 15*time.Second, func() bool {
		return !slices.ContainsFunc(attempts, func(at attempt) bool { return flowOf(a, at) == nil })
	})

	var enforcerDisagrees, engineDisagrees []string
	allowedN := 0
	for _, at := range attempts {
		c := at.c
		if at.allowed {
			allowedN++
		}
		if at.allowed != c.Allowed {
			enforcerDisagrees = append(enforcerDisagrees, fmt.Sprintf("%q: expected allowed=%v, kube-router gave allowed=%v (%s)", c.Name, c.Allowed, at.allowed, at.detail))
		}
		f := flowOf(a, at)
		wantVerdict := flowlensv1.Verdict_DROPPED
		if at.allowed {
			wantVerdict = flowlensv1.Verdict_FORWARDED
		}
		intended := f.GetPolicy().GetVerdict()
		intentAllows := intended == flowlensv1.IntendedVerdict_ALLOW || intended == flowlensv1.IntendedVerdict_NOT_ISOLATED
		if f.GetVerdict() != wantVerdict || intentAllows != at.allowed || f.GetPolicy().GetMismatch() != flowlensv1.Mismatch_NONE {
			engineDisagrees = append(engineDisagrees, fmt.Sprintf("%q: kernel allowed=%v; flow verdict %v, intended %v, mismatch %v: %s",
				c.Name, at.allowed, f.GetVerdict(), intended, f.GetPolicy().GetMismatch(), f.GetPolicy().GetSummary()))
		}
	}
	t.Logf("%d cases: %d allowed, %d blocked by kube-router", len(attempts), allowedN, len(attempts)-allowedN)
	for _, at := range attempts {
		if !at.allowed {
			f := flowOf(a, at)
			t.Logf("e.g. %q: %v, intended %v: %s", at.c.Name, f.GetVerdict(), f.GetPolicy().GetVerdict(), f.GetPolicy().GetSummary())
			break
		}
	}
	assert.Empty(t, enforcerDisagrees, "kube-router vs the seed's expectations:\n%s", strings.Join(enforcerDisagrees, "\n"))
	assert.Empty(t, engineDisagrees, "flowlens's policy engine vs kube-router:\n%s", strings.Join(engineDisagrees, "\n"))
	assert.Greater(t, allowedN, 0)
	assert.Less(t, allowedN, len(attempts), "some cases must be blocked")
}

// TestHomelabEnforcedPolicyRemoved: kube-router loses database/allow-apps-ingress (a SIGHUP with
// a smaller set) while the agent keeps the full intended folder, so app -> PostgreSQL is dropped
// by the kernel against the intent: UNEXPECTED_DROP.
func TestHomelabEnforcedPolicyRemoved(t *testing.T) {
	l := startHomelab(t)
	a := startAgent(t, l, "node1")
	c, ok := l.Scenario().Case("linkding reaches PostgreSQL")
	require.True(t, ok)

	before := tryCase(t, l, c, 47000)
	require.True(t, before.allowed, "with every policy enforced: %s", before.detail)

	var smaller []networkingv1.NetworkPolicy
	for _, p := range l.Scenario().Policies {
		if p.Namespace+"/"+p.Name != "database/allow-apps-ingress" {
			smaller = append(smaller, p)
		}
	}
	require.Len(t, smaller, len(l.Scenario().Policies)-1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, l.SetEnforcedPolicies(ctx, smaller))
	t.Logf("kube-router resync after the removal: %v", time.Since(start).Round(time.Millisecond))

	after := tryCase(t, l, c, 47001)
	require.False(t, after.allowed, "the kernel no longer allows it: %s", after.detail)
	a.waitFor("the unexpected drop", 10*time.Second, func() bool { return flowOf(a, after) != nil })
	f := flowOf(a, after)
	assert.Equal(t, flowlensv1.Verdict_DROPPED, f.GetVerdict())
	assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, f.GetPolicy().GetVerdict(), f.GetPolicy().GetSummary())
	assert.Equal(t, flowlensv1.Mismatch_UNEXPECTED_DROP, f.GetPolicy().GetMismatch())
	assert.Contains(t, f.GetPolicy().GetSummary(), "allow-apps-ingress")

	// A case the removal does not touch stays in agreement.
	ok2, found := l.Scenario().Case("linkding resolves names over UDP")
	require.True(t, found)
	dns := tryCase(t, l, ok2, 47002)
	require.True(t, dns.allowed, dns.detail)
	a.waitFor("the DNS flow", 10*time.Second, func() bool { return flowOf(a, dns) != nil })
	assert.Equal(t, flowlensv1.Mismatch_NONE, flowOf(a, dns).GetPolicy().GetMismatch())
}

// TestHomelabTwoNodesKubeRouter: with database and monitoring on node2, app -> PostgreSQL and
// Prometheus -> app cross the VXLAN link, egress decided by one kube-router and ingress by the
// other; every pod-to-pod expectation still holds.
func TestHomelabTwoNodesKubeRouter(t *testing.T) {
	requireRoot(t)
	bin := kubeRouterBin(t)
	dir, err := scenario.HomelabDir()
	require.NoError(t, err)
	sc, err := scenario.LoadHomelab(dir, 2)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{Prefix: netns.NewPrefix(), Nodes: 2, Scenario: sc, Enforcer: lab.EnforcerKubeRouter, KubeRouterBin: bin, External: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	servers, err := traffic.StartServers(l)
	require.NoError(t, err)
	t.Cleanup(func() { servers.Close() })
	tl := &testLab{Lab: l, servers: servers}

	cross := 0
	var wrong []string
	for i, c := range l.Scenario().Cases {
		if l.Pod(c.From).Node != l.Pod(c.To).Node {
			cross++
		}
		if at := tryCase(t, tl, c, 48000+i); at.allowed != c.Allowed {
			wrong = append(wrong, fmt.Sprintf("%q: expected allowed=%v (%s)", c.Name, c.Allowed, at.detail))
		}
	}
	// The outside world, reached from and reaching both nodes' pods through their own node.
	outside, err := traffic.StartExternalServers(l)
	require.NoError(t, err)
	t.Cleanup(func() { outside.Close() })
	onNode2 := 0
	for i, c := range l.ExternalCases() {
		if c.Enforcer == "node2" {
			onNode2++
		}
		if r := traffic.RunExternalCase(ctx, l, servers, outside, c, 48500+i); r.Allowed != c.Allowed {
			wrong = append(wrong, fmt.Sprintf("%q (outside %s): expected allowed=%v (%s)", c.Name, c.Peer, c.Allowed, r.Detail))
		}
	}
	assert.Greater(t, cross, 10, "cases crossing nodes")
	assert.Greater(t, onNode2, 3, "outside cases of node2's pods")
	assert.Empty(t, wrong, "kube-router on two nodes vs the seed's expectations:\n%s", strings.Join(wrong, "\n"))
}

// outsideEnd is the endpoint kind and name the agent must give an outside peer: the longest
// named CIDR holding it, else WORLD.
func outsideEnd(named []string, peer netip.Addr) (flowlensv1.EndpointKind, string) {
	kind, name, bits := flowlensv1.EndpointKind_WORLD, "", -1
	for _, spec := range named {
		n, cidr, _ := strings.Cut(spec, "=")
		if p := netip.MustParsePrefix(cidr); p.Contains(peer) && p.Bits() > bits {
			kind, name, bits = flowlensv1.EndpointKind_CIDR, n, p.Bits()
		}
	}
	return kind, name
}

// TestHomelabOutsideAgreesWithPolicyEngine: every homelab expectation with an end outside the
// cluster (internet egress by ipBlock, Proxmox, MinIO, the API servers, the private ranges, the
// LAN user and the internet client), enforced by the real kube-router through the lab's outside
// namespace: the outcome is the seed's, the agent reports it with an agreeing intended verdict and
// no mismatch, and names the outside end (named CIDR, or WORLD for the internet stand-ins).
func TestHomelabOutsideAgreesWithPolicyEngine(t *testing.T) {
	l := startHomelab(t)
	outside, err := traffic.StartExternalServers(l)
	require.NoError(t, err)
	t.Cleanup(func() { outside.Close() })
	named := l.NamedCIDRs()
	require.NotEmpty(t, named)
	var flags []string
	for _, n := range named {
		flags = append(flags, "--named-cidr", n)
	}
	a := startAgent(t, l, "node1", flags...)
	cases := l.ExternalCases()
	require.Len(t, cases, 25)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	var results []traffic.ExternalResult
	var attempts []attempt
	for i, c := range cases {
		r := traffic.RunExternalCase(ctx, l, l.servers, outside, c, 49000+i)
		results = append(results, r)
		attempts = append(attempts, attempt{allowed: r.Allowed, detail: r.Detail, tp: tuple{
			src: r.Src.Addr(), dst: r.Dst.Addr(), sport: uint32(r.Src.Port()), dport: uint32(r.Dst.Port()), proto: strings.ToLower(c.Protocol)}})
	}
	t.Logf("%d outside cases ran in %v", len(cases), time.Since(start).Round(time.Millisecond))
	a.waitFor("a judged flow for every outside case", 15*time.Second, func() bool {
		return !slices.ContainsFunc(attempts, func(at attempt) bool { return flowOf(a, at) == nil })
	})

	var enforcerDisagrees, engineDisagrees, misnamed []string
	allowedN := 0
	for i, r := range results {
		c, at := r.Case, attempts[i]
		if r.Allowed {
			allowedN++
		}
		if r.Allowed != c.Allowed {
			enforcerDisagrees = append(enforcerDisagrees, fmt.Sprintf("%q: expected allowed=%v, kube-router gave allowed=%v (%s)", c.Name, c.Allowed, r.Allowed, r.Detail))
		}
		f := flowOf(a, at)
		wantVerdict := flowlensv1.Verdict_DROPPED
		if r.Allowed {
			wantVerdict = flowlensv1.Verdict_FORWARDED
		}
		intended := f.GetPolicy().GetVerdict()
		intentAllows := intended == flowlensv1.IntendedVerdict_ALLOW || intended == flowlensv1.IntendedVerdict_NOT_ISOLATED
		if f.GetVerdict() != wantVerdict || intentAllows != r.Allowed || f.GetPolicy().GetMismatch() != flowlensv1.Mismatch_NONE {
			engineDisagrees = append(engineDisagrees, fmt.Sprintf("%q: kernel allowed=%v; flow verdict %v, intended %v, mismatch %v: %s",
				c.Name, r.Allowed, f.GetVerdict(), intended, f.GetPolicy().GetMismatch(), f.GetPolicy().GetSummary()))
		}
		end := f.GetDestination()
		if c.Inbound {
			end = f.GetSource()
		}
		kind, name := outsideEnd(named, c.Peer)
		if end.GetKind() != kind || end.GetName() != name {
			misnamed = append(misnamed, fmt.Sprintf("%q: outside end %s is %v %q, want %v %q", c.Name, c.Peer, end.GetKind(), end.GetName(), kind, name))
		}
	}
	t.Logf("%d outside cases: %d allowed, %d blocked by kube-router", len(results), allowedN, len(results)-allowedN)
	for _, want := range []string{"Homepage's Proxmox widget (10.0.1.10:8006)", "app -> 10.x on an allowed port"} {
		for i, r := range results {
			if r.Case.Name == want {
				f := flowOf(a, attempts[i])
				t.Logf("e.g. %q: %v to %v %q, intended %v: %s", want, f.GetVerdict(), f.GetDestination().GetKind(),
					f.GetDestination().GetName(), f.GetPolicy().GetVerdict(), f.GetPolicy().GetSummary())
			}
		}
	}
	assert.Empty(t, enforcerDisagrees, "kube-router vs the seed's expectations:\n%s", strings.Join(enforcerDisagrees, "\n"))
	assert.Empty(t, engineDisagrees, "flowlens's policy engine vs kube-router:\n%s", strings.Join(engineDisagrees, "\n"))
	assert.Empty(t, misnamed, "outside endpoints:\n%s", strings.Join(misnamed, "\n"))
	assert.Greater(t, allowedN, 0)
	assert.Less(t, allowedN, len(results), "some cases must be blocked")
}
