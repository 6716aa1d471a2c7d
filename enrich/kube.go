package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Kube is the Resolver backed by the Kubernetes API: one shared informer
// factory (pods, namespaces, nodes, services, EndpointSlices, and
// ReplicaSets/Jobs for workload names), slimmed by a transform, feeding the
// index. Informer objects are never mutated; the index keeps pointers to
// them.
type Kube struct {
	*index
	log    *slog.Logger
	health *health
	reach  *reachability
	synced []cache.InformerSynced
}

var (
	_ Resolver     = (*Kube)(nil)
	_ ClusterState = (*Kube)(nil)
)

// listWatch is one watched resource's typed list and watch calls.
type listWatch struct {
	resource string
	obj      runtime.Object
	list     func(context.Context, metav1.ListOptions) (runtime.Object, error)
	watch    func(context.Context, metav1.ListOptions) (watch.Interface, error)
}

// NewKube starts the informers under ctx and returns at once: lookups answer
// WORLD (or a named CIDR) until the caches fill; use WaitForSync to wait.
// klog, which client-go logs through, is bridged into log.
func NewKube(ctx context.Context, client kubernetes.Interface, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Kube, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	BridgeKlog(log)
	// Informers log through the context's logger; the global bridge
	// covers client-go code that does not take a context.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(log.With("component", "client-go").Handler()))
	k := &Kube{index: newIndex(cfg), log: log, health: newHealth(), reach: newReachability()}
	if err := k.health.register(reg); err != nil {
		return nil, err
	}
	if err := k.registerCounts(reg); err != nil {
		return nil, err
	}

	// Resync is off: handlers are idempotent and the index has no
	// external state to reconcile.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim))
	core, disc, apps, batch := client.CoreV1(), client.DiscoveryV1(), client.AppsV1(), client.BatchV1()
	resources := []struct {
		lw      listWatch
		handler cache.ResourceEventHandler
	}{
		{listWatch{"pods", &corev1.Pod{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return core.Pods("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return core.Pods("").Watch(ctx, o)
			},
		}, handlers(func(p *podInfo) { k.upsertPod(p, time.Now()) },
			func(p *podInfo) { k.deletePod(p.namespace, p.name, time.Now()) })},
		{listWatch{"namespaces", &corev1.Namespace{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return core.Namespaces().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return core.Namespaces().Watch(ctx, o)
			},
		}, handlers(k.upsertNamespace, func(n *corev1.Namespace) { k.deleteNamespace(n.Name) })},
		{listWatch{"nodes", &corev1.Node{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return core.Nodes().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return core.Nodes().Watch(ctx, o)
			},
		}, handlers(k.upsertNode, func(n *corev1.Node) { k.deleteNode(n.Name) })},
		{listWatch{"services", &corev1.Service{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return core.Services("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return core.Services("").Watch(ctx, o)
			},
		}, handlers(k.upsertService, func(s *corev1.Service) { k.deleteService(s.Namespace, s.Name) })},
		{listWatch{"endpointslices", &discoveryv1.EndpointSlice{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return disc.EndpointSlices("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return disc.EndpointSlices("").Watch(ctx, o)
			},
		}, handlers(k.upsertSlice, k.deleteSlice)},
		{listWatch{"replicasets", &appsv1.ReplicaSet{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return apps.ReplicaSets("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return apps.ReplicaSets("").Watch(ctx, o)
			},
		}, handlers(func(r *appsv1.ReplicaSet) { k.upsertOwner("ReplicaSet", &r.ObjectMeta) },
			func(r *appsv1.ReplicaSet) { k.deleteOwner("ReplicaSet", r.Namespace, r.Name) })},
		{listWatch{"jobs", &batchv1.Job{},
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return batch.Jobs("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return batch.Jobs("").Watch(ctx, o)
			},
		}, handlers(func(j *batchv1.Job) { k.upsertOwner("Job", &j.ObjectMeta) },
			func(j *batchv1.Job) { k.deleteOwner("Job", j.Namespace, j.Name) })},
	}
	for _, r := range resources {
		inf := factory.InformerFor(r.lw.obj, k.newInformer(r.lw))
		if err := inf.SetWatchErrorHandlerWithContext(k.watchErrorHandler(r.lw.resource)); err != nil {
			return nil, fmt.Errorf("set watch error handler for %s: %w", r.lw.resource, err)
		}
		hreg, err := inf.AddEventHandler(r.handler)
		if err != nil {
			return nil, fmt.Errorf("add %s event handler: %w", r.lw.resource, err)
		}
		// The registration's HasSynced also waits for the handler to have
		// seen the initial list, i.e. for the index to be filled.
		k.synced = append(k.synced, hreg.HasSynced)
	}
	factory.StartWithContext(ctx)
	go k.janitor(ctx)
	go k.probe(ctx, versionProbe(client), cfg.probeEvery(), probeTimeout)
	return k, nil
}

var klogOnce sync.Once

// BridgeKlog sends klog (client-go's logger) to log. klog's logger is
// process-global and read without locks by running informers, so it is set
// once: call BridgeKlog at startup before any client-go code runs (NewKube
// calls it too, which is a no-op after the first call).
func BridgeKlog(log *slog.Logger) {
	klogOnce.Do(func() { klog.SetSlogLogger(log.With("component", "client-go")) })
}

// newInformer builds the informer over list/watch calls that report to
// health themselves. client-go has no hook for recovery, and its watch error
// handler never hears of a watch call refused by a stopped API server: the
// reflector retries "connection refused" in a backoff loop of its own
// (isWatchErrorRetriable), so an outage that starts with a closed watch would
// never degrade enrichment.
func (k *Kube) newInformer(lw listWatch) func(kubernetes.Interface, time.Duration) cache.SharedIndexInformer {
	return func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		w := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return retryRefused(ctx, k, lw.resource, func() (runtime.Object, error) { return lw.list(ctx, o) })
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return retryRefused(ctx, k, lw.resource, func() (watch.Interface, error) {
					w, err := lw.watch(ctx, o)
					if watchListRefused(o, err) {
						err = &fallbackError{err}
					}
					return w, err
				})
			},
		}
		return cache.NewSharedIndexInformerWithOptions(
			cache.ToListWatcherWithWatchListSemantics(w, client), lw.obj,
			cache.SharedIndexInformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{}})
	}
}

// called records the outcome of a list or watch call. A failure comes back
// marked, so the watch error handler, which sees it again when the reflector
// gives up on it, does not count it twice.
func (k *Kube) called(ctx context.Context, resource string, err error) error {
	if err == nil {
		if k.health.ok(resource) {
			k.log.Info("kubernetes API reachable again, enrichment recovering", "resource", resource)
		}
		return nil
	}
	k.failed(ctx, resource, err)
	return &recordedError{err}
}

// recordedError is a list/watch error health has already counted.
type recordedError struct{ error }

func (e *recordedError) Unwrap() error { return e.error }

// fallbackError is a refusal the reflector answers with another request
// (a plain list after a refused streaming list): no failure of the API.
type fallbackError struct{ error }

func (e *fallbackError) Unwrap() error { return e.error }

func (k *Kube) watchErrorHandler(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, _ *cache.Reflector, err error) {
		if _, seen := errors.AsType[*recordedError](err); !seen {
			k.failed(ctx, resource, err)
		}
	}
}

func (k *Kube) failed(ctx context.Context, resource string, err error) {
	if ctx.Err() == nil && !benign(err) {
		if k.health.fail(resource, err) {
			k.log.Warn("kubernetes API list/watch failing, enrichment degraded (flows keep flowing with last known names)",
				"resource", resource, "err", err)
		} else {
			k.log.Debug("kubernetes API list/watch still failing", "resource", resource, "err", err)
		}
	}
}

// handlers adapts typed upsert/delete funcs, unwrapping tombstones.
func handlers[T any](upsert, del func(T)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if v, ok := obj.(T); ok {
				upsert(v)
			}
		},
		UpdateFunc: func(_, obj any) {
			if v, ok := obj.(T); ok {
				upsert(v)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if v, ok := obj.(T); ok {
				del(v)
			}
		},
	}
}

// janitor forgets deleted pods once their grace period is over.
func (k *Kube) janitor(ctx context.Context) {
	every := min(max(k.grace/4, time.Second), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			k.gc(now)
		}
	}
}

// WaitForSync blocks until every informer has listed once or ctx ends; it
// reports whether the caches synced.
func (k *Kube) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), k.synced...)
}

// Status implements Resolver.
func (k *Kube) Status() Status {
	synced := true
	for _, s := range k.synced {
		if !s() {
			synced = false
			break
		}
	}
	degraded, reason := k.health.state()
	pods, svcs := k.counts()
	return Status{Source: "kubernetes", Synced: synced, Degraded: degraded, Reason: reason, Pods: pods, Services: svcs}
}

func (k *Kube) registerCounts(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flowlens_enrichment_pods",
			Help: "Pods known to enrichment.",
		}, func() float64 { p, _ := k.counts(); return float64(p) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flowlens_enrichment_services",
			Help: "Services known to enrichment.",
		}, func() float64 { _, s := k.counts(); return float64(s) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register enrichment metrics: %w", err)
		}
	}
	return nil
}
