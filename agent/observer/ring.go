package observer

import (
	"context"
	"sync"
	"sync/atomic"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// DefaultRingCapacity is the number of recent records kept when no capacity is
// configured (Hubble keeps 4,095 and overwrites them within seconds on a busy
// node).
const DefaultRingCapacity = 65536

// entry is one published record. Entries are immutable once stored, so a
// reader holding one never races the writer.
type entry struct {
	seq uint64
	// ev is a record kept whole: lost events, and the rare flow compactOf
	// cannot carry exactly. Otherwise the record is fl.
	ev *flowlensv1.GetFlowsResponse
	fl compactFlow
}

// response is the record as a client receives it; a compact flow is
// rebuilt by x (see expander.response for what is shared).
func (e *entry) response(x *expander) *flowlensv1.GetFlowsResponse {
	if e.ev != nil {
		return e.ev
	}
	return x.response(&e.fl)
}

// nano is the record's time in Unix nanoseconds, 0 when unknown: derived,
// not stored, as it is one of the compact flow's times.
func (e *entry) nano() int64 {
	if e.ev != nil {
		return eventNano(e.ev)
	}
	m := e.fl.meta.Value()
	switch {
	case m.has&hasRespTime != 0:
		return e.fl.time + int64(e.fl.respTime)
	case m.has&hasTime != 0:
		return e.fl.time
	}
	return 0
}

// isFlow reports a flow record (not lost events).
func (e *entry) isFlow() bool { return e.ev == nil || e.ev.GetFlow() != nil }

// Ring is the recent-flow store. Every record gets a sequence number; a
// reader remembers the next sequence it wants and resumes from it, so moving
// from the historical part of a request to the live part neither skips nor
// repeats a record. The writer never waits for readers: a reader that falls
// more than the capacity behind finds its sequence overwritten and is told how
// many records it lost.
type Ring struct {
	slots []atomic.Pointer[entry]

	// head is the sequence the next Write will use; records
	// [max(0, head-len(slots)), head) are readable.
	head  atomic.Uint64
	flows atomic.Uint64 // flow records written (lost-events records excluded)

	// mu serializes writers and guards wake and waiting. waiting is set by
	// a reader about to block and cleared by the Write that wakes it, so a
	// Write with no blocked reader closes and allocates no channel.
	mu      sync.Mutex
	wake    chan struct{}
	waiting atomic.Bool
}

// NewRing returns a ring keeping the last capacity records (DefaultRingCapacity
// when capacity <= 0).
func NewRing(capacity int) *Ring {
	if capacity <= 0 {
		capacity = DefaultRingCapacity
	}
	return &Ring{slots: make([]atomic.Pointer[entry], capacity), wake: make(chan struct{})}
}

// Write publishes ev (a flow or a lost-events record). The ring keeps
// flows in compact form, copying what it needs, and lost events (and a
// flow the compact form cannot carry) as they are: kept reports the
// latter, and then ev must not be modified afterwards. Otherwise the
// caller may reuse ev's messages at once, except the endpoints and the
// policy verdict of a flow, which are kept by reference (they are the
// enrichment cache's and the judge's shared, read-only messages). Write never blocks on readers; it is safe to call
// from several goroutines, though the pipeline normally calls it from one.
func (r *Ring) Write(ev *flowlensv1.GetFlowsResponse) (kept bool) {
	if ev == nil {
		return false
	}
	e := &entry{}
	if fl, ok := compactOf(ev); ok {
		e.fl = fl
	} else {
		e.ev = ev
		kept = true
	}
	r.mu.Lock()
	seq := r.head.Load()
	e.seq = seq
	r.slots[seq%uint64(len(r.slots))].Store(e)
	r.head.Store(seq + 1)
	if ev.GetFlow() != nil {
		r.flows.Add(1)
	}
	// Both sides hold mu while touching waiting and wake: a reader that set
	// waiting before this Write is woken here; one that sets it after sees
	// the new head on its re-check.
	if r.waiting.Load() {
		close(r.wake)
		r.wake = make(chan struct{})
		r.waiting.Store(false)
	}
	r.mu.Unlock()
	return kept
}

func eventNano(ev *flowlensv1.GetFlowsResponse) int64 {
	t := ev.GetTime()
	if t == nil {
		t = ev.GetFlow().GetTime()
	}
	if t == nil {
		t = ev.GetLostEvents().GetLast()
	}
	if t == nil {
		return 0
	}
	return t.AsTime().UnixNano()
}

// Capacity is the number of records the ring keeps.
func (r *Ring) Capacity() int { return len(r.slots) }

// Len is the number of records currently readable.
func (r *Ring) Len() int { return int(min(r.head.Load(), uint64(len(r.slots)))) }

// Head is the sequence the next Write will get.
func (r *Ring) Head() uint64 { return r.head.Load() }

// SeenFlows is the number of flow records ever written.
func (r *Ring) SeenFlows() uint64 { return r.flows.Load() }

// oldest is the smallest sequence still readable given head.
func (r *Ring) oldest(head uint64) uint64 {
	if c := uint64(len(r.slots)); head > c {
		return head - c
	}
	return 0
}

// read returns the record with sequence seq. ok is false when seq has been
// overwritten (or was never written: callers only ask for seq < head).
func (r *Ring) read(seq uint64) (*entry, bool) {
	e := r.slots[seq%uint64(len(r.slots))].Load()
	if e == nil || e.seq != seq {
		return nil, false
	}
	return e, true
}

// wait blocks until a record with sequence >= seq exists or ctx ends.
func (r *Ring) wait(ctx context.Context, seq uint64) error {
	for {
		if r.head.Load() > seq {
			return nil
		}
		r.mu.Lock()
		r.waiting.Store(true)
		ch := r.wake
		r.mu.Unlock()
		if r.head.Load() > seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
