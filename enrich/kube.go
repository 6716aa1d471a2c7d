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
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Kube is the Resolver backed by the Kubernetes API: an informer per
// resource (pods, namespaces, nodes, services, EndpointSlices, and the
// metadata of ReplicaSets and Jobs for workload names), slimmed by a
// transform, feeding the index. Informer objects are never mutated; the
// index keeps pointers to them.
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

// API is what Kube reads from the Kubernetes API: a list-watch per resource,
// in all namespaces, and the API server's /version. The agent builds it on
// kubeapi's REST clients; tests on client-go's fake clientset.
type API struct {
	Pods, Namespaces, Nodes, Services, EndpointSlices cache.ListerWatcher
	// ReplicaSets and Jobs list *metav1.PartialObjectMetadata: their
	// controller reference is all enrichment reads of them.
	ReplicaSets, Jobs cache.ListerWatcher
	// Version asks the API server for /version; see probe. Nil: no probe.
	Version func(context.Context) error
}

// NewKube starts the informers under ctx and returns at once: lookups answer
// WORLD (or a named CIDR) until the caches fill; use WaitForSync to wait.
// klog, which client-go logs through, is bridged into log.
func NewKube(ctx context.Context, api API, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Kube, error) {
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

	resources := []struct {
		name    string
		lw      cache.ListerWatcher
		obj     runtime.Object
		handler cache.ResourceEventHandler
	}{
		{"pods", api.Pods, &corev1.Pod{}, handlers(func(p *podInfo) { k.upsertPod(p, time.Now()) },
			func(p *podInfo) { k.deletePod(p.namespace, p.name, time.Now()) })},
		{"namespaces", api.Namespaces, &corev1.Namespace{},
			handlers(k.upsertNamespace, func(n *corev1.Namespace) { k.deleteNamespace(n.Name) })},
		{"nodes", api.Nodes, &corev1.Node{}, handlers(k.upsertNode, func(n *corev1.Node) { k.deleteNode(n.Name) })},
		{"services", api.Services, &corev1.Service{},
			handlers(k.upsertService, func(s *serviceInfo) { k.deleteService(s.namespace, s.name) })},
		{"endpointslices", api.EndpointSlices, &discoveryv1.EndpointSlice{}, handlers(k.upsertSlice, k.deleteSlice)},
		{"replicasets", api.ReplicaSets, &metav1.PartialObjectMetadata{},
			handlers(func(o *ownerInfo) { k.upsertOwner("ReplicaSet", o) },
				func(o *ownerInfo) { k.deleteOwner("ReplicaSet", o.namespace, o.name) })},
		{"jobs", api.Jobs, &metav1.PartialObjectMetadata{},
			handlers(func(o *ownerInfo) { k.upsertOwner("Job", o) },
				func(o *ownerInfo) { k.deleteOwner("Job", o.namespace, o.name) })},
	}
	informers := make([]cache.SharedIndexInformer, 0, len(resources))
	for _, r := range resources {
		inf := k.newInformer(r.name, r.lw, r.obj)
		if err := inf.SetTransform(k.slim); err != nil {
			return nil, fmt.Errorf("set transform for %s: %w", r.name, err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(k.watchErrorHandler(r.name)); err != nil {
			return nil, fmt.Errorf("set watch error handler for %s: %w", r.name, err)
		}
		hreg, err := inf.AddEventHandler(r.handler)
		if err != nil {
			return nil, fmt.Errorf("add %s event handler: %w", r.name, err)
		}
		// The registration's HasSynced also waits for the handler to have
		// seen the initial list, i.e. for the index to be filled.
		k.synced = append(k.synced, hreg.HasSynced)
		informers = append(informers, inf)
	}
	for _, inf := range informers {
		go inf.RunWithContext(ctx)
	}
	go k.janitor(ctx)
	if api.Version != nil {
		go k.probe(ctx, api.Version, cfg.probeEvery(), probeTimeout)
	}
	return k, nil
}

// APIClient is the API server as kubeapi.Client reaches it.
type APIClient interface {
	ListWatch(gv schema.GroupVersion, resource string) cache.ListerWatcher
	MetadataListWatch(r schema.GroupVersionResource) cache.ListerWatcher
	Version(ctx context.Context) error
}

// NewAPI is the list-watches of what enrichment watches, from c.
func NewAPI(c APIClient) API {
	core := corev1.SchemeGroupVersion
	return API{
		Pods:           c.ListWatch(core, "pods"),
		Namespaces:     c.ListWatch(core, "namespaces"),
		Nodes:          c.ListWatch(core, "nodes"),
		Services:       c.ListWatch(core, "services"),
		EndpointSlices: c.ListWatch(discoveryv1.SchemeGroupVersion, "endpointslices"),
		// Named here rather than through k8s.io/api/apps and batch, whose
		// types are never decoded.
		ReplicaSets: c.MetadataListWatch(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}),
		Jobs:        c.MetadataListWatch(schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}),
		Version:     c.Version,
	}
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
// never degrade enrichment. Resync is off: handlers are idempotent and the
// index has no external state to reconcile.
func (k *Kube) newInformer(resource string, lw cache.ListerWatcher, obj runtime.Object) cache.SharedIndexInformer {
	inner := cache.ToListerWatcherWithContext(lw)
	w := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return retryRefused(ctx, k, resource, func() (runtime.Object, error) { return inner.ListWithContext(ctx, o) })
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return retryRefused(ctx, k, resource, func() (watch.Interface, error) {
				w, err := inner.WatchWithContext(ctx, o)
				if watchListRefused(o, err) {
					err = &fallbackError{err}
				}
				return w, err
			})
		},
	}
	// The reflector asks for a streaming list unless lw says it cannot
	// (client-go's fake clientset does).
	return cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(w, lw), obj,
		cache.SharedIndexInformerOptions{Indexers: cache.Indexers{}})
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
