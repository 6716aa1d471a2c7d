package lab

import (
	"io"

	"github.com/flowlens/flowlens/lab/scenario"
)

// ClusterYAML writes the cluster state the lab built: Namespaces, Nodes, Pods, Services and
// EndpointSlices, as multi-document YAML.
func (l *Lab) ClusterYAML(w io.Writer) error {
	l.mu.Lock()
	objs := scenario.ClusterObjects(l.prefix, l.scenario, l.nodes, l.pods)
	l.mu.Unlock()
	return scenario.WriteDocs(w, objs, true)
}

// PolicyYAML writes the scenario's NetworkPolicies (the intent the lab's rules enforce).
func (l *Lab) PolicyYAML(w io.Writer) error {
	return scenario.WritePolicies(w, l.scenario)
}

// WriteClusterYAML writes ClusterYAML to path.
func (l *Lab) WriteClusterYAML(path string) error { return scenario.WriteFile(path, l.ClusterYAML) }

// WritePolicyYAML writes PolicyYAML to path.
func (l *Lab) WritePolicyYAML(path string) error { return scenario.WriteFile(path, l.PolicyYAML) }
