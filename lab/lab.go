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
)

// Config says what lab to build.
type Config struct {
	Prefix   string       // "" = NewPrefix(); every namespace name starts with Prefix+"-"
	Nodes    int          // 1 or 2; 0 means 1
	Scenario *Scenario    // nil = DefaultScenario()
	Log      *slog.Logger // nil = discard

	// Enforcer is EnforcerHand ("" too: the lab writes the filter rules) or EnforcerKubeRouter
	// (one real kube-router per node namespace enforces the scenario's Policies).
	Enforcer string
	// KubeRouterBin is the flowlens-kube-router binary; "" = $FLOWLENS_KUBE_ROUTER_BIN.
	KubeRouterBin string
	// KubeRouterDir holds kube-router's cluster and policy files; "" = a temporary directory
	// removed by Close.
	KubeRouterDir string

	// External adds <prefix>-ext, the world outside the cluster (external.go): the scenario's
	// outside peers, joined to every node by its own veth.
	External bool

	// failAfter, when set, makes Up fail after that step; tests use it to check cleanup.
	failAfter string
}

// Lab is a built lab. Its methods are safe for concurrent use.
type Lab struct {
	prefix   string
	log      *slog.Logger
	scenario *Scenario // restricted to the lab's node count

	mu     sync.Mutex // guards everything below
	nodes  []*Node
	pods   []*Pod
	netns  []string // every namespace created, in creation order
	closed bool
	nextIP map[int]int // per node: next host number for pods without a fixed IP

	enforcer string
	krBin    string
	krDir    string
	krOwnDir bool // krDir was created by the lab and is removed with it
	kr       []*krProc

	extNS string // the outside namespace, "" without Config.External
}

// Up builds the lab. On any error it removes what it created before returning.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if cfg.Prefix == "" {
		cfg.Prefix = NewPrefix()
	}
	if err := validatePrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 1
	}
	if cfg.Nodes != 1 && cfg.Nodes != 2 {
		return nil, fmt.Errorf("nodes %d: want 1 or 2", cfg.Nodes)
	}
	if cfg.Scenario == nil {
		cfg.Scenario = DefaultScenario()
	}
	if err := cfg.Scenario.Validate(cfg.Nodes); err != nil {
		return nil, err
	}
	if err := validateExternal(cfg.Scenario); err != nil {
		return nil, err
	}
	if err := resolveEnforcer(&cfg); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{
		enforcer: cfg.Enforcer,
		krBin:    cfg.KubeRouterBin,
		krDir:    cfg.KubeRouterDir,
		prefix:   cfg.Prefix,
		log:      cfg.Log.With("lab", cfg.Prefix),
		scenario: cfg.Scenario.withNodes(cfg.Nodes),
		nextIP:   map[int]int{},
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
		n := &Node{Name: nodeName(i), NetNS: nodeNetNS(l.prefix, i), PodCIDR: nodePodCIDR(i), IP: nodeIP(i), index: i}
		if err := l.createNetNS(ctx, n.NetNS); err != nil {
			return nil, err
		}
		l.nodes = append(l.nodes, n)
		if err := setupNode(n); err != nil {
			return nil, err
		}
	}
	if cfg.Nodes == 2 {
		if err := joinNodes(l.nodes[0], l.nodes[1]); err != nil {
			return nil, err
		}
	} else if err := addNodeIPOnLoopback(l.nodes[0]); err != nil {
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
	if l.enforcer == EnforcerKubeRouter {
		if err := l.startKubeRouterLocked(ctx); err != nil {
			return nil, err
		}
	}
	l.log.Info("lab up", "enforcer", l.enforcer, "nodes", cfg.Nodes, "pods", len(l.pods), "scenario", l.scenario.Name, "took", time.Since(start))
	return l, nil
}

func (l *Lab) createNetNS(ctx context.Context, name string) error {
	if err := addNetNS(ctx, name); err != nil {
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
	if err := l.stopKubeRouterLocked(); err != nil {
		errs = append(errs, err)
	}
	for i := len(l.netns) - 1; i >= 0; i-- {
		if err := delNetNS(ctx, l.netns[i]); err != nil {
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
func (l *Lab) Scenario() *Scenario { return l.scenario }

// Nodes returns the lab's nodes in order.
func (l *Lab) Nodes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Node(nil), l.nodes...)
}

// Node returns the node with that Kubernetes name, or nil.
func (l *Lab) Node(name string) *Node {
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
func (l *Lab) Pods() []*Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Pod(nil), l.pods...)
}

// Pod returns the pod "namespace/name", or nil.
func (l *Lab) Pod(key string) *Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.podLocked(key)
}

func (l *Lab) podLocked(key string) *Pod {
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
func (l *Lab) AddPod(ctx context.Context, spec PodSpec) (*Pod, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("add pod %s: lab is closed", spec.Key())
	}
	if l.enforcer == EnforcerKubeRouter {
		// The helper re-reads only its policies; a pod event would need the cluster file too.
		return nil, fmt.Errorf("add pod %s: not supported with the %s enforcer", spec.Key(), l.enforcer)
	}
	check := *l.scenario
	check.Pods = append(append([]PodSpec(nil), check.Pods...), spec)
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
	check.Pods[len(check.Pods)-1] = p.spec // with the address it was given
	l.scenario = &check
	if err := l.syncRulesLocked(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (l *Lab) addPodLocked(ctx context.Context, spec PodSpec) (*Pod, error) {
	n := l.nodes[spec.Node-1]
	ip := spec.IP
	if !ip.IsValid() {
		var err error
		if ip, err = l.freeIPLocked(spec.Node); err != nil {
			return nil, fmt.Errorf("add pod %s: %w", spec.Key(), err)
		}
		spec.IP = ip
	}
	p := &Pod{
		Namespace: spec.Namespace, Name: spec.Name, Node: n.Name, IP: ip,
		NetNS: podNetNS(l.prefix, spec.Namespace, spec.Name), Labels: spec.Labels, spec: spec,
	}
	if err := l.createNetNS(ctx, p.NetNS); err != nil {
		return nil, fmt.Errorf("add pod %s: %w", spec.Key(), err)
	}
	if err := addPodLinks(n, p); err != nil {
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
	base := nodePodCIDR(node).Addr().As4()
	for h := max(l.nextIP[node], firstPodIP); h < 255; h++ {
		a := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(h)})
		if !used[a] {
			l.nextIP[node] = h + 1
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node%d: no free pod address in %s", node, nodePodCIDR(node))
}

// SyncRules rewrites every node's ipsets, filter and nat tables, as a kube-router full sync does
// (chain names change with the sync version).
func (l *Lab) SyncRules(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncRulesLocked(ctx)
}

func (l *Lab) syncRulesLocked(ctx context.Context) error {
	placed := make([]placedPod, 0, len(l.pods))
	for _, p := range l.pods {
		placed = append(placed, placedPod{Spec: p.spec, IP: p.IP})
	}
	version := strconv.FormatInt(time.Now().UnixNano(), 10)
	for _, n := range l.nodes {
		in := ruleInput{Node: n.index, Rules: l.scenario.Rules, Services: l.scenario.Services, Pods: placed, SyncVersion: version}
		if _, err := run(ctx, n.NetNS, renderIPSets(in), "ipset", "-exist", "restore"); err != nil {
			return fmt.Errorf("ipsets on %s: %w", n.Name, err)
		}
		if l.enforcer == EnforcerKubeRouter {
			// kube-router owns the filter table and its ipsets; the lab keeps kube-proxy's and
			// Flannel's nat rules. iptables-restore replaces only the tables it is given.
			if _, err := run(ctx, n.NetNS, renderNAT(in), "iptables-restore"); err != nil {
				return fmt.Errorf("iptables on %s: %w", n.Name, err)
			}
			continue
		}
		tables := renderFilter(in) + renderNAT(in)
		if _, err := run(ctx, n.NetNS, tables, "iptables-restore"); err != nil {
			return fmt.Errorf("iptables on %s: %w", n.Name, err)
		}
	}
	return nil
}

// Exec runs argv inside a lab namespace (`ip netns exec`) and returns its stdout.
func (l *Lab) Exec(ctx context.Context, netns string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("exec in %s: empty command", netns)
	}
	return run(ctx, netns, "", argv...)
}
