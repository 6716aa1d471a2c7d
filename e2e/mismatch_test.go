package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// intentYAML is an intended set that differs from what the lab enforces:
// it allows frontend -> db:8080 (the kernel rejects it) and has no rule for
// frontend -> backend:8080 (the kernel accepts it).
const intentYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: demo}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend-to-db, namespace: demo}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: frontend}}}]
      ports: [{port: 8080}]
`

// TestMismatchAgainstIntendedFiles: with --policies pointing at a GitOps
// folder that disagrees with what the kernel enforces, each flow carries
// the mismatch, the metric counts it, a reload of the folder is picked up,
// and a broken file keeps the last good set.
func TestMismatchAgainstIntendedFiles(t *testing.T) {
	l := startLab(t, 1)
	dir := t.TempDir()
	intent := filepath.Join(dir, "network-policies")
	require.NoError(t, os.MkdirAll(intent, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(intent, "policies.yaml"), []byte(intentYAML), 0o644))
	l.policyFile = intent // the agent's --policies
	a := startAgent(t, l, "node1", "--policy-reload-interval", "1s")

	fe := l.Pod("demo/frontend")
	_, db := podAddr(t, l, "demo/db", 8080)
	tpDrop, _, err := tcpExchange(t, fe, db, 45001, []byte("x"))
	requireRefused(t, err)
	_, be := podAddr(t, l, "demo/backend", 8080)
	tpAllow, reply, err := tcpExchange(t, fe, be, 45002, []byte("hello"))
	require.NoError(t, err)
	okReply(t, reply, []byte("hello"), "demo/backend")

	drop := and(tpDrop.is, verdict(flowlensv1.Verdict_DROPPED))
	fwd := and(tpAllow.is, verdict(flowlensv1.Verdict_FORWARDED))
	a.waitFor("both flows", 5*time.Second, func() bool { return len(a.match(drop)) > 0 && len(a.match(fwd)) > 0 })
	d := a.match(drop)[0]
	assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, d.GetPolicy().GetVerdict(), d.GetPolicy().GetSummary())
	assert.Equal(t, flowlensv1.Mismatch_UNEXPECTED_DROP, d.GetPolicy().GetMismatch())
	assert.Contains(t, d.GetPolicy().GetSummary(), "allow-frontend-to-db")
	assert.Equal(t, "files:"+intent, d.GetPolicy().GetSource())
	f := a.match(fwd)[0]
	assert.Equal(t, flowlensv1.IntendedVerdict_DENY, f.GetPolicy().GetVerdict(), f.GetPolicy().GetSummary())
	assert.Equal(t, flowlensv1.Mismatch_UNEXPECTED_ALLOW, f.GetPolicy().GetMismatch())

	metrics := scrape(t, a)
	assert.Contains(t, metrics, `flowlens_policy_mismatches_total{destination_namespace="demo",mismatch="UNEXPECTED_DROP",source_namespace="demo"} 1`)
	assert.Contains(t, metrics, `flowlens_policy_mismatches_total{destination_namespace="demo",mismatch="UNEXPECTED_ALLOW",source_namespace="demo"}`)

	// A broken file: the last good set stays in force and the status says why.
	require.NoError(t, os.WriteFile(filepath.Join(intent, "broken.yaml"), []byte("kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: x, namespace: demo}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}\n"), 0o644))
	require.Eventually(t, func() bool {
		st, err := a.status()
		return err == nil && strings.Contains(st.GetPolicyState(), "broken.yaml")
	}, 5*time.Second, 100*time.Millisecond, "the status names the bad file")
	// The refused connections below are all frontend's attempts on db:8080,
	// one aggregated flow: each is judged in the record after those before.
	seen := len(a.match(and(tpDrop.is, verdict(flowlensv1.Verdict_DROPPED))))
	tp2, _, err := tcpExchange(t, fe, db, 45003, []byte("x"))
	requireRefused(t, err)
	a.waitFor("drop judged by the last good set", 5*time.Second, func() bool {
		m := a.match(and(tp2.is, verdict(flowlensv1.Verdict_DROPPED)))
		return len(m) > seen && m[len(m)-1].GetPolicy().GetMismatch() == flowlensv1.Mismatch_UNEXPECTED_DROP
	})
	seen = len(a.match(and(tp2.is, verdict(flowlensv1.Verdict_DROPPED))))

	// Fixing the folder to match the kernel ends the mismatches.
	require.NoError(t, os.Remove(filepath.Join(intent, "broken.yaml")))
	var buf strings.Builder
	require.NoError(t, l.Lab.PolicyYAML(&buf))
	require.NoError(t, os.WriteFile(filepath.Join(intent, "policies.yaml"), []byte(buf.String()), 0o644))
	require.Eventually(t, func() bool {
		st, err := a.status()
		return err == nil && strings.HasPrefix(st.GetPolicyState(), "ok: 3 policies")
	}, 5*time.Second, 100*time.Millisecond, "the fixed set is loaded")
	tp3, _, err := tcpExchange(t, fe, db, 45004, []byte("x"))
	requireRefused(t, err)
	a.waitFor("drop judged by the fixed set", 5*time.Second, func() bool {
		m := a.match(and(tp3.is, verdict(flowlensv1.Verdict_DROPPED)))
		return len(m) > seen && m[len(m)-1].GetPolicy().GetMismatch() == flowlensv1.Mismatch_NONE
	})
}

// scrape reads the agent's /metrics from inside its node namespace.
func scrape(t *testing.T, a *agentProc) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return dialInNetNS(ctx, a.node.NetNS, addr)
	}}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://127.0.0.1:9280/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}
