package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Kubectl runs the lab's kubectl with the admin kubeconfig inside the control-plane namespace and
// returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.KubectlIn(ctx, c.st.CPNetNS, args...)
}

// KubectlIn is Kubectl from another lab namespace (a node's, say).
func (c *Cluster) KubectlIn(ctx context.Context, ns string, args ...string) (string, error) {
	argv := append([]string{filepath.Join(c.st.BinDir, "kubectl"), "--kubeconfig=" + c.st.Kubeconfig}, args...)
	return nsExec(ctx, ns, argv...)
}

// ExecIn runs argv inside a lab namespace with nsenter --net (the flowlens CLI, say, which then
// reaches the apiserver with Kubeconfig).
func (c *Cluster) ExecIn(ctx context.Context, ns string, argv ...string) (string, error) {
	return nsExec(ctx, ns, argv...)
}

// InstallFlowlens installs flowlens the way a user does: the agent image into every node's
// containerd (agentArchive, from BuildAgentImage), the prometheus-operator CRDs, then
// `kubectl apply -k` of the lab overlay over deploy/base; it waits for the DaemonSet's rollout.
func (c *Cluster) InstallFlowlens(ctx context.Context, agentArchive string) error {
	repo, err := RepoRoot()
	if err != nil {
		return err
	}
	for _, n := range c.Nodes() {
		if err := c.ImportImage(ctx, n, agentArchive); err != nil {
			return err
		}
	}
	crds := filepath.Join(repo, "lab", "kube", "testdata", "prometheus-operator-crds.yaml")
	steps := [][]string{
		{"apply", "-f", crds},
		{"wait", "--for=condition=Established", "--timeout=60s",
			"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com"},
		{"apply", "-k", filepath.Join(repo, "lab", "kube", "overlay")},
	}
	for _, s := range steps {
		if _, err := c.Kubectl(ctx, s...); err != nil {
			return fmt.Errorf("install flowlens: %w", err)
		}
	}
	return c.WaitDaemonSet(ctx, "flowlens", "flowlens", 3*time.Minute)
}

// WaitDaemonSet waits until the DaemonSet's pods are updated and ready on every node.
func (c *Cluster) WaitDaemonSet(ctx context.Context, ns, name string, timeout time.Duration) error {
	if _, err := c.Kubectl(ctx, "-n", ns, "rollout", "status", "daemonset/"+name, "--timeout="+timeout.String()); err != nil {
		out, _ := c.Kubectl(ctx, "-n", ns, "describe", "pods")
		return fmt.Errorf("daemonset %s/%s not ready: %w\n%s", ns, name, err, out)
	}
	return nil
}
