package agent

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/flowlens/flowlens/aggregate"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// flowWriter is the JSON flow log.
type flowWriter interface {
	Write(*flowlensv1.Flow) error
	Flush() error
}

// flowWriters writes every flow to each destination; one failing does not
// stop the others.
type flowWriters []flowWriter

func (ws flowWriters) Write(fl *flowlensv1.Flow) error {
	var errs []error
	for _, w := range ws {
		if err := w.Write(fl); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (ws flowWriters) Flush() error {
	var errs []error
	for _, w := range ws {
		if err := w.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sink receives every record after annotation: the recent-flow ring that the
// gRPC API serves from. Write reports whether it kept ev itself rather
// than a copy of what it needs: the pipeline then builds the next flow
// into new messages.
type sink interface {
	Write(ev *flowlensv1.GetFlowsResponse) (kept bool)
}

// pipeline is the single goroutine between capture and the consumers: it
// annotates each flow once, then fans it out. Consumers must not block it;
// the ring gives every client its own bounded queue.
type pipeline struct {
	log     *slog.Logger
	node    string
	ann     *annotator
	metrics *flowMetrics
	flowlog flowWriter // nil when off
	ring    sink       // nil when the API is off
	// lost sums the lost-event records that came through, by source, for
	// ServerStatus (the metric counts them where they were lost).
	lost [flowlensv1.LostEventSource_CLIENT_QUEUE + 1]atomic.Uint64
	// linkLocal keeps link-local and multicast records; see Config.ReportLinkLocal.
	linkLocal bool

	// scratch is where records from aggregation are built, one at a time:
	// the consumers copy what they keep (the ring compacts, the flow log
	// encodes, the metrics keep label strings), so a full flush needs no
	// proto per record (issue 9). nil after a sink kept a flow.
	scratch *scratch

	seen       atomic.Uint64
	skipped    atomic.Uint64
	logErrors  atomic.Uint64
	lastLogErr time.Time
}

// run handles records until in is closed; capture closes it after its final
// flush, so every pending record is written before run returns.
func (p *pipeline) run(in <-chan aggregate.Event) {
	defer p.flush()
	last := time.Now()
	for ev := range in {
		p.handle(&ev)
		// Flush when caught up, so a quiet stream is still written
		// promptly, and at least every second under one that never pauses,
		// without a syscall per record. No ticker: an idle agent sleeps
		// (see dropReadInterval in package bpf).
		if len(in) == 0 || time.Since(last) >= time.Second {
			p.flush()
			last = time.Now()
		}
	}
}

// scratch is one flow's messages and its response, reused.
type scratch struct {
	build aggregate.FlowBuilder
	resp  flowlensv1.GetFlowsResponse
	wrap  flowlensv1.GetFlowsResponse_Flow
}

func (p *pipeline) handle(in *aggregate.Event) {
	switch {
	case in.IsRecord():
		if !p.linkLocal && linkScope(in.Record.Addrs()) {
			p.skipped.Add(1)
			return
		}
		if p.scratch == nil {
			p.scratch = new(scratch)
		}
		s := p.scratch
		fl := s.build.Build(&in.Record)
		s.wrap.Flow = fl
		s.resp = flowlensv1.GetFlowsResponse{ResponseTypes: &s.wrap}
		if p.flow(fl, &s.resp) {
			p.scratch = nil
		}
	case in.Flow != nil:
		if !p.linkLocal && isLinkScope(in.Flow) {
			p.skipped.Add(1)
			return
		}
		p.flow(in.Flow, &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: in.Flow}})
	case in.Lost != nil:
		resp := &flowlensv1.GetFlowsResponse{NodeName: p.node}
		resp.ResponseTypes = &flowlensv1.GetFlowsResponse_LostEvents{LostEvents: in.Lost}
		resp.Time = in.Lost.GetLast()
		// Counted in flowlens_lost_events_total where they were lost.
		if src := int(in.Lost.GetSource()); src >= 0 && src < len(p.lost) {
			p.lost[src].Add(in.Lost.GetNumEventsLost())
		}
		p.log.Warn("records lost", "source", in.Lost.GetSource().String(), "count", in.Lost.GetNumEventsLost())
		if p.ring != nil {
			p.ring.Write(resp)
		}
	}
}

// flow annotates fl and fans it out in resp (which carries fl); kept
// reports that the ring kept resp as it is.
func (p *pipeline) flow(fl *flowlensv1.Flow, resp *flowlensv1.GetFlowsResponse) (kept bool) {
	if fl.NodeName == "" {
		fl.NodeName = p.node
	}
	resp.NodeName = p.node
	resp.Time = fl.Time
	p.ann.annotate(fl)
	if fl.TrafficDirection == flowlensv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED {
		fl.TrafficDirection = p.directionByName(fl)
	}
	if p.metrics != nil {
		p.metrics.observe(fl)
	}
	if p.flowlog != nil {
		if err := p.flowlog.Write(fl); err != nil {
			p.logError(err)
		}
	}
	// Counted once its metrics and log line exist, so a reader of seen
	// (status, tests) never sees a flow the metrics do not yet show.
	p.seen.Add(1)
	return p.ring != nil && p.ring.Write(resp)
}

func (p *pipeline) flush() {
	if p.flowlog == nil {
		return
	}
	if err := p.flowlog.Flush(); err != nil {
		p.logError(err)
	}
}

// logError reports flow-log failures at most once a minute: a full disk must
// not turn into a log storm, and capture goes on regardless.
func (p *pipeline) logError(err error) {
	p.logErrors.Add(1)
	if time.Since(p.lastLogErr) > time.Minute {
		p.lastLogErr = time.Now()
		p.log.Error("writing flow log", "err", err, "errors_so_far", p.logErrors.Load())
	}
}

// isLinkScope reports records that never leave the pod's link: neighbour
// discovery, MLD and IGMP to multicast groups, or traffic between
// link-local addresses. No NetworkPolicy applies to them, and on every
// IPv6-enabled pod they would otherwise bury the flows users look for.
func isLinkScope(fl *flowlensv1.Flow) bool {
	src, err1 := netip.ParseAddr(fl.GetIp().GetSource())
	dst, err2 := netip.ParseAddr(fl.GetIp().GetDestination())
	return (err1 == nil && linkScopeAddr(src)) || (err2 == nil && linkScopeAddr(dst))
}

func linkScope(src, dst netip.Addr) bool { return linkScopeAddr(src) || linkScopeAddr(dst) }

func linkScopeAddr(a netip.Addr) bool {
	return a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// directionByName fills the direction of a drop the kernel could not place
// (neither address had been seen on a local veth yet, such as the first
// SYN to a pod that never sent anything): relative to whichever end is a
// pod of this node.
func (p *pipeline) directionByName(fl *flowlensv1.Flow) flowlensv1.TrafficDirection {
	local := func(ep *flowlensv1.Endpoint) bool {
		return ep.GetKind() == flowlensv1.EndpointKind_POD && ep.GetNodeName() == p.node
	}
	switch {
	case local(fl.GetSource()):
		return flowlensv1.TrafficDirection_EGRESS
	case local(fl.GetDestination()):
		return flowlensv1.TrafficDirection_INGRESS
	}
	return flowlensv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED
}
