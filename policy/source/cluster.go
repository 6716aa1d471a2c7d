package source

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/flowlens/flowlens/internal/signal"
)

// WatchCluster calls onChange with the cluster's full NetworkPolicy set,
// sorted by namespace/name, after the first list and after every change,
// until ctx ends. A burst of events (a resync touches every policy) folds
// into one call: the consumer recompiles on each.
func WatchCluster(ctx context.Context, client kubernetes.Interface, log *slog.Logger, onChange func([]networkingv1.NetworkPolicy)) error {
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Networking().V1().NetworkPolicies()
	changed := signal.New()
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed.Notify() },
		UpdateFunc: func(any, any) { changed.Notify() },
		DeleteFunc: func(any) { changed.Notify() },
	}); err != nil {
		return fmt.Errorf("watch NetworkPolicies: %w", err)
	}
	if err := inf.Informer().SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		log.Warn("watching NetworkPolicies", "err", err)
	}); err != nil {
		log.Debug("watch error handler not set", "err", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return nil
	}
	// An empty cluster sends no event: deliver the first (maybe empty) set.
	changed.Notify()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed.C():
			list, err := inf.Lister().List(labels.Everything())
			if err != nil {
				log.Error("listing NetworkPolicies from cache", "err", err)
				continue
			}
			onChange(sorted(list))
		}
	}
}

func sorted(list []*networkingv1.NetworkPolicy) []networkingv1.NetworkPolicy {
	out := make([]networkingv1.NetworkPolicy, 0, len(list))
	for _, p := range list {
		out = append(out, *p.DeepCopy())
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].Namespace != out[k].Namespace {
			return out[i].Namespace < out[k].Namespace
		}
		return out[i].Name < out[k].Name
	})
	return out
}
