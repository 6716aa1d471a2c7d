package observer

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/filter"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// query is a validated GetFlowsRequest.
type query struct {
	filter       *filter.Filter
	number       uint64 // 0: no limit
	first        bool
	follow       bool
	since, until int64 // Unix nanoseconds, 0 when unset
	// maxLag bounds how far a following client may fall behind the writer
	// before its backlog is dropped and it is sent a lost-events record.
	maxLag uint64
	// x rebuilds compact flows for this query's reader.
	x expander
}

// clientStream is one GetFlows client as a query writes to it, in order:
// the gRPC stream, or a counter in benchmarks. (The one sink is the
// agent pipeline's: where annotated records go, this ring.)
type clientStream interface {
	// record sends one record; e.nano() is its time.
	record(e *entry, ev *flowlensv1.GetFlowsResponse) error
	lost(count uint64, first, last int64) error
	// lastTime is the time of the last record sent, 0 if none.
	lastTime() int64
}

// admit returns the record of e when it belongs in the query's answer, nil
// otherwise. Lost-events records are never filtered by flow fields: a
// client must learn of loss whatever it asked for. The filter sees a
// compact flow through the expander's scratch view; only a flow that
// passes is rebuilt for sending.
func (q *query) admit(e *entry) *flowlensv1.GetFlowsResponse {
	if at := e.nano(); at != 0 {
		if q.since != 0 && at < q.since {
			return nil
		}
		if q.until != 0 && at > q.until {
			return nil
		}
	}
	if e.ev != nil {
		if fl := e.ev.GetFlow(); fl != nil && !q.filter.Match(fl) {
			return nil
		}
		return e.ev
	}
	if q.filter != nil && !q.filter.Match(q.x.view(&e.fl)) {
		return nil
	}
	return q.x.response(&e.fl)
}

// run answers q from r into out: the historical part first, then, with
// follow, every later record. The historical part covers sequences below the
// head seen at the start and the live part starts exactly there, so nothing
// written meanwhile is skipped or sent twice.
func (r *Ring) run(ctx context.Context, q *query, out clientStream) error {
	start := r.Head()
	next := start
	var err error
	switch {
	case q.number > 0 && !q.first:
		err = r.last(q, start, out)
	case q.follow && q.number == 0 && q.since == 0:
		// only new records
	default:
		next, err = r.forward(ctx, q, r.oldest(start), start, out)
	}
	if err != nil || !q.follow {
		return err
	}
	return r.tail(ctx, q, next, out)
}

// last sends the newest q.number passing flows below start, oldest first.
func (r *Ring) last(q *query, start uint64, out clientStream) error {
	type pick struct {
		e  *entry
		ev *flowlensv1.GetFlowsResponse
	}
	var picked []pick
	var flows uint64
	for seq := start; seq > r.oldest(start) && flows < q.number; {
		seq--
		e, ok := r.read(seq)
		if !ok {
			break // overwritten while we scanned; everything older is gone too
		}
		ev := q.admit(e)
		if ev == nil {
			continue
		}
		picked = append(picked, pick{e, ev})
		if e.isFlow() {
			flows++
		}
	}
	for i := len(picked) - 1; i >= 0; i-- {
		if err := out.record(picked[i].e, picked[i].ev); err != nil {
			return err
		}
	}
	return nil
}

// forward sends passing records from seq up to end (exclusive), stopping after
// q.number flows when set. It returns the next sequence to read.
func (r *Ring) forward(ctx context.Context, q *query, seq, end uint64, out clientStream) (uint64, error) {
	var flows uint64
	for seq < end {
		if err := ctx.Err(); err != nil {
			return seq, err
		}
		e, ok := r.read(seq)
		if !ok {
			// The writer lapped us while we were sending.
			skipTo := r.oldest(r.Head())
			if err := r.reportLost(seq, skipTo, out); err != nil {
				return seq, err
			}
			seq = skipTo
			continue
		}
		seq++
		ev := q.admit(e)
		if ev == nil {
			continue
		}
		if err := out.record(e, ev); err != nil {
			return seq, err
		}
		if e.isFlow() {
			flows++
			if q.number > 0 && flows >= q.number {
				return seq, nil
			}
		}
	}
	return seq, nil
}

// tail follows the ring from seq until ctx ends.
func (r *Ring) tail(ctx context.Context, q *query, seq uint64, out clientStream) error {
	maxLag := q.maxLag
	if maxLag == 0 || maxLag > uint64(len(r.slots)) {
		maxLag = uint64(len(r.slots))
	}
	// The live part has no count limit; its expander lives as long as it.
	live := &query{filter: q.filter, since: q.since, until: q.until}
	for {
		if err := r.wait(ctx, seq); err != nil {
			return err
		}
		head := r.Head()
		if head-seq > maxLag {
			// Too far behind: drop the backlog and resume live.
			if err := r.reportLost(seq, head, out); err != nil {
				return err
			}
			seq = head
			continue
		}
		var err error
		if seq, err = r.forward(ctx, live, seq, head, out); err != nil {
			return err
		}
	}
}

// reportLost tells out that records [from, to) were skipped. The time range
// is that of the skipped records still readable; when they were overwritten it
// is bounded by the last record sent and the first one after the gap.
func (r *Ring) reportLost(from, to uint64, out clientStream) error {
	if to <= from {
		return nil
	}
	first, last := out.lastTime(), int64(0)
	for s := from; s < to; s++ {
		if e, ok := r.read(s); ok {
			first = e.nano()
			break
		}
	}
	if e, ok := r.read(to - 1); ok {
		last = e.nano()
	} else if e, ok := r.read(to); ok {
		last = e.nano()
	}
	return out.lost(to-from, first, last)
}

func timestampOrNil(nano int64) *timestamppb.Timestamp {
	if nano == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, nano))
}
