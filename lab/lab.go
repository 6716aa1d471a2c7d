package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/flowlens/flowlens/lab/enforcer"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/rules"
	"github.com/flowlens/flowlens/lab/scenario"
)

// Config says what lab to build.
type Config struct {
	Prefix   string             // "" = NewPrefix(); every namespace name starts with Prefix+"-"
	Nodes    int                // 1 or 2; 0 means 1
	Scenario *scenario.Scenario // nil = scenario.DefaultScenario()
	Log      *slog.Logger       // nil = discard

	// Enforcer is EnforcerHand ("" too: the lab writes the filter rules) or EnforcerKubeRouter
	// (one real kube-router per node namespace enforces the scenario's Policies).
	Enforcer string
	// KubeRouterBin is the flowlens-kube-router binary; "" = $FLOWLENS_KUBE_ROUTER_BIN.
	KubeRouterBin string
	// KubeRouterDir holds kube-router's cluster and policy files; "" = a temporary directory
	// removed by Close.
	KubeRouterDir string
	// KubeRouterK3sICMP adds K3s >= 1.33's ICMP accepts (echo request, destination unreachable,
	// time exceeded, before any policy) to the kube-router v2.1.0 nodes: rules.K3sICMP.
	KubeRouterK3sICMP bool

	// External adds <prefix>-ext, the world outside the cluster (lab/outside): the scenario's
	// outside peers, joined to every node by its own veth.
	External bool

	// failAfter, when set, makes Up fail after that step; tests use it to check cleanup.
	failAfter string
}

// Lab is a built lab. Its methods are safe for concurrent use.
type Lab struct {
	prefix   string
	log      *slog.Logger
	scenario *scenario.Scenario // restricted to the lab's node count

	mu     sync.Mutex // guards everything below
	nodes  []*netns.Node
	pods   []*scenario.Pod
	netns  []string // every namespace created, in creation order
	closed bool
	nextIP map[int]int // per node: next host number for pods without a fixed IP

	enforcer string
	enf      Enforcer // nil with the hand enforcer: the lab's own filter rules enforce

	extNS string // the outside namespace, "" without Config.External
}

// Up builds the lab. On any error it removes what it created before returning.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	l := &Lab{
		enforcer: cfg.Enforcer,
		prefix:   cfg.Prefix,
		log:      cfg.Log.With("lab", cfg.Prefix),
		scenario: cfg.Scenario.WithNodes(cfg.Nodes),
		nextIP:   map[int]int{},
	}
	if cfg.Enforcer == EnforcerKubeRouter {
		l.enf = &enforcer.KubeRouter{Bin: cfg.KubeRouterBin, Dir: cfg.KubeRouterDir, Log: l.log, K3sICMP: cfg.KubeRouterK3sICMP}
	}
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up after failed up: %w", cerr))
			}
		}
	}()
	step := func(name string) error {
		if cfg.failAfter == name {
			return fmt.Errorf("injected failure after %s", name)
		}
		return ctx.Err()
	}
	start := time.Now()

	for i := 1; i <= cfg.Nodes; i++ {
		n := &netns.Node{Name: netns.NodeName(i), NetNS: netns.NodeNetNS(l.prefix, i), PodCIDR: netns.NodePodCIDR(i), IP: netns.NodeIP(i), Index: i}
		if err := l.createNetNS(ctx, n.NetNS); err != nil {
			return nil, err
		}
		l.nodes = append(l.nodes, n)
		if err := netns.SetupNode(n); err != nil {
			return nil, err
		}
	}
	if cfg.Nodes == 2 {
		if err := netns.JoinNodes(l.nodes[0], l.nodes[1]); err != nil {
			return nil, err
		}
	} else if err := netns.AddNodeIPOnLoopback(l.nodes[0]); err != nil {
		return nil, err
	}
	if err := step("nodes"); err != nil {
		return nil, err
	}
	if cfg.External {
		if err := l.setupExternalLocked(ctx); err != nil {
			return nil, err
		}
		if err := step("external"); err != nil {
			return nil, err
		}
	}
	for _, spec := range l.scenario.Pods {
		if _, err := l.addPodLocked(ctx, spec); err != nil {
			return nil, err
		}
	}
	if err := step("pods"); err != nil {
		return nil, err
	}
	if err := l.syncRulesLocked(ctx); err != nil {
		return nil, err
	}
	if err := step("rules"); err != nil {
		return nil, err
	}
	if err := l.startEnforcerLocked(ctx); err != nil {
		return nil, err
	}
	l.log.Info("lab up", "enforcer", l.enforcer, "nodes", cfg.Nodes, "pods", len(l.pods), "scenario", l.scenario.Name, "took", time.Since(start))
	return l, nil
}

// resolve fills cfg's defaults and validates it.
func (cfg *Config) resolve() error {
	if cfg.Prefix == "" {
		cfg.Prefix = netns.NewPrefix()
	}
	if err := netns.ValidatePrefix(cfg.Prefix); err != nil {
		return err
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 1
	}
	if cfg.Nodes != 1 && cfg.Nodes != 2 {
		return fmt.Errorf("nodes %d: want 1 or 2", cfg.Nodes)
	}
	if cfg.Scenario == nil {
		cfg.Scenario = scenario.DefaultScenario()
	}
	if err := cfg.Scenario.Validate(cfg.Nodes); err != nil {
		return err
	}
	if err := cfg.Scenario.ValidateExternal(); err != nil {
		return err
	}
	if err := resolveEnforcer(cfg); err != nil {
		return err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (l *Lab) createNetNS(ctx context.Context, name string) error {
	if err := netns.Add(ctx, name); err != nil {
		return err
	}
	l.netns = append(l.netns, name)
	return nil
}

// Close removes every namespace the lab created, which takes every link, rule and ipset with it.
// It is idempotent.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	// A fresh context: cleanup must run even when the caller's context is done.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if err := l.stopEnforcerLocked(); err != nil {
		errs = append(errs, err)
	}
	for i := len(l.netns) - 1; i >= 0; i-- {
		if err := netns.Del(ctx, l.netns[i]); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", l.netns[i], err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	l.closed = true
	l.log.Info("lab down", "netns", len(l.netns))
	return nil
}

// Prefix is the lab's name prefix.
func (l *Lab) Prefix() string { return l.prefix }

// Scenario is the scenario the lab runs, restricted to its node count.
func (l *Lab) Scenario() *scenario.Scenario { return l.scenario }

// Nodes returns the lab's nodes in order.
func (l *Lab) Nodes() []*netns.Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*netns.Node(nil), l.nodes...)
}

// Node returns the node with that Kubernetes name, or nil.
func (l *Lab) Node(name string) *netns.Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Pods returns every pod, in creation order.
func (l *Lab) Pods() []*scenario.Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*scenario.Pod(nil), l.pods...)
}

// Pod returns the pod "namespace/name", or nil.
func (l *Lab) Pod(key string) *scenario.Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.podLocked(key)
}

func (l *Lab) podLocked(key string) *scenario.Pod {
	for _, p := range l.pods {
		if p.Key() == key {
			return p
		}
	}
	return nil
}

// NetNSNames lists every namespace the lab created.
func (l *Lab) NetNSNames() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.netns...)
}

// AddPod creates a pod after Up (a veth that appears later, as when the kubelet starts a pod) and
// re-syncs every node's rules, as kube-router does on a pod event. spec's TargetOf and PeerOf
// must name the scenario's policy rules.
func (l *Lab) AddPod(ctx context.Context, spec scenario.PodSpec) (*scenario.Pod, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("add pod %s: lab is closed", spec.Key())
	}
	if l.enf != nil {
		// The helper re-reads only its policies; a pod event would need the cluster file too.
		return nil, fmt.Errorf("add pod %s: not supported with the %s enforcer", spec.Key(), l.enforcer)
	}
	check := *l.scenario
	check.Pods = append(append([]scenario.PodSpec(nil), check.Pods...), spec)
	if err := check.Validate(len(l.nodes)); err != nil {
		return nil, fmt.Errorf("add pod %s: %w", spec.Key(), err)
	}
	if spec.Node > len(l.nodes) {
		return nil, fmt.Errorf("add pod %s: node %d, the lab has %d", spec.Key(), spec.Node, len(l.nodes))
	}
	p, err := l.addPodLocked(ctx, spec)
	if err != nil {
		return nil, err
	}
	check.Pods[len(check.Pods)-1] = p.Spec // with the address it was given
	l.scenario = &check
	if err := l.syncRulesLocked(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (l *Lab) addPodLocked(ctx context.Context, spec scenario.PodSpec) (*scenario.Pod, error) {
	n := l.nodes[spec.Node-1]
	ip := spec.IP
	if !ip.IsValid() {
		var err error
		if ip, err = l.freeIPLocked(spec.Node); err != nil {
			return nil, fmt.Errorf("add pod %s: %w", spec.Key(), err)
		}
		spec.IP = ip
	}
	p := &scenario.Pod{Pod: &netns.Pod{
		Namespace: spec.Namespace, Name: spec.Name, Node: n.Name, IP: ip,
		NetNS: netns.PodNetNS(l.prefix, spec.Namespace, spec.Name), Labels: spec.Labels,
	}, Spec: spec}
	if err := l.createNetNS(ctx, p.NetNS); err != nil {
		return nil, fmt.Errorf("add pod %s: %w", spec.Key(), err)
	}
	if err := netns.AddPodLinks(n, p.Pod); err != nil {
		return nil, fmt.Errorf("add pod %s: %w", spec.Key(), err)
	}
	l.pods = append(l.pods, p)
	l.log.Debug("pod added", "pod", p.Key(), "ip", p.IP, "node", p.Node, "veth", p.HostVeth)
	return p, nil
}

func (l *Lab) freeIPLocked(node int) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, p := range l.pods {
		used[p.IP] = true
	}
	for _, p := range l.scenario.Pods {
		if p.IP.IsValid() {
			used[p.IP] = true
		}
	}
	base := netns.NodePodCIDR(node).Addr().As4()
	for h := max(l.nextIP[node], netns.FirstPodIP); h < 255; h++ {
		a := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(h)})
		if !used[a] {
			l.nextIP[node] = h + 1
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node%d: no free pod address in %s", node, netns.NodePodCIDR(node))
}

// SyncRules rewrites every node's ipsets, filter and nat tables, as a kube-router full sync does
// (chain names change with the sync version).
func (l *Lab) SyncRules(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncRulesLocked(ctx)
}

func (l *Lab) syncRulesLocked(ctx context.Context) error {
	placed := make([]rules.Pod, 0, len(l.pods))
	for _, p := range l.pods {
		placed = append(placed, rules.Pod{Spec: p.Spec, IP: p.IP})
	}
	version := strconv.FormatInt(time.Now().UnixNano(), 10)
	for _, n := range l.nodes {
		in := rules.Input{Node: n.Index, Rules: l.scenario.Rules, Services: l.scenario.Services, Pods: placed, SyncVersion: version}
		if _, err := netns.Run(ctx, n.NetNS, rules.IPSets(in), "ipset", "-exist", "restore"); err != nil {
			return fmt.Errorf("ipsets on %s: %w", n.Name, err)
		}
		if l.enf != nil {
			// The enforcer owns the filter table and its ipsets; the lab keeps kube-proxy's and
			// Flannel's nat rules. iptables-restore replaces only the tables it is given.
			if _, err := netns.Run(ctx, n.NetNS, rules.NAT(in), "iptables-restore"); err != nil {
				return fmt.Errorf("iptables on %s: %w", n.Name, err)
			}
			continue
		}
		tables := rules.Filter(in) + rules.NAT(in)
		if _, err := netns.Run(ctx, n.NetNS, tables, "iptables-restore"); err != nil {
			return fmt.Errorf("iptables on %s: %w", n.Name, err)
		}
	}
	return nil
}

// Exec runs argv inside a lab namespace (`ip netns exec`) and returns its stdout.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("exec in %s: empty command", ns)
	}
	return netns.Run(ctx, ns, "", argv...)
}
