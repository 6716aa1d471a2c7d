package kubeapi

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group versions the scheme holds, with the kinds of each the agent lists
// and watches. Keep in sync with what enrich and policy/source watch: a
// resource of another group has no REST client (ListWatch says so).
var (
	Core       = corev1.SchemeGroupVersion
	Networking = networkingv1.SchemeGroupVersion
	Discovery  = discoveryv1.SchemeGroupVersion
)

// newScheme registers only the watched kinds and their lists, not their
// groups' other kinds: decoding needs nothing else, and every registered
// type costs heap at start-up.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for gv, types := range map[schema.GroupVersion][]runtime.Object{
		Core: {
			&corev1.Pod{}, &corev1.PodList{},
			&corev1.Namespace{}, &corev1.NamespaceList{},
			&corev1.Node{}, &corev1.NodeList{},
			&corev1.Service{}, &corev1.ServiceList{},
		},
		Networking: {&networkingv1.NetworkPolicy{}, &networkingv1.NetworkPolicyList{}},
		Discovery:  {&discoveryv1.EndpointSlice{}, &discoveryv1.EndpointSliceList{}},
	} {
		s.AddKnownTypes(gv, types...)
		// Watch events, list options and Status, in this group version.
		metav1.AddToGroupVersion(s, gv)
	}
	return s
}
