package kube

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// waitContainerd waits until the node's containerd answers on its socket.
func (c *Cluster) waitContainerd(ctx context.Context, n NodeState, timeout time.Duration) error {
	p := c.proc(procName("containerd", n))
	var last error
	err := poll(ctx, timeout, func(ctx context.Context) bool {
		if p != nil && !p.running() {
			last = fmt.Errorf("containerd on %s exited: %s", n.Name, p.tail(2000))
			return true
		}
		if _, err := os.Stat(n.containerdSock()); err != nil {
			last = err
			return false
		}
		_, last = c.ctr(ctx, n, "version")
		return last == nil
	})
	if last != nil {
		return fmt.Errorf("containerd on %s not ready: %w", n.Name, last)
	}
	return err
}

// waitNodesReady waits until every node is registered and Ready, and the default ServiceAccount
// exists (the controller-manager is working: pods cannot be created before it).
func (c *Cluster) waitNodesReady(ctx context.Context, timeout time.Duration) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	want := c.Nodes()
	var last string
	err = poll(ctx, timeout, func(ctx context.Context) bool {
		for _, p := range c.State().Procs {
			if !p.running() {
				last = fmt.Sprintf("%s exited: %s", p.Name, p.tail(2000))
				return true
			}
		}
		for _, n := range want {
			node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				last = fmt.Sprintf("node %s: %v", n.Name, err)
				return false
			}
			if !nodeReady(node) {
				last = fmt.Sprintf("node %s not Ready", n.Name)
				return false
			}
		}
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			last = fmt.Sprintf("default ServiceAccount: %v", err)
			return false
		}
		last = ""
		return true
	})
	if last != "" {
		return fmt.Errorf("cluster not ready: %s", last)
	}
	return err
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
