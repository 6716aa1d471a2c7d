package observe

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/portforward"
)

func agentPod(name, node string, phase corev1.PodPhase, created time.Time, labels map[string]string) *corev1.Pod {
	if labels == nil {
		labels = map[string]string{"app.kubernetes.io/name": "flowlens"}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "flowlens", Labels: labels, CreationTimestamp: metav1.NewTime(created)},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

// The port-forward itself needs an API server and is not tested here; pod
// selection is.
func TestFindAgentPods(t *testing.T) {
	old, young := time.Unix(1000, 0), time.Unix(2000, 0)
	cs := fake.NewClientset(
		agentPod("flowlens-a", "k3s-2", corev1.PodRunning, old, nil),
		agentPod("flowlens-b", "k3s-1", corev1.PodRunning, old, nil),
		agentPod("flowlens-b2", "k3s-1", corev1.PodRunning, young, nil), // rollout: newer pod wins
		agentPod("flowlens-c", "k3s-3", corev1.PodPending, old, nil),
		agentPod("other", "k3s-4", corev1.PodRunning, old, map[string]string{"app": "other"}),
	)
	list := func(ctx context.Context, ns string, o metav1.ListOptions) (*corev1.PodList, error) {
		return cs.CoreV1().Pods(ns).List(ctx, o)
	}
	names := func(nodes ...string) ([]string, error) {
		pods, err := findAgentPods(context.Background(), list, "flowlens", nodes)
		var out []string
		for _, p := range pods {
			out = append(out, p.Spec.NodeName+"="+p.Name)
		}
		return out, err
	}

	got, err := names()
	require.NoError(t, err)
	assert.Equal(t, []string{"k3s-1=flowlens-b2", "k3s-2=flowlens-a"}, got)

	got, err = names("k3s-2")
	require.NoError(t, err)
	assert.Equal(t, []string{"k3s-2=flowlens-a"}, got)

	got, err = names("k3s-*")
	require.NoError(t, err)
	assert.Len(t, got, 2)

	_, err = names("k3s-3")
	assert.ErrorContains(t, err, `no running flowlens agent pod on node "k3s-3" in namespace flowlens`)

	_, err = findAgentPods(context.Background(), list, "elsewhere", nil)
	assert.ErrorContains(t, err, "no running flowlens agent pods in namespace elsewhere")
}

// A forward that reports no port and no error is an error with a message,
// not a wrapped nil.
func TestLocalAddrOfForward(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ports []portforward.ForwardedPort
		err   error
		want  string
		fails string
	}{
		{"port", []portforward.ForwardedPort{{Local: 34567, Remote: 4280}}, nil, "127.0.0.1:34567", ""},
		{"no port, no error", nil, nil, "", "local port of the forward: the forwarder reports no port"},
		{"error", nil, errors.New("listeners not ready"), "", "local port of the forward: listeners not ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := localAddr(tc.ports, tc.err)
			if tc.fails != "" {
				require.EqualError(t, err, tc.fails)
				assert.NotContains(t, err.Error(), "%!")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
