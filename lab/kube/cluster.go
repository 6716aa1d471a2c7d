package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	labnetns "github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
)

// Config says what cluster to build.
type Config struct {
	Prefix string // "" = "fk" + 4 random hex digits; every netns name starts with Prefix+"-"
	Nodes  int    // 1 or 2 (0 means 1); two are joined over Flannel-style VXLAN
	// Dir holds everything the cluster writes: certificates, kubeconfig, etcd data, containerd
	// and kubelet state, logs. Created if missing; Close removes what the cluster put there.
	Dir string
	// BinDir holds etcd, kube-apiserver, ... ("" = EnsureBinaries builds or finds them).
	BinDir string
	// SandboxImage is the pod sandbox ("pause") image, already importable by ImportImage; ""
	// means the lab's own (LabPodImage with the pause entrypoint).
	SandboxImage string
	Log          *slog.Logger
}

// State is what `flowlens-lab up --kubernetes` records so that down can find everything again.
type State struct {
	Prefix     string      `json:"prefix"`
	Dir        string      `json:"dir"`
	Kubeconfig string      `json:"kubeconfig"`
	CPNetNS    string      `json:"cpNetns"`
	NetNS      []string    `json:"netns"` // created, in order
	Nodes      []NodeState `json:"nodes"`
	Procs      []*Proc     `json:"procs"` // started, in order
	BinDir     string      `json:"binDir"`
	// Scenario is what ApplyScenario made real, for `flowlens-lab traffic`.
	Scenario *scenario.Scenario `json:"scenario,omitempty"`
}

// Cluster is a running lab cluster. Its methods are safe for concurrent use.
type Cluster struct {
	log    *slog.Logger
	mu     sync.Mutex // guards st and closed
	st     State
	closed bool
}

var prefixRe = regexp.MustCompile(`^[a-z][a-z0-9]{1,11}$`)

// StateFile is the file Save writes in the cluster directory.
const StateFile = "kube-state.json"

// Up builds the cluster: namespaces, certificates, etcd, apiserver, controller-manager,
// scheduler, and per node containerd, kubelet and kube-proxy, then waits until every node is
// Ready. On error, or when ctx ends, it removes what it made.
func Up(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Prefix == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		cfg.Prefix = "fk" + hex.EncodeToString(b)
	}
	if !prefixRe.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("prefix %q: want 2-12 lowercase letters and digits, starting with a letter", cfg.Prefix)
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 1
	}
	if cfg.Nodes != 1 && cfg.Nodes != 2 {
		return nil, fmt.Errorf("nodes %d: want 1 or 2", cfg.Nodes)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return nil, errors.New("cluster dir: empty")
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = EnsureBinaries(ctx, cfg.Log); err != nil {
			return nil, err
		}
	}
	c := &Cluster{log: cfg.Log.With("cluster", cfg.Prefix), st: State{
		Prefix: cfg.Prefix, Dir: cfg.Dir, BinDir: cfg.BinDir,
		Kubeconfig: filepath.Join(cfg.Dir, "kubeconfig"), CPNetNS: cfg.Prefix + "-cp",
	}}
	defer func() {
		if err != nil {
			// Close removes the logs with the directory: keep their ends in the error.
			for _, p := range c.State().Procs {
				err = fmt.Errorf("%w\n--- %s log:\n%s", err, p.Name, p.tail(1500))
			}
			err = errors.Join(err, c.Close())
		}
	}()
	start := time.Now()
	if err := c.buildNetwork(ctx, cfg.Nodes); err != nil {
		return nil, err
	}
	if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	c.log.Info("control plane ready", "took", time.Since(start).Round(time.Millisecond))
	sandbox := cfg.SandboxImage
	if sandbox == "" {
		sandbox = PauseImage
		if err := BuildLabPodImage(ctx, sandboxArchive(c.st.Dir)); err != nil {
			return nil, err
		}
	}
	for _, n := range c.st.Nodes {
		if err := c.startNode(ctx, n, sandbox); err != nil {
			return nil, err
		}
	}
	if err := c.waitNodesReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	c.log.Info("cluster up", "nodes", len(c.st.Nodes), "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) buildNetwork(ctx context.Context, nodes int) error {
	if err := c.addNetNS(ctx, c.st.CPNetNS); err != nil {
		return err
	}
	if err := setupControlPlaneNet(c.st.CPNetNS); err != nil {
		return err
	}
	for i := 1; i <= nodes; i++ {
		n := NodeState{Name: fmt.Sprintf("node%d", i), Index: i, NetNS: fmt.Sprintf("%s-node%d", c.st.Prefix, i),
			IP: nodeIP(i).String(), PodCIDR: nodePodCIDR(i).String(), Dir: filepath.Join(c.st.Dir, fmt.Sprintf("node%d", i))}
		if err := c.addNetNS(ctx, n.NetNS); err != nil {
			return err
		}
		c.st.Nodes = append(c.st.Nodes, n)
		if err := attachNode(c.st.CPNetNS, n.NetNS, i); err != nil {
			return err
		}
	}
	if nodes == 2 {
		// Pod to pod across nodes goes over flannel.1 as on K3s, not through the control plane.
		return labnetns.JoinVTEPs(c.st.Nodes[0].vtepNode(), c.st.Nodes[1].vtepNode())
	}
	return nil
}

func (c *Cluster) addNetNS(ctx context.Context, name string) error {
	if err := addNetNS(ctx, name); err != nil {
		return err
	}
	c.mu.Lock()
	c.st.NetNS = append(c.st.NetNS, name)
	c.mu.Unlock()
	return nil
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	p, err := writePKI(filepath.Join(c.st.Dir, "pki"), apiserverIP.AsSlice(), kubeSvcIP.AsSlice())
	if err != nil {
		return err
	}
	if err := p.writeKubeconfig(c.st.Kubeconfig, apiserverURL()); err != nil {
		return err
	}
	args := controlPlaneArgs(c.st.BinDir, c.st.Dir, p, c.st.Kubeconfig)
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if err := c.start(name, c.st.CPNetNS, args[name]); err != nil {
			return err
		}
	}
	if err := c.waitAPIServer(ctx, 90*time.Second); err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		if err := c.start(name, c.st.CPNetNS, args[name]); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startNode(ctx context.Context, n NodeState, sandboxImage string) error {
	if err := writeNodeFiles(c.st.Prefix, n, sandboxImage); err != nil {
		return err
	}
	args := nodeArgs(c.st.BinDir, n, c.st.Kubeconfig)
	if err := c.start(procName(args[0][0], n), n.NetNS, args[0]); err != nil {
		return err
	}
	if err := c.waitContainerd(ctx, n, 30*time.Second); err != nil {
		return err
	}
	// The pause image must be in containerd before the kubelet creates its first sandbox.
	if err := c.ImportImage(ctx, n, sandboxArchive(c.st.Dir)); err != nil {
		return err
	}
	for _, argv := range args[1:] {
		if err := c.start(procName(argv[0], n), n.NetNS, argv); err != nil {
			return err
		}
	}
	return nil
}

// start runs a daemon in a namespace with its log under Dir/logs and records it.
func (c *Cluster) start(name, ns string, argv []string) error {
	p, err := startProc(name, netnsPath(ns), filepath.Join(c.st.Dir, "logs", name+".log"), argv)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.st.Procs = append(c.st.Procs, p)
	c.mu.Unlock()
	c.log.Debug("started", "name", name, "pid", p.PID, "netns", ns)
	return nil
}

func (c *Cluster) proc(name string) *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.st.Procs) - 1; i >= 0; i-- {
		if c.st.Procs[i].Name == name {
			return c.st.Procs[i]
		}
	}
	return nil
}

// State is a copy of what the cluster recorded.
func (c *Cluster) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.NetNS = append([]string(nil), c.st.NetNS...)
	st.Nodes = append([]NodeState(nil), c.st.Nodes...)
	st.Procs = append([]*Proc(nil), c.st.Procs...)
	return st
}

// Kubeconfig is the admin kubeconfig's path; it reaches the apiserver from inside the lab's
// namespaces (ExecIn the control-plane namespace, or any node's).
func (c *Cluster) Kubeconfig() string { return c.st.Kubeconfig }

// ControlPlaneNetNS is the namespace the apiserver listens in.
func (c *Cluster) ControlPlaneNetNS() string { return c.st.CPNetNS }

// Nodes lists the cluster's nodes.
func (c *Cluster) Nodes() []NodeState { return c.State().Nodes }

// Save writes the state to Dir/kube-state.json for a later Attach.
func (c *Cluster) Save() error {
	b, err := json.MarshalIndent(c.State(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode cluster state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.st.Dir, StateFile), b, 0o644); err != nil {
		return fmt.Errorf("write cluster state: %w", err)
	}
	return nil
}

// Attach finds a cluster that Save recorded in dir; Close on it takes the cluster down.
func Attach(dir string, log *slog.Logger) (*Cluster, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("read cluster state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse cluster state: %w", err)
	}
	if !prefixRe.MatchString(st.Prefix) || st.Dir == "" {
		return nil, fmt.Errorf("cluster state in %s: bad prefix or dir", dir)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cluster{log: log.With("cluster", st.Prefix), st: st}, nil
}

// Exists reports whether dir holds a saved cluster.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, StateFile))
	return err == nil
}
