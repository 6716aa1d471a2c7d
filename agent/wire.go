package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flowlens/flowlens/agent/flowlog"
	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/enrich"
	"github.com/flowlens/flowlens/internal/lost"
	"github.com/flowlens/flowlens/manifest"
	"github.com/flowlens/flowlens/policy"
)

// New wires the real parts from cfg: the eBPF capture of this network
// namespace, enrichment (static file or Kubernetes API), the intended
// policy set (files or cluster), the flow log, and the gRPC API. ctx bounds
// the informers started here.
func New(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) (*Agent, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := deps{gatherer: reg}

	watch, err := cfg.WatchPrefixes()
	if err != nil {
		return nil, err
	}
	// Check what the user typed before loading anything into the kernel.
	named, err := enrich.ParseNamedCIDRs(cfg.NamedCIDRs)
	if err != nil {
		return nil, fmt.Errorf("--named-cidr: %w", err)
	}
	var logFilter flowlog.Matcher
	if f, err := cfg.FlowLogFilter(); err != nil {
		return nil, err
	} else if f != nil {
		logFilter = f
	}

	capture, err := bpf.New(cfg.captureConfig(), log.With("component", "capture"), reg)
	if err != nil {
		return nil, fmt.Errorf("load capture: %w", err)
	}
	d.source = capture
	// Until Run owns the capture, a failure below must unload it.
	fail := func(err error) (*Agent, error) {
		if cerr := capture.Close(); cerr != nil {
			log.Error("unloading capture", "err", cerr)
		}
		for _, c := range d.closers {
			_ = c()
		}
		return nil, err
	}

	// Enrichment.
	ecfg := enrich.Config{NodeName: cfg.NodeName, NamedCIDRs: named, DeletedGrace: cfg.DeletedPodGrace, ClusterCIDRs: watch}
	var (
		resolver    enrich.Resolver
		state       enrich.ClusterState
		client      kubernetes.Interface
		filePolicys []networkingv1.NetworkPolicy
		haveFileSet bool
	)
	switch {
	case cfg.ClusterFile != "":
		objs, err := manifest.Load(cfg.ClusterFile)
		if err != nil {
			return fail(fmt.Errorf("--cluster-file: %w", err))
		}
		st, err := enrich.NewStatic(objs, ecfg)
		if err != nil {
			return fail(fmt.Errorf("--cluster-file: %w", err))
		}
		st.WithSource("static:" + cfg.ClusterFile)
		resolver, state = st, st
		filePolicys, haveFileSet = objs.NetworkPolicies, true
	case !cfg.NoKube && (cfg.Kubeconfig != "" || inCluster()):
		client, err = enrich.Client(cfg.Kubeconfig)
		if err != nil {
			return fail(fmt.Errorf("kubernetes client: %w", err))
		}
		kube, err := enrich.NewKube(ctx, client, ecfg, log.With("component", "enrich"), reg)
		if err != nil {
			return fail(fmt.Errorf("start enrichment: %w", err))
		}
		resolver, state = kube, kube
	}
	if resolver != nil {
		d.names = resolverNamer{resolver}
		d.enrich = resolverState{resolver}
	}

	// The intended policy set: files win; otherwise the cluster's own set
	// (from the API, or the policies in --cluster-file).
	var j *policyJudge
	switch {
	case cfg.Policies != "":
		j = newPolicyJudge(log.With("component", "policy"), "files:"+cfg.Policies, state)
		path := cfg.Policies
		d.background = append(d.background, func(ctx context.Context) error {
			return j.watchFiles(ctx, path, cfg.PolicyReloadInterval)
		})
		if client != nil {
			// Keep the cluster's set too, to say how it differs from the files.
			d.background = append(d.background, func(ctx context.Context) error {
				return watchClusterPolicies(ctx, client, log, func(cluster []networkingv1.NetworkPolicy) {
					j.mu.Lock()
					files := j.policies
					j.mu.Unlock()
					j.setClusterDiff(policy.Diff(files, cluster))
				})
			})
		}
	case client != nil:
		j = newPolicyJudge(log.With("component", "policy"), "cluster", state)
		d.background = append(d.background, func(ctx context.Context) error {
			return watchClusterPolicies(ctx, client, log, j.setPolicies)
		})
	case haveFileSet && len(filePolicys) > 0:
		j = newPolicyJudge(log.With("component", "policy"), "cluster-file:"+cfg.ClusterFile, state)
		j.setPolicies(filePolicys)
	}
	if j != nil {
		d.judge = j
		d.policy = j
		d.background = append(d.background, j.run)
	}

	// Flow logs: stdout for the container log pipeline and/or rotated files.
	var logs flowWriters
	for _, path := range cfg.FlowLog {
		fw, err := flowlog.New(flowlog.Config{
			Path: path, MaxSizeMB: cfg.FlowLogMaxSizeMB, MaxBackups: cfg.FlowLogMaxBackups,
			Compress: cfg.FlowLogCompress, Filter: logFilter,
		}, stdout)
		if err != nil {
			return fail(fmt.Errorf("--flow-log: %w", err))
		}
		logs = append(logs, fw)
		d.closers = append(d.closers, fw.Close)
	}
	if len(logs) > 0 {
		d.flowlog = logs
	}

	a, err := newAgent(cfg, log, reg, d)
	if err != nil {
		return fail(err)
	}
	if state != nil {
		fan := &stateFanout{state: state, consumers: []func([]corev1.Pod){a.pipe.metrics.forgetGonePods}}
		if j != nil {
			fan.consumers = append(fan.consumers, func([]corev1.Pod) { j.trigger() })
		}
		a.deps.background = append(a.deps.background, fan.run)
	}

	// The gRPC API serves from the recent-flow ring.
	if cfg.GRPCAddress != "" {
		ring := observer.NewRing(cfg.RingCapacity)
		a.pipe.ring = ring
		srv := observer.NewServer(ring, a, cfg.NodeName, log.With("component", "grpc"))
		lostEvents, err := lost.NewCounter(reg)
		if err != nil {
			return fail(err)
		}
		srv.SetLostCounter(lostEvents)
		scfg := observer.ServeConfig{Address: cfg.GRPCAddress, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey, TLSClientCA: cfg.TLSClientCA}
		a.deps.background = append(a.deps.background, func(ctx context.Context) error {
			return observer.Serve(ctx, scfg, srv, log.With("component", "grpc"))
		})
	}
	return a, nil
}

// inCluster reports whether an in-cluster config is available.
func inCluster() bool {
	if _, err := rest.InClusterConfig(); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join("/var/run/secrets/kubernetes.io/serviceaccount", "token"))
	return err == nil
}
