package enrich

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// fullPod sets every field podInfo keeps, and some it drops.
func fullPod() *corev1.Pod {
	yes := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg-0", ResourceVersion: "42", UID: "u-1",
			Labels:          map[string]string{"app": "pg", "a-b": "x", "a": "y"},
			Annotations:     map[string]string{"big": "dropped"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Other", Name: "not-controller"}, {Kind: "StatefulSet", Name: "pg", Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "node-a", HostNetwork: true, Containers: []corev1.Container{
			{Name: "pg", Image: "dropped", Ports: []corev1.ContainerPort{
				{Name: "postgresql", ContainerPort: 5432}, {ContainerPort: 9000}, {Name: "metrics", ContainerPort: 9187, Protocol: corev1.ProtocolTCP}}},
			{Name: "no-named-ports", Ports: []corev1.ContainerPort{{ContainerPort: 1}}},
			{Name: "dns", Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.0.9", HostIP: "dropped",
			PodIPs: []corev1.PodIP{{IP: "10.42.0.9"}, {IP: "fd00::9"}}},
	}
}

func TestPodInfoRoundTrip(t *testing.T) {
	yes := true
	tests := []struct {
		name string
		in   *corev1.Pod
		want corev1.Pod
	}{
		{name: "every kept field", in: fullPod(), want: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg-0", ResourceVersion: "42",
				Labels:          map[string]string{"app": "pg", "a-b": "x", "a": "y"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "pg", Controller: &yes}}},
			Spec: corev1.PodSpec{NodeName: "node-a", HostNetwork: true, Containers: []corev1.Container{
				{Name: "pg", Ports: []corev1.ContainerPort{{Name: "postgresql", ContainerPort: 5432}, {Name: "metrics", ContainerPort: 9187, Protocol: corev1.ProtocolTCP}}},
				{Name: "dns", Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.0.9", PodIPs: []corev1.PodIP{{IP: "10.42.0.9"}, {IP: "fd00::9"}}},
		}},
		{name: "bare pod", in: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, want: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}},
		{name: "succeeded, podIP only", in: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "job-1"},
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.42.0.7"}},
			want: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "job-1"}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.42.0.7"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := newIndex(Config{}).podInfo(tt.in)
			assert.Equal(t, tt.want, info.pod())
			cp, ok := info.DeepCopyObject().(*podInfo)
			require.True(t, ok)
			assert.Equal(t, info, cp)
			key, err := cache.MetaNamespaceKeyFunc(info)
			require.NoError(t, err)
			assert.Equal(t, cache.MetaObjectToName(tt.in).String(), key, "the store keys it as the Pod")
			assert.Equal(t, tt.in.ResourceVersion, info.GetObjectMeta().GetResourceVersion())
		})
	}
}

// TestPodInfoEveryField fails when podInfo or its shape gains a field
// fullPod does not set, so a new field cannot go unchecked by the round
// trip.
func TestPodInfoEveryField(t *testing.T) {
	info := newIndex(Config{}).podInfo(fullPod())
	for _, v := range []reflect.Value{reflect.ValueOf(*info), reflect.ValueOf(*info.podShape)} {
		for i := range v.NumField() {
			assert.False(t, v.Field(i).IsZero(), "%s.%s is not set by fullPod", v.Type().Name(), v.Type().Field(i).Name)
		}
	}
	assert.Equal(t, "pg", info.label("app"))
	assert.Equal(t, "x", info.label("a-b"))
	assert.Empty(t, info.label("missing"))
	assert.Empty(t, info.label("ap"))
	assert.Equal(t, []string{"a-b=x", "a=y", "app=pg"}, info.labels, "sorted as labelStrings sorts")
	assert.Equal(t, labelStrings(fullPod().Labels), info.labels)
	assert.Equal(t, []NamedPort{{"postgresql", 5432, "TCP"}, {"metrics", 9187, "TCP"}, {"dns", 53, "UDP"}}, info.named)
}

// TestPodShapes: pods of one template share a shape, and a shape is
// exactly its pods' labels even when a key holds "=" (a static file is
// not validated).
func TestPodShapes(t *testing.T) {
	ix := newIndex(Config{})
	a := ix.podInfo(pod("a", "web-1", nil, labels("app", "web", "tier", "fe"), ownedBy("ReplicaSet", "web-1a")))
	b := ix.podInfo(pod("a", "web-2", nil, labels("app", "web", "tier", "fe"), ownedBy("ReplicaSet", "web-1a"), onNode("node-b")))
	assert.Same(t, a.podShape, b.podShape, "same namespace, labels, ports and controller")
	assert.Equal(t, "node-b", b.nodeName())
	for _, other := range []*corev1.Pod{
		pod("b", "web-3", nil, labels("app", "web", "tier", "fe"), ownedBy("ReplicaSet", "web-1a")),
		pod("a", "web-4", nil, labels("app", "web", "tier", "be"), ownedBy("ReplicaSet", "web-1a")),
		pod("a", "web-5", nil, labels("app", "web", "tier", "fe"), ownedBy("ReplicaSet", "web-2b")),
		pod("a", "web-6", nil, labels("app", "web", "tier", "fe"), ownedBy("ReplicaSet", "web-1a"), hostNetwork),
		pod("a", "web-7", nil, labels("app", "web", "tierfe", ""), ownedBy("ReplicaSet", "web-1a")),
	} {
		assert.NotSame(t, a.podShape, ix.podInfo(other).podShape, other.Name)
	}

	odd := ix.podInfo(pod("a", "odd", nil, labels("a=b", "c", "a", "b=c", "x", "")))
	assert.Equal(t, map[string]string{"a=b": "c", "a": "b=c", "x": ""}, odd.labelMap())
	assert.Equal(t, "b=c", odd.label("a"))
	assert.Equal(t, "c", odd.label("a=b"))
	assert.Equal(t, []string{"a=b=c", "a=b=c", "x="}, odd.labels)
}
