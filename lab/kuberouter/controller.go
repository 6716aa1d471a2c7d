package kuberouter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/go-logr/logr/funcr"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Config is how one node's controller is set up.
type Config struct {
	Node         string        // Kubernetes node name; the cluster must hold a Node of that name
	ClusterIPs   string        // service CIDR, K3s's 10.43.0.0/16 when empty
	SyncPeriod   time.Duration // periodic resync; 0 = 1h (kube-router panics on 0)
	LogLine      func(string)  // every kube-router log line, rendered; nil drops them
	AbortIsFatal bool          // an "Aborting sync" log line fails the controller
}

// Controller is a running kube-router NetworkPolicyController over a fake clientset, or over a
// real API server (StartLive).
type Controller struct {
	client  kubernetes.Interface
	npStore cache.Store
	npc     *netpol.NetworkPolicyController
	stop    chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	started int // "Starting sync of iptables" lines seen
	done    int // "sync iptables took" lines seen
	last    time.Duration
	failure error
}

// klogOnce: klog is process-global, so it is set up once, routed to the latest controller's sink.
var (
	klogOnce sync.Once
	klogMu   sync.Mutex
	klogSink func(prefix, args string)
)

func routeKlog(sink func(prefix, args string)) {
	klogMu.Lock()
	klogSink = sink
	klogMu.Unlock()
	klogOnce.Do(func() {
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		// V(1) carries "sync iptables took", the only sign that a full sync finished.
		_ = fs.Set("v", "1")
		_ = fs.Set("logtostderr", "false")
		klog.SetLogger(funcr.New(func(prefix, args string) {
			klogMu.Lock()
			s := klogSink
			klogMu.Unlock()
			if s != nil {
				s(prefix, args)
			}
		}, funcr.Options{Verbosity: 10}))
	})
}

// Start builds the fake cluster from objs, starts kube-router's controller and returns once its
// first full sync has finished.
func Start(ctx context.Context, cfg Config, objs *Objects) (*Controller, error) {
	if cfg.Node == "" {
		return nil, errors.New("node name is empty")
	}
	found := false
	for _, n := range objs.Nodes {
		found = found || n.Name == cfg.Node
	}
	if !found {
		return nil, fmt.Errorf("node %q: not in the cluster file", cfg.Node)
	}
	client := fake.NewSimpleClientset()
	for i := range objs.Nodes {
		if _, err := client.CoreV1().Nodes().Create(ctx, &objs.Nodes[i], metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create node %s: %w", objs.Nodes[i].Name, err)
		}
	}
	for i := range objs.Namespaces {
		if _, err := client.CoreV1().Namespaces().Create(ctx, &objs.Namespaces[i], metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create namespace %s: %w", objs.Namespaces[i].Name, err)
		}
	}
	for i := range objs.Pods {
		p := &objs.Pods[i]
		if _, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	for i := range objs.Policies {
		p := &objs.Policies[i]
		if _, err := client.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create networkpolicy %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	return start(ctx, cfg, client)
}

// start runs kube-router's controller over client and returns once its first full sync has
// finished.
func start(ctx context.Context, cfg Config, client kubernetes.Interface) (*Controller, error) {
	if cfg.ClusterIPs == "" {
		cfg.ClusterIPs = "10.43.0.0/16"
	}
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = time.Hour
	}
	c := &Controller{stop: make(chan struct{}), client: client}
	c.cond = sync.NewCond(&c.mu)
	routeKlog(func(prefix, args string) { c.onLog(cfg, prefix, args) })

	krc := options.NewKubeRouterConfig()
	krc.HostnameOverride = cfg.Node
	krc.ClusterIPCIDRs = []string{cfg.ClusterIPs}
	krc.NodePortRange = "30000:32767" // as K3s sets it
	krc.EnableIPv4, krc.EnableIPv6 = true, false
	// A global Prometheus registry: a second controller in one process would panic.
	krc.MetricsEnabled = false
	krc.RunFirewall = true
	krc.IPTablesSyncPeriod = cfg.SyncPeriod

	factory := informers.NewSharedInformerFactory(c.client, 0)
	podInf := factory.Core().V1().Pods().Informer()
	nsInf := factory.Core().V1().Namespaces().Informer()
	npInf := factory.Networking().V1().NetworkPolicies().Informer()
	c.npStore = npInf.GetStore()

	ipt, ips, err := netpol.NewIPTablesHandlers(krc)
	if err != nil {
		return nil, fmt.Errorf("iptables handlers: %w", err)
	}
	var ipsetMu sync.Mutex
	c.npc, err = netpol.NewNetworkPolicyController(c.client, krc, podInf, npInf, nsInf, &ipsetMu, ipt, ips)
	if err != nil {
		return nil, fmt.Errorf("new network policy controller: %w", err)
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{{podInf, c.npc.PodEventHandler}, {nsInf, c.npc.NamespaceEventHandler}, {npInf, c.npc.NetworkPolicyEventHandler}} {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("add event handler: %w", err)
		}
	}
	factory.Start(c.stop)
	for typ, ok := range factory.WaitForCacheSync(c.stop) {
		if !ok {
			close(c.stop)
			return nil, fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	// SendHeartBeat blocks on an unbuffered channel; nothing here reads health.
	health := make(chan *healthcheck.ControllerHeartbeat, 16)
	go func() {
		for {
			select {
			case <-health:
			case <-c.stop:
				return
			}
		}
	}()
	c.wg.Add(1)
	go c.npc.Run(health, c.stop, &c.wg)
	if _, err := c.waitDone(ctx, 0); err != nil {
		c.Stop()
		return nil, fmt.Errorf("first sync: %w", err)
	}
	return c, nil
}

func (c *Controller) onLog(cfg Config, prefix, args string) {
	line := strings.TrimSpace(prefix + " " + args)
	if cfg.LogLine != nil {
		cfg.LogLine(line)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case strings.Contains(args, "Starting sync of iptables"):
		c.started++
	case strings.Contains(args, "sync iptables took"):
		c.done++
		c.cond.Broadcast()
	case cfg.AbortIsFatal && strings.Contains(args, "Aborting sync"):
		if c.failure == nil {
			c.failure = fmt.Errorf("kube-router: %s", args)
		}
		c.cond.Broadcast()
	}
}

// waitDone waits until more than after syncs have finished and returns how many have.
func (c *Controller) waitDone(ctx context.Context, after int) (int, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.done <= after && c.failure == nil && ctx.Err() == nil {
		c.cond.Wait()
	}
	switch {
	case c.failure != nil:
		return c.done, c.failure
	case c.done <= after:
		return c.done, ctx.Err()
	}
	return c.done, nil
}

// Syncs reports how many full syncs have started and finished.
func (c *Controller) Syncs() (started, done int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started, c.done
}

// SetPolicies makes the fake cluster hold exactly pols (create, update, delete by
// namespace/name) and returns once kube-router has finished a full sync that saw them.
func (c *Controller) SetPolicies(ctx context.Context, pols []networkingv1.NetworkPolicy) error {
	want := map[string]*networkingv1.NetworkPolicy{}
	for i := range pols {
		want[pols[i].Namespace+"/"+pols[i].Name] = &pols[i]
	}
	have := map[string]*networkingv1.NetworkPolicy{}
	list, err := c.client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list networkpolicies: %w", err)
	}
	for i := range list.Items {
		have[list.Items[i].Namespace+"/"+list.Items[i].Name] = &list.Items[i]
	}
	api := c.client.NetworkingV1()
	for k, h := range have {
		if _, keep := want[k]; !keep {
			if err := api.NetworkPolicies(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{}); err != nil {
				return fmt.Errorf("delete networkpolicy %s: %w", k, err)
			}
		}
	}
	for k, w := range want {
		h, ok := have[k]
		switch {
		case !ok:
			if _, err := api.NetworkPolicies(w.Namespace).Create(ctx, w, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create networkpolicy %s: %w", k, err)
			}
		case !reflect.DeepEqual(h.Spec, w.Spec) || !reflect.DeepEqual(h.Labels, w.Labels):
			w.ResourceVersion = h.ResourceVersion
			if _, err := api.NetworkPolicies(w.Namespace).Update(ctx, w, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update networkpolicy %s: %w", k, err)
			}
		}
	}
	// A sync that starts before the informer has the change would miss it: wait for the store.
	for !c.storeHas(want) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the informer to see the policies: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	c.mu.Lock()
	// Syncs are serialised: the (started+1)th sync starts after this point, so it sees the change.
	target := c.started
	c.mu.Unlock()
	c.npc.RequestFullSync()
	_, err = c.waitDone(ctx, target)
	return err
}

func (c *Controller) storeHas(want map[string]*networkingv1.NetworkPolicy) bool {
	items := c.npStore.List()
	if len(items) != len(want) {
		return false
	}
	for _, it := range items {
		np, ok := it.(*networkingv1.NetworkPolicy)
		if !ok {
			return false
		}
		w, ok := want[np.Namespace+"/"+np.Name]
		if !ok || !reflect.DeepEqual(np.Spec, w.Spec) {
			return false
		}
	}
	return true
}

// Stop stops the controller and waits for its goroutines. The rules stay: deleting the netns
// removes them (Cleanup is not called on purpose, see research/kube-router-lab.md §3.5).
func (c *Controller) Stop() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}
