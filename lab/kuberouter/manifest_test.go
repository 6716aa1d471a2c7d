package kuberouter

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	cluster := filepath.Join(dir, "cluster.yaml")
	require.NoError(t, os.WriteFile(cluster, []byte(`# a comment-only document is skipped
---
apiVersion: v1
kind: Node
metadata: {name: node1}
status: {addresses: [{type: InternalIP, address: 192.0.2.1}]}
---
apiVersion: v1
kind: NamespaceList
items:
  - metadata: {name: demo, labels: {kubernetes.io/metadata.name: demo}}
---
apiVersion: v1
kind: Pod
metadata: {name: fe, namespace: demo, labels: {app: fe}}
status: {phase: Running, podIP: 10.42.0.10, hostIP: 192.0.2.1}
---
apiVersion: v1
kind: Service
metadata: {name: ignored, namespace: demo}
`), 0o644))
	pols := filepath.Join(dir, "pols")
	require.NoError(t, os.MkdirAll(pols, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(pols, "a.yaml"), []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: demo}
spec: {podSelector: {}, policyTypes: [Ingress]}
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(pols, "README.md"), []byte("not yaml"), 0o644))

	objs, err := LoadFiles(cluster, pols)
	require.NoError(t, err)
	require.Len(t, objs.Nodes, 1)
	require.Len(t, objs.Namespaces, 1)
	assert.Equal(t, "demo", objs.Namespaces[0].Labels["kubernetes.io/metadata.name"])
	require.Len(t, objs.Pods, 1)
	assert.Equal(t, "192.0.2.1", objs.Pods[0].Status.HostIP)
	require.Len(t, objs.Policies, 1)
	assert.Equal(t, "deny", objs.Policies[0].Name)
}

func TestLoadFilesErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ doc, want string }{
		"no kind":       {"metadata: {name: x}\n", "document 0: no kind"},
		"unknown field": {"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspecc: {}\n", `unknown field "specc"`},
		"bad yaml":      {"kind: Pod\n  x: [\n", "parse"},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, name+".yaml")
			require.NoError(t, os.WriteFile(f, []byte(tc.doc), 0o644))
			_, err := LoadFiles(f)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, f)
		})
	}
	_, err := LoadFiles(filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml")
}
