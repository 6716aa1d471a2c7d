package lab

import (
	"context"
	"fmt"
	"os"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/lab/enforcer"
)

// Enforcers a lab can run.
const (
	EnforcerHand       = "hand"        // filter rules written by the lab in the K3s fork's shape
	EnforcerKubeRouter = "kube-router" // the real kube-router v2.1.0 controller, one process per node
)

// EnvKubeRouterBin names the flowlens-kube-router binary when Config.KubeRouterBin is empty.
const EnvKubeRouterBin = "FLOWLENS_KUBE_ROUTER_BIN"

func resolveEnforcer(cfg *Config) error {
	switch cfg.Enforcer {
	case "", EnforcerHand:
		cfg.Enforcer = EnforcerHand
		if cfg.KubeRouterK3sICMP {
			return fmt.Errorf("K3s ICMP accepts: only with enforcer %s (the hand rules have K3s's KUBE-NWPLCY-COMMON already)", EnforcerKubeRouter)
		}
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

// Enforcer is the seam between the lab's nodes and what enforces NetworkPolicy on them, beyond
// the rules the lab writes itself. The kube-router driver (lab/enforcer) is one; a real-cluster
// lab (etcd, apiserver and kubelet in the node namespace) is meant to be another.
type Enforcer interface {
	// Start begins enforcing the cluster's policies and returns once every node has synced.
	Start(ctx context.Context, c enforcer.Cluster) error
	// SetPolicies changes what is enforced and returns once every node has synced again.
	SetPolicies(ctx context.Context, pols []networkingv1.NetworkPolicy) error
	// Logs is each node's enforcer log so far.
	Logs() map[string]string
	// Stop stops enforcing processes; their rules stay until the namespaces go. Idempotent.
	Stop() error
}

// SetEnforcedPolicies changes what kube-router enforces on every node (not what PolicyYAML
// writes: that stays the scenario's intent) and returns once every node has finished a full sync
// with them. It is how a test makes the kernel and the intent disagree.
func (l *Lab) SetEnforcedPolicies(ctx context.Context, pols []networkingv1.NetworkPolicy) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enf == nil {
		return fmt.Errorf("set enforced policies: the lab's enforcer is %s, not a running kube-router", l.enforcer)
	}
	return l.enf.SetPolicies(ctx, pols)
}

// KubeRouterLogs returns each node's kube-router stderr so far (timings, errors).
func (l *Lab) KubeRouterLogs() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enf == nil {
		return map[string]string{}
	}
	return l.enf.Logs()
}

// StopEnforcer stops the kube-router processes. Their rules and ipsets stay in the node
// namespaces (kube-router's Cleanup is not called) and keep being enforced, unchanging; Close
// removes them with the namespaces.
func (l *Lab) StopEnforcer() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopEnforcerLocked()
}

func (l *Lab) stopEnforcerLocked() error {
	if l.enf == nil {
		return nil
	}
	return l.enf.Stop()
}

// startEnforcerLocked starts the configured enforcer, if the lab runs one.
func (l *Lab) startEnforcerLocked(ctx context.Context) error {
	if l.enf == nil {
		return nil
	}
	return l.enf.Start(ctx, enforcer.Cluster{Prefix: l.prefix, Scenario: l.scenario, Nodes: l.nodes, Pods: l.pods})
}
