package source

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	networkingv1 "k8s.io/api/networking/v1"
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

func sorted(list []any) []networkingv1.NetworkPolicy {
	out := make([]networkingv1.NetworkPolicy, 0, len(list))
	for _, o := range list {
		if p, ok := o.(*networkingv1.NetworkPolicy); ok {
			out = append(out, *p.DeepCopy())
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
