// Package kubeapitest serves kubeapi's list-watches from client-go's fake
// clientset, for unit tests: the fake clientset links every API group, which
// the agent's binary must not.
package kubeapitest

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// Clientset answers as kubeapi.Client does, through the fake clientset's
// typed calls, so its tracker and reactors (failing lists and watches)
// apply.
type Clientset struct{ *fake.Clientset }

// New seeds a fake clientset with objs.
func New(objs ...runtime.Object) Clientset { return Clientset{fake.NewClientset(objs...)} }

type (
	listFunc  = func(context.Context, metav1.ListOptions) (runtime.Object, error)
	watchFunc = func(context.Context, metav1.ListOptions) (watch.Interface, error)
)

// typedClient is the List and Watch of one of the fake's typed clients.
type typedClient[L runtime.Object] interface {
	List(context.Context, metav1.ListOptions) (L, error)
	Watch(context.Context, metav1.ListOptions) (watch.Interface, error)
}

// typed adapts a typed client to a list-watch's untyped functions.
func typed[L runtime.Object](c typedClient[L]) (listFunc, watchFunc) {
	return func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return c.List(ctx, o) }, c.Watch
}

// ListWatch serves the typed resources kubeapi's scheme holds.
func (c Clientset) ListWatch(gv schema.GroupVersion, resource string) cache.ListerWatcher {
	core, disc, netw := c.CoreV1(), c.DiscoveryV1(), c.NetworkingV1()
	var (
		list listFunc
		wat  watchFunc
	)
	switch gv.WithResource(resource) {
	case corev1.SchemeGroupVersion.WithResource("pods"):
		list, wat = typed(core.Pods(""))
	case corev1.SchemeGroupVersion.WithResource("namespaces"):
		list, wat = typed(core.Namespaces())
	case corev1.SchemeGroupVersion.WithResource("nodes"):
		list, wat = typed(core.Nodes())
	case corev1.SchemeGroupVersion.WithResource("services"):
		list, wat = typed(core.Services(""))
	case discoveryv1.SchemeGroupVersion.WithResource("endpointslices"):
		list, wat = typed(disc.EndpointSlices(""))
	case networkingv1.SchemeGroupVersion.WithResource("networkpolicies"):
		list, wat = typed(netw.NetworkPolicies(""))
	default:
		panic(fmt.Sprintf("kubeapitest: no fake for %s %s", gv, resource))
	}
	return c.listWatch(list, wat)
}

// MetadataListWatch serves ReplicaSets and Jobs as PartialObjectMetadata,
// as the API server does for kubeapi's metadata client.
func (c Clientset) MetadataListWatch(r schema.GroupVersionResource) cache.ListerWatcher {
	apps, batch := c.AppsV1(), c.BatchV1()
	var (
		list listFunc
		wat  watchFunc
	)
	switch r {
	case appsv1.SchemeGroupVersion.WithResource("replicasets"):
		list, wat = typed(apps.ReplicaSets(""))
	case batchv1.SchemeGroupVersion.WithResource("jobs"):
		list, wat = typed(batch.Jobs(""))
	default:
		panic(fmt.Sprintf("kubeapitest: no metadata fake for %s", r))
	}
	return c.listWatch(
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := list(ctx, o)
			if err != nil {
				return nil, err
			}
			return partialList(l)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := wat(ctx, o)
			if err != nil {
				return nil, err
			}
			return watchFilter(w), nil
		})
}

// listWatch tells the reflector that the fake does no streaming lists.
func (c Clientset) listWatch(list listFunc, wat watchFunc) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: wat}, c.Clientset)
}

// Version asks the fake's discovery, whose reactors ("get", "version") can
// fail it.
func (c Clientset) Version(context.Context) error {
	_, err := c.Discovery().ServerVersion()
	return err
}

func partialList(l runtime.Object) (*metav1.PartialObjectMetadataList, error) {
	items, err := meta.ExtractList(l)
	if err != nil {
		return nil, fmt.Errorf("kubeapitest: extract list: %w", err)
	}
	lm, err := meta.ListAccessor(l)
	if err != nil {
		return nil, fmt.Errorf("kubeapitest: list meta: %w", err)
	}
	out := &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: lm.GetResourceVersion()}}
	for _, it := range items {
		if p := partial(it); p != nil {
			out.Items = append(out.Items, *p)
		}
	}
	return out, nil
}

func partial(o runtime.Object) *metav1.PartialObjectMetadata {
	if m, ok := o.(metav1.ObjectMetaAccessor); ok {
		return &metav1.PartialObjectMetadata{ObjectMeta: *m.GetObjectMeta().(*metav1.ObjectMeta).DeepCopy()}
	}
	return nil
}

// watchFilter turns typed watch events into PartialObjectMetadata ones;
// errors (a *metav1.Status) pass as they are.
func watchFilter(w watch.Interface) watch.Interface {
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		if p := partial(e.Object); p != nil {
			e.Object = p
		}
		return e, true
	})
}
