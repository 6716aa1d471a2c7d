package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEnforcerFlag: the profile turns a ping the policies deny into what
// K3s really does, in explain, matrix and test alike; TCP is untouched.
func TestEnforcerFlag(t *testing.T) {
	ping := []string{"explain", "--from", "linkding/linkding-0", "--to", "homepage/homepage-0", "--port", "ICMP"}
	out, _, err := run(t, append(ping, homelabFlags...)...)
	require.NoError(t, err)
	assert.NotContains(t, out, "accepted anyway", "the default is the spec")

	out, _, err = run(t, append(append(ping, "--enforcer", "k3s-kube-router"), homelabFlags...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "DENY")
	assert.Contains(t, out, "accepted anyway by enforcer k3s-kube-router: K3s's kube-router accepts ICMP echo")

	tcp := []string{"explain", "--from", "linkding/linkding-0", "--to", "homepage/homepage-0", "--port", "80", "--enforcer", "k3s-kube-router"}
	out, _, err = run(t, append(tcp, homelabFlags...)...)
	require.NoError(t, err)
	assert.NotContains(t, out, "accepted anyway")

	exp := filepath.Join(t.TempDir(), "ping.yaml")
	require.NoError(t, os.WriteFile(exp, []byte("- {from: linkding/linkding-0, to: homepage/homepage-0, protocol: ICMP, allowed: true}\n"), 0o600))
	out, _, err = run(t, append([]string{"test", "--expect", exp}, homelabFlags...)...)
	assert.Error(t, err, "the spec denies the ping")
	assert.Contains(t, out, "expected allow, policies deny")
	out, _, err = run(t, append([]string{"test", "--expect", exp, "--enforcer", "k3s-kube-router"}, homelabFlags...)...)
	assert.NoError(t, err, "K3s lets it through: %s", out)

	m1, _, err := run(t, append([]string{"matrix", "--port", "ICMP"}, homelabFlags...)...)
	require.NoError(t, err)
	m2, _, err := run(t, append([]string{"matrix", "--port", "ICMP", "--enforcer", "k3s-kube-router"}, homelabFlags...)...)
	require.NoError(t, err)
	assert.NotEqual(t, m1, m2, "the matrix predicts the enforcer")

	_, _, err = run(t, append(append(ping, "--enforcer", "calico"), homelabFlags...)...)
	assert.ErrorContains(t, err, "--enforcer")
}
