package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A Set is compiled against each new cluster state as the agent does:
// pods come and go, take each other's addresses, carry two addresses, and
// named ports resolve against whichever pod holds the address now.
func TestSetCompilesAgainstEachState(t *testing.T) {
	set, err := NewSet(policies(t, np("a", "deny", denyIngressA)+
		np("a", "allow-http", "  podSelector: {}\n  ingress:\n  - ports: [{port: http}]")))
	require.NoError(t, err)
	assert.Equal(t, 2, set.Len())

	pod := func(name, port string, ips ...string) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name}}
		for _, a := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: a})
		}
		if port != "" {
			p.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: port, ContainerPort: 80}, {Name: "unused", ContainerPort: 81}}}}
		}
		return p
	}
	type probe struct {
		dst     string
		port    uint16
		pod     string // who is at dst ("" none)
		allowed bool
	}
	for _, tc := range []struct {
		name   string
		pods   []corev1.Pod
		probes []probe
	}{
		{"one pod with a named port", []corev1.Pod{pod("web", "http", "10.0.0.1")}, []probe{
			{"10.0.0.1", 80, "a/web", true},
			{"10.0.0.1", 81, "a/web", false}, // "unused" is no rule's port
		}},
		{"two addresses, the first taken by a pod sorting earlier", []corev1.Pod{pod("web", "http", "10.0.0.1", "fd00::1"), pod("api", "", "10.0.0.1")}, []probe{
			{"10.0.0.1", 80, "a/api", false},
			{"fd00::1", 80, "a/web", true},
		}},
		{"the address moved to a pod without the port", []corev1.Pod{pod("web2", "", "10.0.0.1")}, []probe{
			{"10.0.0.1", 80, "a/web2", false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := set.Compile(ClusterState{Pods: tc.pods})
			require.NoError(t, err)
			for _, p := range tc.probes {
				v := e.Evaluate(Query{Src: addr("192.0.2.1"), Dst: addr(p.dst), Port: p.port})
				assert.Equal(t, p.pod, v.DstPod, "%s", p.dst)
				assert.Equal(t, p.allowed, v.Allowed, "%s:%d", p.dst, p.port)
				if p.pod != "" {
					a, ok := e.PodAddr(p.pod)
					assert.True(t, ok, p.pod)
					at, _ := e.PodAt(a)
					assert.Equal(t, p.pod, at, "PodAddr and PodAt agree")
				}
			}
			_, ok := e.PodAddr("a/nobody")
			assert.False(t, ok)
		})
	}
}
