// Command flowlens-kube-router runs kube-router's network-policy controller (v2.1.0, TEST-ONLY)
// inside the current network namespace, over a fake clientset built from a cluster file and
// NetworkPolicy files. The lab starts one per node namespace:
//
//	ip netns exec <node-netns> flowlens-kube-router --node node1 --cluster FILE --policies FILE_OR_DIR
//
// With --kubeconfig instead of --cluster and --policies it watches a real API server (the lab's
// real cluster) and follows its NetworkPolicies as K3s's embedded controller does; SIGHUP is then
// ignored.
//
// It prints "synced" on stdout after the first full sync and after each SIGHUP (which re-reads
// --policies and applies the difference), and exits on SIGTERM or SIGINT. An "Aborting sync" from
// kube-router is fatal (exit 1).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flowlens/flowlens/lab/kuberouter"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "flowlens-kube-router:", err)
		os.Exit(1)
	}
}

func run() error {
	node := flag.String("node", "", "Kubernetes node name this process enforces for (required)")
	clusterFile := flag.String("cluster", "", "cluster YAML with the Node, Namespaces and Pods (required)")
	policies := flag.String("policies", "", "NetworkPolicy YAML file or directory (required)")
	verbose := flag.Bool("verbose", false, "copy every kube-router log line to stderr (errors are always copied)")
	timeout := flag.Duration("sync-timeout", 30*time.Second, "how long a full sync may take")
	kubeconfig := flag.String("kubeconfig", "", "watch this API server instead of --cluster and --policies")
	flag.Parse()
	if *kubeconfig != "" && *node != "" {
		return runLive(*node, *kubeconfig, *verbose, *timeout)
	}
	switch {
	case *node == "":
		return fmt.Errorf("--node is required")
	case *clusterFile == "":
		return fmt.Errorf("--cluster is required")
	case *policies == "":
		return fmt.Errorf("--policies is required")
	}
	cluster, err := kuberouter.LoadFiles(*clusterFile)
	if err != nil {
		return fmt.Errorf("--cluster: %w", err)
	}
	pols, err := kuberouter.LoadFiles(*policies)
	if err != nil {
		return fmt.Errorf("--policies: %w", err)
	}
	cluster.Policies = pols.Policies
	// utils.GetNodeObject looks NODE_NAME up first; the host's name must not win.
	if err := os.Setenv("NODE_NAME", *node); err != nil {
		return err
	}

	out := bufio.NewWriter(os.Stdout)
	say := func(s string) { fmt.Fprintln(out, s); out.Flush() }
	cfg := config(*node, *verbose)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	start := time.Now()
	c, err := kuberouter.Start(ctx, cfg, cluster)
	cancel()
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Fprintf(os.Stderr, "first sync of %s done in %v (%d pods, %d policies)\n", *node, time.Since(start).Round(time.Millisecond), len(cluster.Pods), len(cluster.Policies))
	say("synced")

	for sig := range sigs {
		if sig != syscall.SIGHUP {
			return nil
		}
		pols, err := kuberouter.LoadFiles(*policies)
		if err != nil {
			return fmt.Errorf("reload --policies: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		start := time.Now()
		err = c.SetPolicies(ctx, pols.Policies)
		cancel()
		if err != nil {
			return fmt.Errorf("resync: %w", err)
		}
		fmt.Fprintf(os.Stderr, "resync of %s with %d policies done in %v\n", *node, len(pols.Policies), time.Since(start).Round(time.Millisecond))
		say("synced")
	}
	return nil
}

func config(node string, verbose bool) kuberouter.Config {
	return kuberouter.Config{
		Node: node, AbortIsFatal: true,
		LogLine: func(line string) {
			if verbose || strings.Contains(line, `"error"`) || strings.Contains(line, "Aborting") {
				fmt.Fprintln(os.Stderr, line)
			}
		},
	}
}

// runLive follows a real API server until SIGTERM or SIGINT.
func runLive(node, kubeconfig string, verbose bool, timeout time.Duration) error {
	if err := os.Setenv("NODE_NAME", node); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	c, err := kuberouter.StartLive(ctx, config(node, verbose), kubeconfig)
	cancel()
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Println("synced")
	<-sigs
	return nil
}
