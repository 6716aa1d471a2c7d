package aggregate

import (
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// flowTable is the kernel's flow table and counters as the reporter reads
// them (part of Kernel); tests use a fake.
type flowTable interface {
	// IterateFlows calls fn for each entry with its raw key and value bytes.
	IterateFlows(fn func(key, val []byte)) error
	// DeleteFlows removes the keys; ones already gone are not an error.
	DeleteFlows(keys []bpf.FlowKey) error
	// Counters returns the kernel's flows_created and ringbuf_lost.
	Counters() (created, ringbufLost uint64, err error)
}

// reporter reads the flow table and sends records. Used by Run's goroutine
// only.
type reporter struct {
	agg     *aggregator
	table   flowTable
	out     chan<- Event
	metrics *metrics
	log     *slog.Logger
	now     func() uint64 // CLOCK_MONOTONIC ns; monoNow unless a test sets it

	// patience is how long a flush may wait for room in out before it
	// counts a record lost: a full table's flush is a burst far larger
	// than the queue, which the pipeline drains in a fraction of an
	// interval. Zero never waits.
	patience time.Duration

	// passStart is when the last flush's pass over the table began
	// (CLOCK_MONOTONIC ns): it read every drop counted before then.
	passStart uint64

	// pendLost are losses not yet reported in the stream (they did not fit
	// in out), by source. Records dropped because out was full are AGENT_QUEUE.
	pendLost map[flowlensv1.LostEventSource]uint64
}

func monoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func (r *reporter) monoNow() uint64 {
	if r.now != nil {
		return r.now()
	}
	return monoNow()
}

// reportDrop reports one flow at once (its first drop) from the counters
// the kernel put in the event. An event of a drop counted before the last
// flush's pass began says nothing new: that pass reported the drop, or
// found its entry evicted and counted it lost, and may since have deleted
// the entry as idle. One whose counters the pass saw newer is stale too.
func (r *reporter) reportDrop(ev *bpf.DropEvent) {
	if ev.Stats.LastNs < r.passStart || r.agg.stale(&ev.Key, &ev.Stats) {
		return
	}
	recs, _ := r.agg.observe(&ev.Key, &ev.Stats, r.monoNow(), false)
	r.send(recs, time.Time{})
}

// flush reads the whole flow table and reports what changed. final also
// reports what is held and waits briefly for room in out.
func (r *reporter) flush(final bool) {
	// flows_created must be read before the pass (see aggregator.evicted).
	created, rbLost, err := r.table.Counters()
	if err != nil {
		r.metrics.errors.WithLabelValues(errCounters).Inc()
		r.log.Warn("read kernel counters", "err", err)
	}
	var deadline time.Time
	switch {
	case final:
		deadline = time.Now().Add(2 * time.Second)
	case r.patience > 0:
		deadline = time.Now().Add(r.patience)
	}

	now := r.monoNow()
	r.passStart = now
	var (
		key  bpf.FlowKey
		st   bpf.FlowStats
		idle []bpf.FlowKey
	)
	err = r.table.IterateFlows(func(rawKey, rawVal []byte) {
		if bpf.DecodeFlowKey(rawKey, &key) != nil || bpf.DecodeFlowStats(rawVal, &st) != nil {
			r.metrics.errors.WithLabelValues(errDecode).Inc()
			return
		}
		recs, isIdle := r.agg.observe(&key, &st, now, final)
		r.send(recs, deadline)
		if isIdle {
			idle = append(idle, key)
		}
	})
	if err != nil {
		r.metrics.errors.WithLabelValues(errIterate).Inc()
		r.log.Warn("iterate flows", "err", err)
	}
	r.agg.sweep()
	// The kernel takes an entry it removes itself (a folded connection
	// attempt) out of flows_created: one created before the first read and
	// removed during the pass is in the first figure and not in the pass.
	// The lower of the two reads around the pass leaves out both that and
	// an entry created after the first read.
	if after, _, err := r.table.Counters(); err == nil {
		created = min(created, after)
	}
	// Deleting during the pass would disturb the iteration.
	if len(idle) > 0 {
		if err := r.table.DeleteFlows(idle); err != nil {
			r.metrics.errors.WithLabelValues(errDelete).Inc()
			r.log.Warn("delete idle flows", "err", err)
		}
		for i := range idle {
			r.agg.forget(&idle[i])
		}
	}

	if n := r.agg.evicted(created); n > 0 {
		r.lost(flowlensv1.LostEventSource_KERNEL_FLOW_TABLE, n)
	}
	if n := r.agg.ringbufLost(rbLost); n > 0 {
		r.lost(flowlensv1.LostEventSource_KERNEL_RING_BUFFER, n)
	}
	r.sendLost(deadline)
}

func (r *reporter) lost(src flowlensv1.LostEventSource, n uint64) {
	r.metrics.lost.Add(src, n)
	if r.pendLost == nil {
		r.pendLost = make(map[flowlensv1.LostEventSource]uint64)
	}
	r.pendLost[src] += n
}

// trySend sends without blocking, or until deadline when it is set and
// not yet past.
func trySend(out chan<- Event, ev Event, deadline time.Time) bool {
	select {
	case out <- ev:
		return true
	default:
	}
	wait := time.Until(deadline)
	if deadline.IsZero() || wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case out <- ev:
		return true
	case <-t.C:
		return false
	}
}

func (r *reporter) send(recs []Record, deadline time.Time) {
	for i := range recs {
		if !trySend(r.out, Event{Record: recs[i]}, deadline) {
			r.lost(flowlensv1.LostEventSource_AGENT_QUEUE, 1)
		}
	}
}

// sendLost reports pending losses as LostEvents; what does not fit in out
// stays pending for the next flush (the metrics already count it).
func (r *reporter) sendLost(deadline time.Time) {
	at := timestamppb.Now()
	for _, src := range []flowlensv1.LostEventSource{
		flowlensv1.LostEventSource_KERNEL_FLOW_TABLE,
		flowlensv1.LostEventSource_KERNEL_RING_BUFFER,
		flowlensv1.LostEventSource_AGENT_QUEUE,
	} {
		n := r.pendLost[src]
		if n == 0 {
			continue
		}
		ev := Event{Lost: &flowlensv1.LostEvents{Source: src, NumEventsLost: n, First: at, Last: at}}
		if trySend(r.out, ev, deadline) {
			delete(r.pendLost, src)
		}
	}
}
