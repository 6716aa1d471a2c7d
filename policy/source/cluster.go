package source

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/flowlens/flowlens/internal/signal"
)

// WatchCluster calls onChange with the cluster's full NetworkPolicy set,
// sorted by namespace/name, after the first list and after every change,
// until ctx ends. lw lists and watches NetworkPolicies in all namespaces. A
// burst of events (a resync touches every policy) folds into one call: the
// consumer recompiles on each.
func WatchCluster(ctx context.Context, lw cache.ListerWatcher, log *slog.Logger, onChange func([]networkingv1.NetworkPolicy)) error {
	inf := cache.NewSharedIndexInformerWithOptions(lw, &networkingv1.NetworkPolicy{}, cache.SharedIndexInformerOptions{})
	if err := inf.SetTransform(slim); err != nil {
		return fmt.Errorf("watch NetworkPolicies: %w", err)
	}
	changed := signal.New()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed.Notify() },
		UpdateFunc: func(any, any) { changed.Notify() },
		DeleteFunc: func(any) { changed.Notify() },
	}); err != nil {
		return fmt.Errorf("watch NetworkPolicies: %w", err)
	}
	if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		log.Warn("watching NetworkPolicies", "err", err)
	}); err != nil {
		log.Debug("watch error handler not set", "err", err)
	}
	var running sync.WaitGroup
	running.Go(func() { inf.RunWithContext(ctx) })
	defer running.Wait()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil
	}
	// An empty cluster sends no event: deliver the first (maybe empty) set.
	changed.Notify()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed.C():
			onChange(sorted(inf.GetStore().List()))
		}
	}
}

// slim keeps of a NetworkPolicy what the judge and the drift read: its
// name and spec. The informer's cache would otherwise hold every policy's
// managedFields and kubectl's last-applied annotation, often larger than
// the spec.
func slim(obj any) (any, error) {
	p, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return obj, nil
	}
	return &networkingv1.NetworkPolicy{TypeMeta: p.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
	}, Spec: p.Spec}, nil
}

// sorted copies the policies out of the informer's cache. The copies share
// their specs' maps and slices with the cache: consumers only read them
// (policy.NewSet parses, policy.Digests defaults a deep copy), and the
// cache replaces objects rather than changing them.
func sorted(list []any) []networkingv1.NetworkPolicy {
	out := make([]networkingv1.NetworkPolicy, 0, len(list))
	for _, o := range list {
		if p, ok := o.(*networkingv1.NetworkPolicy); ok {
			out = append(out, *p)
		}
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].Namespace != out[k].Namespace {
			return out[i].Namespace < out[k].Namespace
		}
		return out[i].Name < out[k].Name
	})
	return out
}
