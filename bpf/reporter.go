package bpf

import (
	"errors"
	"log/slog"
	"time"

	"github.com/cilium/ebpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// flowTable is the kernel side as the reporter needs it; kernelTable is the
// real one, tests use a fake.
type flowTable interface {
	// iterate calls fn for each entry with its raw key and value bytes.
	iterate(fn func(key, val []byte)) error
	lookup(key *FlowKey, st *FlowStats) error
	delete(key *FlowKey) error
	// counters returns the kernel's flows_created and ringbuf_lost.
	counters() (created, ringbufLost uint64, err error)
}

type kernelTable struct{ objs *flowlensObjects }

func (k kernelTable) iterate(fn func(key, val []byte)) error {
	rawKey, rawVal := make([]byte, flowKeySize), make([]byte, flowStatsSize)
	it := k.objs.Flows.Iterate()
	for it.Next(&rawKey, &rawVal) {
		fn(rawKey, rawVal)
	}
	return it.Err()
}

func (k kernelTable) lookup(key *FlowKey, st *FlowStats) error { return k.objs.Flows.Lookup(key, st) }

func (k kernelTable) delete(key *FlowKey) error {
	if err := k.objs.Flows.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

func (k kernelTable) counters() (created, lost uint64, err error) {
	if err := k.objs.FlowsCreated.Get(&created); err != nil {
		return 0, 0, err
	}
	if err := k.objs.RingbufLost.Get(&lost); err != nil {
		return 0, 0, err
	}
	return created, lost, nil
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

// reportKey reports one flow at once (its first drop).
func (r *reporter) reportKey(key *FlowKey) {
	var st FlowStats
	if err := r.table.lookup(key, &st); err != nil {
		r.metrics.errors.WithLabelValues(errLookup).Inc()
		return
	}
	recs, _ := r.agg.observe(key, &st, r.monoNow(), false)
	r.send(recs, time.Time{})
}

// flush reads the whole flow table and reports what changed. final also
// reports what is held and waits briefly for room in out.
func (r *reporter) flush(final bool) {
	// flows_created must be read before the pass (see aggregator.evicted).
	created, rbLost, err := r.table.counters()
	if err != nil {
		r.metrics.errors.WithLabelValues(errCounters).Inc()
		r.log.Warn("read kernel counters", "err", err)
	}
	var deadline time.Time
	if final {
		deadline = time.Now().Add(2 * time.Second)
	}

	now := r.monoNow()
	var (
		key  FlowKey
		st   FlowStats
		idle []FlowKey
	)
	err = r.table.iterate(func(rawKey, rawVal []byte) {
		if DecodeFlowKey(rawKey, &key) != nil || DecodeFlowStats(rawVal, &st) != nil {
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
	// Deleting during the pass would disturb the iteration.
	for i := range idle {
		if err := r.table.delete(&idle[i]); err != nil {
			r.metrics.errors.WithLabelValues(errDelete).Inc()
			r.log.Warn("delete idle flow", "err", err)
		}
		r.agg.forget(&idle[i])
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

// trySend sends without blocking, or until deadline when it is set.
func trySend(out chan<- Event, ev Event, deadline time.Time) bool {
	select {
	case out <- ev:
		return true
	default:
	}
	if deadline.IsZero() {
		return false
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case out <- ev:
		return true
	case <-t.C:
		return false
	}
}

func (r *reporter) send(recs []*flowlensv1.Flow, deadline time.Time) {
	for _, rec := range recs {
		if !trySend(r.out, Event{Flow: rec}, deadline) {
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
