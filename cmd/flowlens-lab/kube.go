package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/flowlens/flowlens/lab"
	"github.com/flowlens/flowlens/lab/kube"
	"github.com/flowlens/flowlens/lab/scenario"
)

// kubeDir is where `up --kubernetes` keeps the real cluster inside the state directory.
func kubeDir(stateDir string) string { return filepath.Join(stateDir, "kubernetes") }

// upKubernetes brings up the real cluster (package lab/kube), installs flowlens from deploy/base,
// makes the scenario's namespaces, pods, Services and NetworkPolicies real, and records the
// cluster for down. With hold it tears it down when ctx ends. k3sICMP gives kube-router's nodes
// K3s >= 1.33's ICMP accepts.
func upKubernetes(ctx context.Context, out io.Writer, log *slog.Logger, stateDir, prefix, krBin string, nodes int, sc *scenario.Scenario, hold, k3sICMP bool) error {
	if krBin == "" {
		krBin = os.Getenv(lab.EnvKubeRouterBin)
	}
	if k3sICMP && krBin == "" {
		return fmt.Errorf("--k3s-icmp: only with kube-router (--kube-router-bin or $%s)", lab.EnvKubeRouterBin)
	}
	dir := kubeDir(stateDir)
	if kube.Exists(dir) {
		return fmt.Errorf("%s holds a cluster already (run down first)", dir)
	}
	c, err := kube.Up(ctx, kube.Config{Prefix: prefix, Nodes: nodes, Dir: dir, Log: log})
	if err != nil {
		return err
	}
	if err := c.Save(); err != nil {
		return errors.Join(err, c.Close())
	}
	archive := filepath.Join(dir, "images", "flowlens.tar")
	if err := kube.BuildAgentImage(ctx, archive); err != nil {
		return errors.Join(err, c.Close())
	}
	if err := c.InstallFlowlens(ctx, archive); err != nil {
		return errors.Join(err, c.Close())
	}
	if sc == nil {
		sc = scenario.DefaultScenario()
	}
	if err := c.ApplyScenario(ctx, sc); err != nil {
		return errors.Join(err, c.Close())
	}
	enforcer := "none: the scenario's NetworkPolicies are not enforced (give --kube-router-bin)"
	if krBin != "" {
		if k3sICMP {
			if err := c.AcceptK3sICMP(ctx); err != nil {
				return errors.Join(err, c.Close())
			}
		}
		if err := c.StartKubeRouter(ctx, krBin); err != nil {
			return errors.Join(err, c.Close())
		}
		enforcer = "kube-router v2.1 on every node"
		if k3sICMP {
			enforcer += ", with K3s 1.33's ICMP accepts"
		}
	}
	if err := c.Save(); err != nil { // now with the scenario, for traffic
		return errors.Join(err, c.Close())
	}
	st := c.State()
	fmt.Fprintf(out, "cluster %s up (state in %s)\n", st.Prefix, dir)
	fmt.Fprintf(out, "kubeconfig %s\n", c.Kubeconfig())
	fmt.Fprintf(out, "apiserver netns %s (run kubectl there: ip netns exec %s kubectl --kubeconfig %s ...)\n", st.CPNetNS, st.CPNetNS, c.Kubeconfig())
	for _, n := range st.Nodes {
		fmt.Fprintf(out, "node %s netns %s ip %s podCIDR %s\n", n.Name, n.NetNS, n.IP, n.PodCIDR)
	}
	fmt.Fprintf(out, "scenario %s (%d pods), enforcer %s\n", st.Scenario.Name, len(st.Scenario.Pods), enforcer)
	if !hold {
		return nil
	}
	fmt.Fprintln(out, "holding; SIGINT or SIGTERM tears the cluster down")
	<-ctx.Done()
	return c.Close()
}

// downKubernetes takes down a cluster recorded in the state directory, and says whether there
// was one.
func downKubernetes(out io.Writer, log *slog.Logger, stateDir string) (bool, error) {
	dir := kubeDir(stateDir)
	if !kube.Exists(dir) {
		return false, nil
	}
	c, err := kube.Attach(dir, log)
	if err != nil {
		return true, err
	}
	if err := c.Close(); err != nil {
		return true, err
	}
	fmt.Fprintf(out, "cluster %s down\n", c.State().Prefix)
	return true, nil
}

// kubeTraffic runs the scenario's cases on the real pods of the cluster recorded in the state
// directory, and says whether there was one; it stops when down removes the cluster.
func kubeTraffic(ctx context.Context, log *slog.Logger, stateDir string) (bool, error) {
	dir := kubeDir(stateDir)
	if !kube.Exists(dir) {
		return false, nil
	}
	c, err := kube.Attach(dir, log)
	if err != nil {
		return true, err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go stopWhenGone(ctx, filepath.Join(dir, kube.StateFile), stop)
	if err := c.RunTraffic(ctx, log); err != nil {
		return true, err
	}
	if cause := context.Cause(ctx); errors.Is(cause, errLabDown) {
		return true, cause
	}
	return true, nil
}
