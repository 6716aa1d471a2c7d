package kube

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// StartKubeRouter runs the real kube-router v2.1.0 network-policy controller (bin is
// lab/kuberouter's flowlens-kube-router, test-only) in every node's namespace, watching the
// cluster's apiserver as K3s's embedded controller does, and waits for each first full sync.
// Close stops it with the other daemons; its rules go with the node namespace.
func (c *Cluster) StartKubeRouter(ctx context.Context, bin string) error {
	for _, n := range c.Nodes() {
		name := "kube-router-" + n.Name
		if err := c.start(name, n.NetNS, []string{bin, "--node", n.Name, "--kubeconfig", c.st.Kubeconfig}); err != nil {
			return err
		}
		p := c.proc(name)
		err := poll(ctx, 60*time.Second, func(context.Context) bool {
			b, _ := os.ReadFile(p.Log)
			return strings.Contains(string(b), "synced") || !p.running()
		})
		if err != nil || !p.running() {
			return fmt.Errorf("kube-router on %s: no first sync (%v): %s", n.Name, err, p.tail(2000))
		}
	}
	return nil
}
