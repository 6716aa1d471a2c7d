package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// Enforcers a lab can run.
const (
	EnforcerHand       = "hand"        // filter rules written by the lab in the K3s fork's shape
	EnforcerKubeRouter = "kube-router" // the real kube-router v2.1.0 controller, one process per node
)

// EnvKubeRouterBin names the flowlens-kube-router binary when Config.KubeRouterBin is empty.
const EnvKubeRouterBin = "FLOWLENS_KUBE_ROUTER_BIN"

// krSyncTimeout bounds one full sync of kube-router, including its start.
const krSyncTimeout = 60 * time.Second

// krProc is one flowlens-kube-router process running in a node namespace.
type krProc struct {
	node       *Node
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

func resolveEnforcer(cfg *Config) error {
	switch cfg.Enforcer {
	case "", EnforcerHand:
		cfg.Enforcer = EnforcerHand
		if len(cfg.Scenario.Rules) == 0 && len(cfg.Scenario.Policies) > 0 {
			return fmt.Errorf("scenario %q has NetworkPolicies but no hand-written rules (no TargetOf/PeerOf data): run it with enforcer %q",
				cfg.Scenario.Name, EnforcerKubeRouter)
		}
	case EnforcerKubeRouter:
		if cfg.KubeRouterBin == "" {
			cfg.KubeRouterBin = os.Getenv(EnvKubeRouterBin)
		}
		if cfg.KubeRouterBin == "" {
			return fmt.Errorf("enforcer %s: no binary: set KubeRouterBin or $%s (go build ./cmd/flowlens-kube-router in lab/kuberouter)",
				EnforcerKubeRouter, EnvKubeRouterBin)
		}
		if _, err := os.Stat(cfg.KubeRouterBin); err != nil {
			return fmt.Errorf("enforcer %s: %w", EnforcerKubeRouter, err)
		}
	default:
		return fmt.Errorf("enforcer %q: want %q or %q", cfg.Enforcer, EnforcerHand, EnforcerKubeRouter)
	}
	return nil
}

// Enforcer is "hand" or "kube-router".
func (l *Lab) Enforcer() string { return l.enforcer }

// startKubeRouterLocked writes the cluster file and one policy file per node, starts one
// kube-router per node namespace and waits for each first full sync.
func (l *Lab) startKubeRouterLocked(ctx context.Context) error {
	if l.krDir == "" {
		d, err := os.MkdirTemp("", "flowlens-lab-"+l.prefix+"-")
		if err != nil {
			return fmt.Errorf("kube-router work dir: %w", err)
		}
		l.krDir, l.krOwnDir = d, true
	}
	cluster := filepath.Join(l.krDir, "kube-router-cluster.yaml")
	var buf bytes.Buffer
	if err := writeDocs(&buf, clusterObjects(l.prefix, l.scenario, l.nodes, l.pods), true); err != nil {
		return fmt.Errorf("kube-router cluster file: %w", err)
	}
	if err := os.WriteFile(cluster, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("kube-router cluster file: %w", err)
	}
	for _, n := range l.nodes {
		pf := filepath.Join(l.krDir, "kube-router-"+n.Name+"-policies.yaml")
		if err := writeFile(pf, func(w io.Writer) error { return writePolicies(w, l.scenario) }); err != nil {
			return err
		}
		p := &krProc{node: n, policyFile: pf, lines: make(chan string, 16), exited: make(chan struct{})}
		p.cmd = exec.Command("ip", "netns", "exec", n.NetNS, l.krBin,
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
		l.kr = append(l.kr, p)
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
		l.log.Info("kube-router synced", "node", n.Name, "took", time.Since(start))
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

// SetEnforcedPolicies changes what kube-router enforces on every node (not what PolicyYAML
// writes: that stays the scenario's intent) and returns once every node has finished a full sync
// with them. It is how a test makes the kernel and the intent disagree.
func (l *Lab) SetEnforcedPolicies(ctx context.Context, pols []networkingv1.NetworkPolicy) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enforcer != EnforcerKubeRouter || len(l.kr) == 0 {
		return fmt.Errorf("set enforced policies: the lab's enforcer is %s, not a running kube-router", l.enforcer)
	}
	sc := &Scenario{Policies: pols}
	for _, p := range l.kr {
		if err := writeFile(p.policyFile, func(w io.Writer) error { return writePolicies(w, sc) }); err != nil {
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
	for _, p := range l.kr {
		if err := p.waitSynced(ctx); err != nil {
			return err
		}
	}
	return nil
}

// KubeRouterLogs returns each node's kube-router stderr so far (timings, errors).
func (l *Lab) KubeRouterLogs() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for _, p := range l.kr {
		out[p.node.Name] = p.stderr.String()
	}
	return out
}

// StopEnforcer stops the kube-router processes. Their rules and ipsets stay in the node
// namespaces (kube-router's Cleanup is not called) and keep being enforced, unchanging; Close
// removes them with the namespaces.
func (l *Lab) StopEnforcer() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopKubeRouterLocked()
}

func (l *Lab) stopKubeRouterLocked() error {
	var errs []error
	for _, p := range l.kr {
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
	l.kr = nil
	if l.krOwnDir {
		if err := os.RemoveAll(l.krDir); err != nil {
			errs = append(errs, err)
		}
		l.krDir, l.krOwnDir = "", false
	}
	return errors.Join(errs...)
}
