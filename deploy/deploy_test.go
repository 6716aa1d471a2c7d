// Package deploy holds the Kubernetes manifests; its test keeps the
// PrometheusRule in step with the rules file promtool tests.
package deploy

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
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
		for i, doc := range splitDocs(raw) {
			require.NoError(t, yaml.Unmarshal(doc, &v), "%s doc %d", e.Name(), i)
		}
	}
}

func splitDocs(raw []byte) [][]byte {
	var docs [][]byte
	start := 0
	for i := 0; i+4 <= len(raw); i++ {
		if (i == 0 || raw[i-1] == '\n') && string(raw[i:i+3]) == "---" && (raw[i+3] == '\n') {
			docs = append(docs, raw[start:i])
			start = i + 4
		}
	}
	return append(docs, raw[start:])
}
