package source

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/kubeapi/kubeapitest"
)

// The cluster's set arrives sorted after the first list, and again, whole,
// after each change.
func TestWatchClusterDeliversSortedSetOnEachChange(t *testing.T) {
	np := func(ns, name string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	cs := kubeapitest.New(np("b", "deny"), np("a", "z"), np("a", "allow"))
	sets := make(chan []string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchCluster(ctx, cs.ListWatch(networkingv1.SchemeGroupVersion, "networkpolicies"),
			slog.New(slog.NewTextHandler(io.Discard, nil)), func(set []networkingv1.NetworkPolicy) {
				var names []string
				for _, p := range set {
					names = append(names, p.Namespace+"/"+p.Name)
				}
				sets <- names
			})
	}()
	next := func() []string {
		select {
		case s := <-sets:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no set delivered")
			return nil
		}
	}
	assert.Equal(t, []string{"a/allow", "a/z", "b/deny"}, next())
	_, err := cs.NetworkingV1().NetworkPolicies("a").Create(ctx, np("a", "m"), metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a/allow", "a/m", "a/z", "b/deny"}, next())
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("WatchCluster did not return after its context ended")
	}
}

// The informer's cache keeps a policy's name and spec, not the metadata
// nothing reads (managedFields, kubectl's last-applied annotation, labels).
func TestSlimKeepsNameAndSpecOnly(t *testing.T) {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "deny", ResourceVersion: "7", Labels: map[string]string{"app": "x"},
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	got, err := slim(np)
	require.NoError(t, err)
	assert.Equal(t, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "deny", ResourceVersion: "7"}, Spec: np.Spec}, got)
	other := "not a policy"
	got, err = slim(other)
	require.NoError(t, err)
	assert.Equal(t, other, got, "other objects pass through")
}
