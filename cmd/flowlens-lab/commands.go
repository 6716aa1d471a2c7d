package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/lab"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
)

const defaultStateDir = "/run/flowlens-lab"

func newRootCmd(log *slog.Logger) *cobra.Command {
	root := &cobra.Command{
		Use:           "flowlens-lab",
		Short:         "Build a K3s-node emulation (cni0, veths, flannel.1, kube-router-shaped rules) in network namespaces",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var stateDir string
	root.PersistentFlags().StringVar(&stateDir, "state-dir", defaultStateDir, "directory holding state.json, cluster.yaml and policies.yaml")
	root.AddCommand(upCmd(log, &stateDir), downCmd(log, &stateDir), trafficCmd(log, &stateDir), statusCmd(&stateDir))
	return root
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

func upCmd(log *slog.Logger, stateDir *string) *cobra.Command {
	var (
		nodes        int
		prefix       string
		hold         bool
		scenarioName string
		enforcer     string
		krBin        string
		k3sICMP      bool
		k8s          bool
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create the lab and write state.json, cluster.yaml and policies.yaml to --state-dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes != 1 && nodes != 2 {
				return fmt.Errorf("--nodes %d: want 1 or 2", nodes)
			}
			if _, err := os.Stat(statePath(*stateDir)); err == nil {
				return fmt.Errorf("%s exists: a lab is already up (run down first)", statePath(*stateDir))
			}
			if err := os.MkdirAll(*stateDir, 0o755); err != nil {
				return fmt.Errorf("--state-dir: %w", err)
			}
			cfg := lab.Config{Prefix: prefix, Nodes: nodes, Log: log, Enforcer: enforcer, KubeRouterBin: krBin, KubeRouterK3sICMP: k3sICMP}
			switch scenarioName {
			case "default":
			case "homelab":
				dir, err := scenario.HomelabDir()
				if err != nil {
					return fmt.Errorf("--scenario homelab: %w", err)
				}
				if cfg.Scenario, err = scenario.LoadHomelab(dir, nodes); err != nil {
					return fmt.Errorf("--scenario homelab: %w", err)
				}
				// The homelab's policies talk about the LAN, Proxmox, MinIO
				// and the internet: give them an outside world.
				cfg.External = true
			default:
				return fmt.Errorf("--scenario %q: want default or homelab", scenarioName)
			}
			if k8s {
				return upKubernetes(cmd.Context(), cmd.OutOrStdout(), log, *stateDir, prefix, krBin, nodes, cfg.Scenario, hold, k3sICMP)
			}
			if enforcer == lab.EnforcerKubeRouter {
				cfg.KubeRouterDir = *stateDir
			}
			l, err := lab.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := writeLabFiles(l, *stateDir); err != nil {
				return errors.Join(err, l.Close(), removeLabFiles(*stateDir))
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "lab %s up (state in %s)\n", l.Prefix(), *stateDir)
			for _, n := range l.Nodes() {
				fmt.Fprintf(out, "node %s netns %s ip %s podCIDR %s\n", n.Name, n.NetNS, n.IP, n.PodCIDR)
			}
			if ns := l.ExternalNetNS(); ns != "" {
				fmt.Fprintf(out, "outside netns %s\n", ns)
			}
			// The names the agent should give outside addresses (--named-cidr).
			for _, nc := range l.NamedCIDRs() {
				fmt.Fprintf(out, "named-cidr %s\n", nc)
			}
			if !hold {
				// The rules stay in force without the controllers; only SIGHUP reloads need them.
				return l.StopEnforcer()
			}
			fmt.Fprintln(out, "holding; SIGINT or SIGTERM tears the lab down")
			<-cmd.Context().Done()
			return errors.Join(l.Close(), removeLabFiles(*stateDir))
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 1, "number of node namespaces (1 or 2; 2 joins them over VXLAN)")
	cmd.Flags().StringVar(&prefix, "prefix", "", "name prefix for every namespace (default fl + 4 random hex)")
	cmd.Flags().BoolVar(&hold, "hold", false, "keep running and tear down on SIGINT/SIGTERM")
	cmd.Flags().StringVar(&scenarioName, "scenario", "default", "default or homelab (examples/homelab; needs --enforcer kube-router)")
	cmd.Flags().StringVar(&enforcer, "enforcer", lab.EnforcerHand, "hand (lab-written rules) or kube-router (the real controller, test-only)")
	cmd.Flags().BoolVar(&k8s, "kubernetes", false, "a real cluster (etcd, apiserver, kubelet, containerd, kube-proxy; package lab/kube) with flowlens installed from deploy/base")
	cmd.Flags().BoolVar(&k3sICMP, "k3s-icmp", false, "with --enforcer kube-router (or --kubernetes with --kube-router-bin): accept ICMP echo, unreachable and time-exceeded before any policy, as K3s >= 1.33's kube-router does")
	cmd.Flags().StringVar(&krBin, "kube-router-bin", "", "flowlens-kube-router binary for --enforcer kube-router (default $"+lab.EnvKubeRouterBin+")")
	return cmd
}

func writeLabFiles(l *lab.Lab, dir string) error {
	if err := lab.SaveState(statePath(dir), l.State()); err != nil {
		return err
	}
	if err := l.WriteClusterYAML(filepath.Join(dir, "cluster.yaml")); err != nil {
		return err
	}
	return l.WritePolicyYAML(filepath.Join(dir, "policies.yaml"))
}

func removeLabFiles(dir string) error {
	var errs []error
	for _, f := range []string{"state.json", "cluster.yaml", "policies.yaml",
		"kube-router-cluster.yaml", "kube-router-node1-policies.yaml", "kube-router-node2-policies.yaml"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func downCmd(log *slog.Logger, stateDir *string) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove everything state.json lists, and sweep any namespace carrying the prefix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hadCluster, err := downKubernetes(cmd.OutOrStdout(), log, *stateDir)
			errs := []error{err}
			st, err := lab.LoadState(statePath(*stateDir))
			switch {
			case err == nil:
				l, aerr := lab.Attach(st, log)
				if aerr != nil {
					return aerr
				}
				errs = append(errs, l.Close())
				if prefix == "" {
					prefix = st.Prefix
				}
			case errors.Is(err, os.ErrNotExist):
				if prefix == "" && hadCluster {
					return errors.Join(errs...) // only the real cluster was up
				}
				if prefix == "" {
					return fmt.Errorf("no %s and no --prefix: nothing to take down", statePath(*stateDir))
				}
			default:
				return err
			}
			removed, err := netns.Sweep(context.WithoutCancel(cmd.Context()), prefix)
			errs = append(errs, err, removeLabFiles(*stateDir))
			for _, n := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "swept %s\n", n)
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s down\n", prefix)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "also sweep namespaces with this prefix (default: the state's)")
	return cmd
}

func trafficCmd(log *slog.Logger, stateDir *string) *cobra.Command {
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "traffic",
		Short: "Run the scenario's traffic cases every ~2 s (allowed, rejected, UDP burst, cross-node, ClusterIP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			if found, err := kubeTraffic(ctx, log, *stateDir); found {
				return err
			}
			l, err := attach(log, *stateDir)
			if err != nil {
				return err
			}
			// `flowlens-lab down` removes the state file; traffic must stop
			// then instead of failing case after case against a gone lab.
			ctx, stop := context.WithCancelCause(ctx)
			defer stop(nil)
			go stopWhenGone(ctx, statePath(*stateDir), stop)
			if err := traffic.RunScenario(ctx, l, log); err != nil {
				return err
			}
			if cause := context.Cause(ctx); errors.Is(cause, errLabDown) {
				return cause
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	return cmd
}

// errLabDown ends `flowlens-lab traffic` when the lab it drives is taken down.
var errLabDown = errors.New("the lab was taken down (flowlens-lab down); traffic stopped")

// stopWhenGone cancels ctx with errLabDown once the lab's state file is gone.
func stopWhenGone(ctx context.Context, state string, stop context.CancelCauseFunc) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := os.Stat(state); errors.Is(err, os.ErrNotExist) {
				stop(errLabDown)
				return
			}
		}
	}
}

func statusCmd(stateDir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the lab recorded in state.json and whether its namespaces exist",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.LoadState(statePath(*stateDir))
			if errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "no lab (no %s)\n", statePath(*stateDir))
				return nil
			}
			if err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
}

func printStatus(w io.Writer, st lab.State) error {
	present := map[string]bool{}
	names, err := netns.List()
	if err != nil {
		return err
	}
	for _, n := range names {
		present[n] = true
	}
	mark := func(ns string) string {
		if present[ns] {
			return "up"
		}
		return "MISSING"
	}
	fmt.Fprintf(w, "lab %s, scenario %s\n", st.Prefix, st.Scenario.Name)
	for _, n := range st.Nodes {
		fmt.Fprintf(w, "node %-6s %-8s netns %s ip %s podCIDR %s\n", n.Name, mark(n.NetNS), n.NetNS, n.IP, n.PodCIDR)
	}
	for _, p := range st.Pods {
		fmt.Fprintf(w, "pod  %-22s %-8s netns %s ip %s node %s veth %s\n", p.Key(), mark(p.NetNS), p.NetNS, p.IP, p.Node, p.HostVeth)
	}
	return nil
}

func attach(log *slog.Logger, dir string) (*lab.Lab, error) {
	st, err := lab.LoadState(statePath(dir))
	if err != nil {
		return nil, err
	}
	return lab.Attach(st, log)
}
