package kuberouter

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// StartLive runs kube-router's controller against a real API server (the lab's real cluster,
// lab/kube), as K3s runs it: Nodes, Pods, Namespaces and NetworkPolicies come from the server's
// watches, and every change there triggers a full sync. It returns once the first sync finished.
func StartLive(ctx context.Context, cfg Config, kubeconfig string) (*Controller, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	return start(ctx, cfg, client)
}
