package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flowlens/flowlens/agent/flowlog"
	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/aggregate"
	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/enrich"
	"github.com/flowlens/flowlens/internal/lost"
	"github.com/flowlens/flowlens/kubeapi"
	"github.com/flowlens/flowlens/manifest"
)

// New wires the real parts from cfg: the eBPF capture of this network
// namespace, the Kubernetes client when one is configured or the agent runs
// in a pod, and then the pipeline through build. ctx bounds the informers
// started here.
func New(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) (*Agent, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Check what the user typed before loading anything into the kernel.
	in, err := parseInputs(cfg)
	if err != nil {
		return nil, err
	}
	client, err := kubeClient(cfg)
	if err != nil {
		return nil, err
	}
	capture, err := bpf.New(cfg.captureConfig(), log.With("component", "capture"), reg)
	if err != nil {
		return nil, fmt.Errorf("load capture: %w", err)
	}
	a, err := buildOn(ctx, cfg, in, log, stdout, reg, capture, client)
	if err != nil {
		// Until Run owns the capture, a failure must unload it.
		if cerr := capture.Close(); cerr != nil {
			log.Error("unloading capture", "err", cerr)
		}
		return nil, err
	}
	return a, nil
}

// buildOn builds the agent over a loaded capture: the aggregation of its
// counters into flows is the agent's source.
func buildOn(ctx context.Context, cfg Config, in inputs, log *slog.Logger, stdout io.Writer,
	reg *prometheus.Registry, capture *bpf.Capture, client kubeAPI) (*Agent, error) {
	src, err := aggregate.New(capture, log.With("component", "aggregate"), reg)
	if err != nil {
		return nil, err
	}
	return build(ctx, cfg, in, log, stdout, reg, src, client)
}

// inputs are the flags that need parsing, checked before anything starts.
type inputs struct {
	watch     []netip.Prefix
	named     map[string]netip.Prefix
	logFilter flowlog.Matcher
}

func parseInputs(cfg Config) (inputs, error) {
	var in inputs
	var err error
	if in.watch, err = cfg.WatchPrefixes(); err != nil {
		return in, err
	}
	if in.named, err = enrich.ParseNamedCIDRs(cfg.NamedCIDRs); err != nil {
		return in, fmt.Errorf("--named-cidr: %w", err)
	}
	if f, err := cfg.FlowLogFilter(); err != nil {
		return in, err
	} else if f != nil {
		in.logFilter = f
	}
	return in, nil
}

// kubeAPI is the Kubernetes API as the agent reads it: list-watches of
// typed resources (enrichment, the cluster's NetworkPolicies) and of
// metadata only (workload owners), and /version. kubeapi.Client in
// production; client-go's fake clientset (kubeapitest) in tests.
type kubeAPI interface {
	ListWatch(gv schema.GroupVersion, resource string) cache.ListerWatcher
	MetadataListWatch(r schema.GroupVersionResource) cache.ListerWatcher
	Version(ctx context.Context) error
}

// kubeClient returns the Kubernetes API client, or nil when names come
// from --cluster-file, --no-kube is set, or there is no API to reach.
func kubeClient(cfg Config) (kubeAPI, error) {
	if cfg.ClusterFile != "" || cfg.NoKube || (cfg.Kubeconfig == "" && !inCluster()) {
		return nil, nil
	}
	rc, err := kubeapi.Config(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	rc.UserAgent = "flowlens-agent"
	client, err := kubeapi.New(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

// build is the whole pipeline from its real or fake sources: src is the
// kernel side, client the Kubernetes API (nil without one). New and the
// tests both come through here.
func build(ctx context.Context, cfg Config, in inputs, log *slog.Logger, stdout io.Writer,
	reg *prometheus.Registry, src source, client kubeAPI) (*Agent, error) {
	d := deps{gatherer: reg, source: src}
	fail := func(err error) (*Agent, error) {
		for _, c := range d.closers {
			if cerr := c(); cerr != nil {
				log.Error("closing after a failed start", "err", cerr)
			}
		}
		return nil, err
	}
	ecfg := enrich.Config{NodeName: cfg.NodeName, NamedCIDRs: in.named, DeletedGrace: cfg.DeletedPodGrace, ClusterCIDRs: in.watch}
	en, err := buildEnrichment(ctx, cfg, ecfg, client, log, reg)
	if err != nil {
		return fail(err)
	}
	if en.resolver != nil {
		d.names = resolverNamer{en.resolver}
		d.enrich = resolverState{en.resolver}
	}
	d.clusterState = en.state
	if err := wirePolicy(&d, cfg, en, client, log); err != nil {
		return fail(err)
	}
	if err := wireFlowLogs(&d, cfg, in.logFilter, stdout); err != nil {
		return fail(err)
	}
	// The gRPC API serves from the recent-flow ring.
	if cfg.GRPCAddress != "" {
		ring := observer.NewRing(cfg.RingCapacity)
		d.ring = ring
		lostEvents, err := lost.NewCounter(reg)
		if err != nil {
			return fail(err)
		}
		scfg := observer.ServeConfig{Address: cfg.GRPCAddress, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey, TLSClientCA: cfg.TLSClientCA}
		d.serve = func(status observer.Status) func(context.Context) error {
			srv := observer.NewServer(ring, status, cfg.NodeName, log.With("component", "grpc"))
			srv.SetLostCounter(lostEvents)
			return func(ctx context.Context) error {
				return observer.Serve(ctx, scfg, srv, log.With("component", "grpc"))
			}
		}
	}
	a, err := newAgent(cfg, log, reg, d)
	if err != nil {
		return fail(err)
	}
	return a, nil
}

// enrichment is what names endpoints, and the policies a --cluster-file holds.
type enrichment struct {
	resolver    enrich.Resolver
	state       enrich.ClusterState
	filePolicys []networkingv1.NetworkPolicy
}

// buildEnrichment names endpoints from --cluster-file, or the Kubernetes
// API when there is a client, or not at all.
func buildEnrichment(ctx context.Context, cfg Config, ecfg enrich.Config, client kubeAPI,
	log *slog.Logger, reg prometheus.Registerer) (enrichment, error) {
	var en enrichment
	switch {
	case cfg.ClusterFile != "":
		objs, err := manifest.Load(cfg.ClusterFile)
		if err != nil {
			return en, fmt.Errorf("--cluster-file: %w", err)
		}
		st, err := enrich.NewStatic(objs, ecfg)
		if err != nil {
			return en, fmt.Errorf("--cluster-file: %w", err)
		}
		st.WithSource("static:" + cfg.ClusterFile)
		if err := enrich.RegisterStaticHealth(reg); err != nil {
			return en, err
		}
		en.resolver, en.state = st, st
		en.filePolicys = objs.NetworkPolicies
	case client != nil:
		kube, err := enrich.NewKube(ctx, enrich.NewAPI(client), ecfg, log.With("component", "enrich"), reg)
		if err != nil {
			return en, fmt.Errorf("start enrichment: %w", err)
		}
		en.resolver, en.state = kube, kube
	}
	return en, nil
}

// wirePolicy sets the intended policy set (see newJudgeFromConfig) and
// re-judges when the cluster state changes.
func wirePolicy(d *deps, cfg Config, en enrichment, client kubeAPI, log *slog.Logger) error {
	j, feed, err := newJudgeFromConfig(cfg, log, en.state, client, en.filePolicys)
	if err != nil || j == nil {
		return err
	}
	d.judge = j
	d.policy = j
	d.background = append(d.background, feed...)
	d.stateConsumers = append(d.stateConsumers, func([]corev1.Pod) { j.changed.Notify() })
	return nil
}

// wireFlowLogs opens the flow logs: stdout for the container log pipeline
// and/or rotated files.
func wireFlowLogs(d *deps, cfg Config, filter flowlog.Matcher, stdout io.Writer) error {
	var logs flowWriters
	for _, path := range cfg.FlowLog {
		fw, err := flowlog.New(flowlog.Config{
			Path: path, MaxSizeMB: cfg.FlowLogMaxSizeMB, MaxBackups: cfg.FlowLogMaxBackups,
			Compress: cfg.FlowLogCompress, Filter: filter,
		}, stdout)
		if err != nil {
			return fmt.Errorf("--flow-log: %w", err)
		}
		logs = append(logs, fw)
		d.closers = append(d.closers, fw.Close)
	}
	if len(logs) > 0 {
		d.flowlog = logs
	}
	return nil
}

// inCluster reports whether an in-cluster config is available.
func inCluster() bool {
	if _, err := rest.InClusterConfig(); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join("/var/run/secrets/kubernetes.io/serviceaccount", "token"))
	return err == nil
}
