package aggregate

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Event is one item of the output: a Record (aggregation's flows), Lost, or
// a Flow built elsewhere (tests, other sources). Exactly one is set; a
// Record is set when its Verdict is.
type Event struct {
	Record Record
	Flow   *flowlensv1.Flow
	Lost   *flowlensv1.LostEvents
}

// IsRecord reports whether the event carries a Record.
func (e *Event) IsRecord() bool { return e.Record.Verdict != flowlensv1.Verdict_VERDICT_UNSPECIFIED }

// FlowProto returns the event's flow as a proto: Flow, or the Record
// built into a new one; nil for lost events.
func (e *Event) FlowProto() *flowlensv1.Flow {
	if e.Flow != nil {
		return e.Flow
	}
	if e.IsRecord() {
		return e.Record.Proto()
	}
	return nil
}

// Kernel is what aggregation needs from the kernel side (*bpf.Capture).
type Kernel interface {
	flowTable
	// DropReason names a kernel drop reason.
	DropReason(reason uint32) string
	// InterfaceName names an interface index; Watch keeps the names current.
	InterfaceName(index uint32) string
	// Inference reports whether accepted packets are inferred (no netfilter
	// link); Watch decides it as it attaches.
	Inference() bool
	// Watch attaches, follows links and sends first drops (with their
	// counters) until ctx ends,
	// then detaches and closes the kernel objects.
	Watch(ctx context.Context, drops chan<- bpf.DropEvent) error
	// Config is the effective capture configuration: node name, flush
	// interval and idle timeout come from there.
	Config() bpf.Config
	Status() map[string]string
}

// Source reports the flows of one Kernel.
type Source struct {
	k       Kernel
	log     *slog.Logger
	metrics *metrics
}

// New returns a Source reading k. It registers flowlens_lost_events_total
// on reg (or uses the one already there).
func New(k Kernel, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register aggregation metrics: %w", err)
	}
	return &Source{k: k, log: log, metrics: m}, nil
}

// Status is the kernel side's: which path each feature uses.
func (s *Source) Status() map[string]string { return s.k.Status() }

// Run watches the kernel, reports flows every flush interval and drops at
// once, and on ctx cancellation makes a final flush before it stops the
// watch: the kernel objects close only once the table is read. A Source
// runs once.
func (s *Source) Run(ctx context.Context, out chan<- Event) error {
	cfg := s.k.Config()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	monoToWall := time.Now().UnixNano() - ts.Nano()
	agg := newAggregator(cfg.NodeName, false, cfg.IdleTimeout, s.k.DropReason, s.k.InterfaceName, monoToWall)
	// Half an interval leaves the other half for drop events waiting
	// behind a flush that the pipeline holds up.
	rep := &reporter{agg: agg, table: s.k, out: out, metrics: s.metrics, log: s.log, patience: cfg.FlushInterval / 2}

	drops := make(chan bpf.DropEvent, 1024)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watched := make(chan error, 1)
	go func() { watched <- s.k.Watch(watchCtx, drops) }()

	tick := time.NewTicker(cfg.FlushInterval)
	defer tick.Stop()
	// The mode is known only once Watch attached: read it before each use.
	for {
		select {
		case err := <-watched:
			// The kernel objects are closed: nothing is left to read.
			if err == nil {
				err = fmt.Errorf("kernel watch ended before cancellation")
			}
			return err
		case <-ctx.Done():
			agg.inference = s.k.Inference()
			// Packets of the last moment may still wait in the kernel's
			// per-CPU slots: the final read counts them too.
			time.Sleep(2 * bpf.PendingDelay)
			rep.flush(true)
			stopWatch()
			return <-watched
		case ev := <-drops:
			agg.inference = s.k.Inference()
			rep.reportDrop(&ev)
		case <-tick.C:
			agg.inference = s.k.Inference()
			rep.flush(false)
		}
	}
}

// Ready reports whether the kernel side is attached to the pod veths that
// exist (/readyz); a Kernel that cannot tell is taken as ready.
func (s *Source) Ready() error {
	if r, ok := s.k.(interface{ Ready() error }); ok {
		return r.Ready()
	}
	return nil
}
