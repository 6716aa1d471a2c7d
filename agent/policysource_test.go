package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/kubeapi/kubeapitest"
)

const denyIngressYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: database, name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

// The drift between the files and the cluster follows both sides: a file
// reload that makes them differ shows in the status without any change in
// the cluster (it used to be recomputed only when the cluster changed).
func TestJudgeDriftFollowsFileReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "deny.yaml")
	require.NoError(t, os.WriteFile(file, []byte(denyIngressYAML), 0o600))
	client := kubeapitest.New(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "database", Name: "default-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	})
	cfg := DefaultConfig()
	cfg.Policies = dir
	cfg.PolicyReloadInterval = 10 * time.Millisecond
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	j, feed, err := newJudgeFromConfig(cfg, log, nil, client, nil)
	require.NoError(t, err)
	require.NotNil(t, j)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, f := range feed {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, f(ctx)) }()
	}
	status := func() string { _, st := j.State(); return st }
	require.Eventually(t, func() bool { return status() == "ok: 1 policies, 0 pods" }, 5*time.Second, 10*time.Millisecond,
		"files and cluster agree")
	// Let the cluster side deliver before the files change, so the change
	// below is a file reload alone.
	require.Eventually(t, func() bool { return j.drift.Diff() != nil }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, os.WriteFile(file, []byte(strings.Replace(denyIngressYAML, "[Ingress]", "[Ingress, Egress]", 1)), 0o600))
	want := "ok: 1 policies, 0 pods; the cluster's set differs from the files: changed database/default-deny"
	assert.Eventually(t, func() bool { return status() == want }, 5*time.Second, 10*time.Millisecond, "after the reload")
	assert.Equal(t, want, status())
}

// A --policies set that does not load at start-up stops the agent with the
// file and the problem named; once started, a broken reload keeps the last
// good set.
func TestPoliciesMalformedAtStartFailsLaterKeepsLastGood(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	broken := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c}\nspec: {bogus: 1}\n"

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(broken), 0o600))
	cfg := DefaultConfig()
	cfg.Policies = dir
	j, _, err := newJudgeFromConfig(cfg, log, nil, nil, nil)
	require.Error(t, err)
	assert.Nil(t, j)
	assert.ErrorContains(t, err, "--policies "+dir)
	assert.ErrorContains(t, err, "bad.yaml")
	assert.ErrorContains(t, err, "bogus")

	good := t.TempDir()
	file := filepath.Join(good, "deny.yaml")
	require.NoError(t, os.WriteFile(file, []byte(denyIngressYAML), 0o600))
	cfg.Policies = good
	cfg.PolicyReloadInterval = 10 * time.Millisecond
	j, feed, err := newJudgeFromConfig(cfg, log, nil, nil, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, f := range feed {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, f(ctx)) }()
	}
	status := func() string { _, st := j.State(); return st }
	require.Eventually(t, func() bool { return status() == "ok: 1 policies, 0 pods" }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, os.WriteFile(file, []byte(broken), 0o600))
	require.Eventually(t, func() bool { return strings.HasPrefix(status(), "error (keeping the last good set)") },
		5*time.Second, 10*time.Millisecond)
	j.mu.Lock()
	kept := j.policies.Len()
	j.mu.Unlock()
	assert.Equal(t, 1, kept, "the last good set stays")
	assert.NotNil(t, j.engine.Load(), "flows are still judged")
}
