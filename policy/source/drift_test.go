package source

import (
	"testing"

	"github.com/stretchr/testify/assert"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func set(names ...string) []networkingv1.NetworkPolicy {
	out := []networkingv1.NetworkPolicy{}
	for _, n := range names {
		out = append(out, networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: n}})
	}
	return out
}

// Each step changes one side; the diff always reflects both latest sets.
func TestDriftFollowsBothSides(t *testing.T) {
	type step struct {
		files, cluster []networkingv1.NetworkPolicy // nil: unchanged
		want           []string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"nothing until both sides are known", []step{
			{files: set("a"), want: nil},
			{cluster: set("a"), want: []string{}},
		}},
		{"a file reload alone changes the diff", []step{
			{cluster: set("a"), want: nil},
			{files: set("a"), want: []string{}},
			{files: set("a", "b"), want: []string{"removed ns/b"}},
			{files: set("a"), want: []string{}},
		}},
		{"a cluster change alone changes the diff", []step{
			{files: set("a")},
			{cluster: set("a", "c"), want: []string{"added ns/c"}},
			{cluster: set("a"), want: []string{}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d Drift
			for i, s := range tc.steps {
				if s.files != nil {
					d.SetFiles(s.files)
				}
				if s.cluster != nil {
					d.SetCluster(s.cluster)
				}
				if s.want != nil || i == 0 {
					assert.Equal(t, s.want, d.Diff(), "step %d", i)
				}
			}
		})
	}
	assert.Nil(t, (*Drift)(nil).Diff(), "a nil Drift has no diff")
}
