package deploy

import (
	"os"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowlens/flowlens/agent"
	"github.com/flowlens/flowlens/manifest"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	var plain struct {
		Groups []any `json:"groups"`
	}
	var cr struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	raw, err := os.ReadFile("prometheus/flowlens-rules.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(raw, &plain))
	raw, err = os.ReadFile("base/prometheusrule.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &cr))
	assert.Equal(t, "PrometheusRule", cr.Kind)
	require.NotEmpty(t, plain.Groups)
	assert.Equal(t, plain.Groups, cr.Spec.Groups, "regenerate base/prometheusrule.yaml from prometheus/flowlens-rules.yaml")
}

func TestManifestsParse(t *testing.T) {
	entries, err := os.ReadDir("base")
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		raw, err := os.ReadFile("base/" + e.Name())
		require.NoError(t, err)
		var v any
		if len(e.Name()) > 5 && e.Name()[len(e.Name())-5:] == ".json" {
			require.NoError(t, yaml.Unmarshal(raw, &v), e.Name())
			continue
		}
		docs, err := manifest.SplitDocuments(raw)
		require.NoError(t, err, e.Name())
		for i, doc := range docs {
			require.NoError(t, yaml.Unmarshal(doc, &v), "%s doc %d", e.Name(), i)
		}
	}
}

// TestDaemonSetArgsAreValidAgentFlags parses the DaemonSet's agent
// arguments with the agent's own flag set and validation, so a typo in a
// flag or a flow-log filter fails here and not on a user's cluster.
func TestDaemonSetArgsAreValidAgentFlags(t *testing.T) {
	c, err := AgentContainer()
	require.NoError(t, err)
	assert.Equal(t, []string{"/flowlens-agent"}, c.Command)

	cfg := agent.DefaultConfig()
	fs := pflag.NewFlagSet("flowlens-agent", pflag.ContinueOnError)
	cfg.BindFlags(fs)
	require.NoError(t, fs.Parse(c.Args))
	cfg.NodeName = "node1" // from the downward API in the pod
	require.NoError(t, cfg.Validate())
	f, err := cfg.FlowLogFilter()
	require.NoError(t, err)
	require.NotNil(t, f, "the DaemonSet logs drops and mismatches only")
	assert.True(t, f.Match(&flowlensv1.Flow{Verdict: flowlensv1.Verdict_DROPPED}))
	assert.False(t, f.Match(&flowlensv1.Flow{Verdict: flowlensv1.Verdict_FORWARDED}))
	assert.Equal(t, "127.0.0.1:4280", cfg.GRPCAddress, "the API stays on the node's loopback")
}

// TestDaemonSetMemory keeps the DaemonSet's memory settings in the order
// the GC and the OOM killer need (daemonset.yaml says where the figures
// come from): the Go runtime's soft limit plus the kernel maps charged to
// the cgroup fit in the request, and the request in the hard limit.
func TestDaemonSetMemory(t *testing.T) {
	c, err := AgentContainer()
	require.NoError(t, err)
	limitBytes, err := GoMemLimit(c)
	require.NoError(t, err)
	soft := limitBytes >> 20
	const kernelMaps = 26 // MiB at the default map sizes, preallocated at load
	request, limit := c.Resources.Requests.Memory().Value()>>20, c.Resources.Limits.Memory().Value()>>20
	assert.LessOrEqual(t, soft+kernelMaps, request, "GOMEMLIMIT and the kernel maps fit in the request")
	assert.LessOrEqual(t, request, limit)
}

func TestGoMemLimit(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int64
		err   string
	}{
		{value: "72MiB", want: 72 << 20},
		{value: "1GiB", want: 1 << 30},
		{value: "4096KiB", want: 4 << 20},
		{value: "1000B", want: 1000},
		{value: "123456", want: 123456},
		{value: "72Mi", err: `GOMEMLIMIT "72Mi"`},
		{value: "-1MiB", err: `GOMEMLIMIT "-1MiB"`},
		{value: "", err: `GOMEMLIMIT ""`},
	} {
		got, err := GoMemLimit(corev1.Container{Env: []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: tc.value}}})
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.value)
			continue
		}
		require.NoError(t, err, tc.value)
		assert.Equal(t, tc.want, got, tc.value)
	}
	_, err := GoMemLimit(corev1.Container{})
	assert.ErrorContains(t, err, "no GOMEMLIMIT")
}
