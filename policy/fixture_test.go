package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/manifest"
)

// fixtureState: namespaces a (team=x), b (team=blue), c (no labels, and no
// Namespace object for d); a hostNetwork pod whose node IP must not count
// as a pod.
const fixtureState = `
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: blue, env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: c}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: web, namespace: a, labels: {app: web, tier: front}}
  spec:
    containers:
    - name: c
      ports:
      - {name: http, containerPort: 80}
      - {name: dns, containerPort: 53, protocol: UDP}
  status: {podIP: 10.0.0.1}
- metadata: {name: db, namespace: a, labels: {app: db}}
  spec: {containers: [{name: c, ports: [{name: pg, containerPort: 5432}]}]}
  status: {podIPs: [{ip: 10.0.0.2}]}
- metadata: {name: client, namespace: b, labels: {app: client}}
  status: {podIP: 10.0.1.1}
- metadata: {name: web, namespace: b, labels: {app: web}}
  status: {podIP: 10.0.1.2}
- metadata: {name: x, namespace: c, labels: {app: x}}
  spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
  status: {podIP: 10.0.2.1}
- metadata: {name: why, namespace: d, labels: {app: client}}
  status: {podIP: 10.0.3.1}
- metadata: {name: client, namespace: a, labels: {app: client}}
  status: {podIP: 10.0.0.3}
- metadata: {name: old, namespace: a, labels: {app: client}}
  status: {podIP: 10.0.0.1, phase: Succeeded}
- metadata: {name: hostnet, namespace: kube-system, labels: {app: client}}
  spec: {hostNetwork: true}
  status: {podIP: 192.168.1.10}
`

func decodeObjects(t testing.TB, docs string) *manifest.Objects {
	t.Helper()
	o, err := manifest.Decode("test.yaml", strings.NewReader(docs))
	require.NoError(t, err)
	return o
}

func fixture(t testing.TB) ClusterState {
	o := decodeObjects(t, fixtureState)
	return ClusterState{Namespaces: o.Namespaces, Pods: o.Pods}
}

func policies(t testing.TB, docs string) []networkingv1.NetworkPolicy {
	if docs == "" {
		return nil
	}
	return decodeObjects(t, docs).NetworkPolicies
}

// np writes a NetworkPolicy document; spec is YAML indented by two spaces.
func np(ns, name, spec string) string {
	return "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
		", namespace: " + ns + "}\nspec:\n" + spec + "\n"
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

var fixtureIPs = map[string]string{
	"a/web": "10.0.0.1", "a/db": "10.0.0.2", "a/client": "10.0.0.3", "b/client": "10.0.1.1",
	"b/web": "10.0.1.2", "c/x": "10.0.2.1", "d/why": "10.0.3.1",
}

func ip(name string) netip.Addr {
	if s, ok := fixtureIPs[name]; ok {
		return addr(s)
	}
	return addr(name)
}
