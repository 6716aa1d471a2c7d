package enforcer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/rules"
	"github.com/flowlens/flowlens/lab/scenario"
)

// krSyncTimeout bounds one full sync of kube-router, including its start.
const krSyncTimeout = 60 * time.Second

// KubeRouter runs the real kube-router v2.1.0 network-policy controller, one
// flowlens-kube-router process (lab/kuberouter) per node namespace, fed the scenario's
// NetworkPolicies through client-go's fake clientset. It owns each node's filter table and its
// ipsets. Its methods are not safe for concurrent use; the lab serialises them.
type KubeRouter struct {
	// Bin is the flowlens-kube-router binary.
	Bin string
	// Dir holds kube-router's cluster and policy files; "" = a temporary directory removed by
	// Stop.
	Dir string
	Log *slog.Logger // nil = discard
	// K3sICMP makes each node accept ICMP echo request, destination unreachable and time
	// exceeded before any policy, as K3s >= 1.33's kube-router fork does (rules.K3sICMP); the
	// v2.1.0 controller alone lets the policies decide ping.
	K3sICMP bool

	ownDir bool // Dir was created by Start and is removed by Stop
	procs  []*krProc
}

// Cluster is what an enforcer is started on: the lab's nodes and placed pods, and the scenario
// whose policies it enforces.
type Cluster struct {
	Prefix   string
	Scenario *scenario.Scenario
	Nodes    []*netns.Node
	Pods     []*scenario.Pod
}

// krProc is one flowlens-kube-router process running in a node namespace.
type krProc struct {
	node       *netns.Node
	policyFile string
	cmd        *exec.Cmd
	lines      chan string   // stdout lines ("synced")
	exited     chan struct{} // closed once the process has been waited for
	waitErr    error
	stderr     lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start writes the cluster file and one policy file per node, starts one kube-router per node
// namespace and waits for each first full sync.
func (k *KubeRouter) Start(ctx context.Context, c Cluster) error {
	log := k.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if k.Dir == "" {
		d, err := os.MkdirTemp("", "flowlens-lab-"+c.Prefix+"-")
		if err != nil {
			return fmt.Errorf("kube-router work dir: %w", err)
		}
		k.Dir, k.ownDir = d, true
	}
	cluster := filepath.Join(k.Dir, "kube-router-cluster.yaml")
	var buf bytes.Buffer
	if err := scenario.WriteDocs(&buf, scenario.ClusterObjects(c.Prefix, c.Scenario, c.Nodes, c.Pods), true); err != nil {
		return fmt.Errorf("kube-router cluster file: %w", err)
	}
	if err := os.WriteFile(cluster, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("kube-router cluster file: %w", err)
	}
	for _, n := range c.Nodes {
		pf := filepath.Join(k.Dir, "kube-router-"+n.Name+"-policies.yaml")
		if err := scenario.WriteFile(pf, func(w io.Writer) error { return scenario.WritePolicies(w, c.Scenario) }); err != nil {
			return err
		}
		if k.K3sICMP {
			// Before kube-router starts: its first sync then keeps the rules ahead of its pod jumps.
			if _, err := netns.Run(ctx, n.NetNS, rules.K3sICMP(n.PodCIDR), "iptables-restore", "--noflush"); err != nil {
				return fmt.Errorf("K3s ICMP rules on %s: %w", n.Name, err)
			}
		}
		p := &krProc{node: n, policyFile: pf, lines: make(chan string, 16), exited: make(chan struct{})}
		p.cmd = exec.Command("ip", "netns", "exec", n.NetNS, k.Bin,
			"--node", n.Name, "--cluster", cluster, "--policies", pf)
		p.cmd.Stderr = &p.stderr
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			return fmt.Errorf("kube-router on %s: %w", n.Name, err)
		}
		start := time.Now()
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("start kube-router on %s: %w", n.Name, err)
		}
		k.procs = append(k.procs, p)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				select {
				case p.lines <- sc.Text():
				default: // nobody waits for it: only "synced" answers are expected, one per request
				}
			}
			p.waitErr = p.cmd.Wait()
			close(p.exited)
		}()
		if err := p.waitSynced(ctx); err != nil {
			return err
		}
		log.Info("kube-router synced", "node", n.Name, "took", time.Since(start))
	}
	return nil
}

func (p *krProc) waitSynced(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, krSyncTimeout)
	defer cancel()
	for {
		select {
		case line := <-p.lines:
			if line == "synced" {
				return nil
			}
		case <-p.exited:
			return fmt.Errorf("kube-router on %s exited: %v: %s", p.node.Name, p.waitErr, p.stderr.String())
		case <-ctx.Done():
			return fmt.Errorf("kube-router on %s: no sync: %w: %s", p.node.Name, ctx.Err(), p.stderr.String())
		}
	}
}

// SetPolicies changes what kube-router enforces on every node and returns once every node has
// finished a full sync with them.
func (k *KubeRouter) SetPolicies(ctx context.Context, pols []networkingv1.NetworkPolicy) error {
	if len(k.procs) == 0 {
		return fmt.Errorf("set enforced policies: kube-router is not running")
	}
	sc := &scenario.Scenario{Policies: pols}
	for _, p := range k.procs {
		if err := scenario.WriteFile(p.policyFile, func(w io.Writer) error { return scenario.WritePolicies(w, sc) }); err != nil {
			return err
		}
		// Drop a stale line, so the next "synced" answers this request.
		for len(p.lines) > 0 {
			<-p.lines
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return fmt.Errorf("signal kube-router on %s: %w", p.node.Name, err)
		}
	}
	for _, p := range k.procs {
		if err := p.waitSynced(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Logs returns each node's kube-router stderr so far (timings, errors).
func (k *KubeRouter) Logs() map[string]string {
	out := map[string]string{}
	for _, p := range k.procs {
		out[p.node.Name] = p.stderr.String()
	}
	return out
}

// Stop stops the kube-router processes. Their rules and ipsets stay in the node namespaces
// (kube-router's Cleanup is not called) and keep being enforced, unchanging; removing the
// namespaces removes them. It is idempotent.
func (k *KubeRouter) Stop() error {
	var errs []error
	for _, p := range k.procs {
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			var ee *exec.ExitError
			if p.waitErr != nil && !(errors.As(p.waitErr, &ee) && ee.ExitCode() == 0) {
				errs = append(errs, fmt.Errorf("kube-router on %s: %v: %s", p.node.Name, p.waitErr, p.stderr.String()))
			}
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			errs = append(errs, fmt.Errorf("kube-router on %s did not stop within 10s of SIGTERM", p.node.Name))
		}
	}
	k.procs = nil
	if k.ownDir {
		if err := os.RemoveAll(k.Dir); err != nil {
			errs = append(errs, err)
		}
		k.Dir, k.ownDir = "", false
	}
	return errors.Join(errs...)
}
