// Package agent is the flowlens daemon: it runs the kernel capture, names and
// judges every flow, and fans the flows out to the recent-flow ring (served
// over gRPC), Prometheus metrics and the JSON flow log.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/aggregate"
	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/enrich"
	"github.com/flowlens/flowlens/internal/version"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// source produces flow and lost-event records (aggregate.Source over the
// kernel capture). Run returns after a final flush once ctx is done; it
// must never block on out for long, counting what it could not send instead.
type source interface {
	Run(ctx context.Context, out chan<- aggregate.Event) error
	Status() map[string]string
}

// stateReporter describes a component for ServerStatus: where its data
// comes from and how it is doing.
type stateReporter interface {
	State() (source, state string)
}

// readier is a part that is not ready at once: the capture until it has
// attached, enrichment until the first cluster state is loaded.
type readier interface {
	Ready() error
}

// deps are the agent's parts. New builds the real ones; tests pass fakes.
type deps struct {
	source   source
	names    namer
	judge    judge
	flowlog  flowWriter
	ring     sink
	enrich   stateReporter
	policy   stateReporter
	gatherer prometheus.Gatherer
	// background runs until ctx ends: informers, policy reloads, the gRPC
	// server. An error stops the agent.
	background []func(ctx context.Context) error
	closers    []func() error
	// clusterState, when set, feeds the pod list to the metrics (to forget
	// gone pods) and to stateConsumers.
	clusterState   enrich.ClusterState
	stateConsumers []func([]corev1.Pod)
	// serve, when set, is the gRPC API over ring, given the agent's status.
	serve func(observer.Status) func(ctx context.Context) error
}

// Agent is one node's observer.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	deps    deps
	pipe    *pipeline
	started time.Time
	running chan struct{}
}

func newAgent(cfg Config, log *slog.Logger, reg prometheus.Registerer, d deps) (*Agent, error) {
	m, err := newFlowMetrics(reg, cfg.NodeName, cfg.MetricsPodLabels)
	if err != nil {
		return nil, fmt.Errorf("register flow metrics: %w", err)
	}
	a := &Agent{
		cfg:  cfg,
		log:  log,
		deps: d,
		pipe: &pipeline{
			log:       log.With("component", "pipeline"),
			node:      cfg.NodeName,
			ann:       &annotator{names: d.names, judge: d.judge},
			metrics:   m,
			flowlog:   d.flowlog,
			ring:      d.ring,
			linkLocal: cfg.ReportLinkLocal,
		},
		running: make(chan struct{}),
	}
	if d.clusterState != nil {
		fan := &stateFanout{state: d.clusterState, consumers: append([]func([]corev1.Pod){m.forgetGonePods}, d.stateConsumers...)}
		a.deps.background = append(a.deps.background, fan.run)
	}
	if d.serve != nil {
		a.deps.background = append(a.deps.background, d.serve(a))
	}
	return a, nil
}

// Run captures until ctx ends, then writes what is pending, detaches
// everything and returns.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	defer func() {
		for _, c := range a.deps.closers {
			if err := c(); err != nil {
				a.log.Error("closing", "err", err)
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan aggregate.Event, a.cfg.QueueSize)
	g.Go(func() error {
		defer close(ch)
		close(a.running)
		if err := a.deps.source.Run(gctx, ch); err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		a.pipe.run(ch)
		return nil
	})
	if a.cfg.MetricsAddress != "" && a.deps.gatherer != nil {
		g.Go(func() error {
			return serveHTTP(gctx, a.cfg.MetricsAddress, a.deps.gatherer, a.ready, a.log.With("component", "http"))
		})
	}
	if a.cfg.PprofAddress != "" {
		g.Go(func() error { return servePprof(gctx, a.cfg.PprofAddress, a.log.With("component", "pprof")) })
	}
	for _, bg := range a.deps.background {
		g.Go(func() error { return bg(gctx) })
	}
	err := g.Wait()
	a.log.Info("agent stopped", "flows", a.pipe.seen.Load())
	return err
}

// ready is /readyz: the capture runs and has attached to the pod veths
// that exist, and the first cluster state is loaded.
func (a *Agent) ready() error {
	select {
	case <-a.running:
	default:
		return fmt.Errorf("capture not started")
	}
	for _, part := range []any{a.deps.source, a.deps.enrich} {
		if r, ok := part.(readier); ok {
			if err := r.Ready(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Status implements the observer's status source.
func (a *Agent) Status() *flowlensv1.ServerStatusResponse {
	st := &flowlensv1.ServerStatusResponse{
		NodeName:    a.cfg.NodeName,
		Version:     version.Version,
		Kernel:      kernelRelease(),
		SeenFlows:   a.pipe.seen.Load(),
		AttachModes: map[string]string{},
	}
	if !a.started.IsZero() {
		st.UptimeNs = uint64(time.Since(a.started))
	}
	for k, v := range a.deps.source.Status() {
		if k == bpf.StatusInterfaces {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				a.log.Warn("capture status: interfaces is not a count", "value", v, "err", err)
			}
			st.AttachedInterfaces = uint32(n)
			continue
		}
		st.AttachModes[k] = v
	}
	for src := range a.pipe.lost {
		if n := a.pipe.lost[src].Load(); n > 0 {
			st.LostEvents = append(st.LostEvents, &flowlensv1.LostEvents{Source: flowlensv1.LostEventSource(src), NumEventsLost: n})
		}
	}
	if a.deps.policy != nil {
		st.PolicySource, st.PolicyState = a.deps.policy.State()
	} else {
		st.PolicySource, st.PolicyState = "none", "no intended policy set configured"
	}
	if a.deps.enrich != nil {
		st.EnrichmentSource, st.EnrichmentState = a.deps.enrich.State()
	} else {
		st.EnrichmentSource, st.EnrichmentState = "none", "endpoints are named by IP only"
	}
	return st
}
