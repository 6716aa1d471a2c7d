package agent

import (
	"context"
	"log/slog"
	"sort"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// watchClusterPolicies calls onChange with the cluster's full NetworkPolicy
// set after the first list and after every change, until ctx ends.
func watchClusterPolicies(ctx context.Context, client kubernetes.Interface, log *slog.Logger, onChange func([]networkingv1.NetworkPolicy)) error {
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Networking().V1().NetworkPolicies()
	changed := make(chan struct{}, 1)
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(any, any) { kick() },
		DeleteFunc: func(any) { kick() },
	}); err != nil {
		return err
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
	kick()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			list, err := inf.Lister().List(labels.Everything())
			if err != nil {
				log.Error("listing NetworkPolicies from cache", "err", err)
				continue
			}
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
			onChange(out)
		}
	}
}
