package enrich

import (
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/manifest"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStaticFromManifest(t *testing.T) {
	objs, err := manifest.Load("testdata/cluster.yaml")
	require.NoError(t, err)
	named, err := ParseNamedCIDRs([]string{"lan=192.168.0.0/16"})
	require.NoError(t, err)
	s, err := NewStatic(objs, Config{NodeName: "node-a", NamedCIDRs: named})
	require.NoError(t, err)
	s.WithSource("static:testdata/cluster.yaml")

	web := s.Lookup(addr("10.42.0.17"), time.Now())
	assert.Equal(t, flowlensv1.EndpointKind_POD, web.Kind)
	assert.Equal(t, "linkding/linkding-7c9f-abcde", web.Namespace+"/"+web.Name)
	assert.Equal(t, Workload{"Deployment", "linkding"}, web.Workload, "pod-template-hash rule without ReplicaSets")
	assert.Equal(t, []string{"app.kubernetes.io/part-of=linkding", "kubernetes.io/metadata.name=linkding"}, web.NamespaceLabels)
	assert.Equal(t, []NamedPort{{Name: "http", Port: 9090, Protocol: "TCP"}}, web.Ports)

	assert.Equal(t, flowlensv1.EndpointKind_HOST, s.Lookup(addr("192.168.1.10"), time.Now()).Kind, "node beats the named CIDR")
	lan := s.Lookup(addr("192.168.1.99"), time.Now())
	assert.Equal(t, flowlensv1.EndpointKind_CIDR, lan.Kind)
	assert.Equal(t, "lan", lan.Endpoint().Name)

	ref, ok := s.LookupService(addr("10.43.0.50"), 5432, "TCP")
	require.True(t, ok)
	assert.Equal(t, "postgresql-cluster-rw", ref.Name)
	ref, ok = s.ServiceForBackend(netipAddrPort("10.42.0.9", 5432), "TCP")
	require.True(t, ok)
	assert.Equal(t, "database", ref.Namespace)

	st := s.Status()
	assert.Equal(t, Status{Source: "static:testdata/cluster.yaml", Synced: true, Pods: 2, Services: 1}, st)
	nss, pods := s.Snapshot()
	assert.Len(t, nss, 2)
	require.Len(t, pods, 2)
	assert.Equal(t, "database", pods[0].Namespace, "sorted")
	select {
	case <-s.Changed():
		t.Fatal("a static source never changes")
	default:
	}
}

func TestStaticRejectsBadAddress(t *testing.T) {
	objs, err := manifest.Decode("bad.yaml", strings.NewReader(`
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: a}
status:
  podIPs:
  - ip: 10.42.0.300
`))
	require.NoError(t, err)
	_, err = NewStatic(objs, Config{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.yaml doc 1")
	assert.Contains(t, err.Error(), "Pod a/p")
	assert.Contains(t, err.Error(), "10.42.0.300")
}
