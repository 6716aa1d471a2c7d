package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// event is one record from an agent, kept raw for filtering and as the view
// the page reads.
type event struct {
	flow *flowlensv1.Flow // nil for lost events
	view flowView
	lost *lostView
}

// source is one agent the hub follows.
type source struct {
	name   string
	client flowlensv1.ObserverClient
}

// subscriber is one open stream. ch is bounded: a page that cannot keep up
// loses records, counted in lost and shown to it as lost events.
type subscriber struct {
	ch   chan *event
	mu   sync.Mutex
	lost uint64
}

func (s *subscriber) takeLost() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.lost
	s.lost = 0
	return n
}

// flowHub follows every agent's flows and status and fans them out to the open
// streams. It keeps the most recent records so a page that opens (or
// changes its filter) starts with a picture, not a blank map.
type flowHub struct {
	sources     []source
	req         *flowlensv1.GetFlowsRequest
	keep        int
	statusEvery time.Duration
	log         *slog.Logger

	// mu guards everything below.
	mu        sync.Mutex
	recent    []*event // ring of the last keep records; next is the write slot
	next      int
	full      bool
	seq       uint64
	subs      map[*subscriber]struct{}
	status    map[string]agentStatus
	statusGen uint64 // bumped on every status change
}

// hubConfig tunes a flowHub.
type hubConfig struct {
	// Allow and Deny narrow what is asked of the agents (the command's
	// filter flags).
	Allow, Deny []*flowlensv1.FlowFilter
	// Backlog is how many stored flows each agent sends first.
	Backlog uint64
	// Keep is how many records the hub replays to a new stream.
	Keep int
	// StatusEvery is how often each agent's ServerStatus is asked.
	StatusEvery time.Duration
}

func newHub(sources []source, cfg hubConfig, log *slog.Logger) *flowHub {
	if cfg.Keep <= 0 {
		cfg.Keep = 5000
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 2 * time.Second
	}
	h := &flowHub{
		sources: sources, keep: cfg.Keep, statusEvery: cfg.StatusEvery, log: log,
		req:    &flowlensv1.GetFlowsRequest{Follow: true, Number: cfg.Backlog, Allowlist: cfg.Allow, Denylist: cfg.Deny},
		recent: make([]*event, cfg.Keep), subs: map[*subscriber]struct{}{}, status: map[string]agentStatus{},
	}
	for _, s := range sources {
		h.status[s.name] = agentStatus{Agent: s.name, State: "connecting"}
	}
	return h
}

// Run follows every agent until ctx ends, reconnecting after errors.
func (h *flowHub) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range h.sources {
		wg.Go(func() { h.follow(ctx, s) })
		wg.Go(func() { h.pollStatus(ctx, s) })
	}
	wg.Wait()
}

func (h *flowHub) follow(ctx context.Context, s source) {
	req := proto.CloneOf(h.req)
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		last, err := h.followOnce(ctx, s, req)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stream ended")
		}
		h.setStreamError(s.name, fmt.Errorf("flows: %w", err))
		h.log.Warn("following flows", "agent", s.name, "err", err)
		if !last.IsZero() {
			// Resume where we were, without the backlog again.
			req.Number, req.Since = 0, timestamppb.New(last.Add(time.Nanosecond))
			backoff = 500 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// followOnce reads one GetFlows stream to its end; last is the time of the
// last flow received.
func (h *flowHub) followOnce(ctx context.Context, s source, req *flowlensv1.GetFlowsRequest) (last time.Time, err error) {
	st, err := s.client.GetFlows(ctx, req)
	if err != nil {
		return last, err
	}
	for first := true; ; first = false {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return last, err
		}
		if first {
			h.setStreamError(s.name, nil)
		}
		if fl := resp.GetFlow(); fl != nil {
			last = fl.GetTime().AsTime()
		}
		h.publish(resp, s.name)
	}
}

// publish records one response and hands it to every stream without
// waiting for any.
func (h *flowHub) publish(resp *flowlensv1.GetFlowsResponse, agent string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	ev := &event{}
	switch {
	case resp.GetFlow() != nil:
		ev.flow = resp.GetFlow()
		ev.view = newFlowView(ev.flow, h.seq)
	case resp.GetLostEvents() != nil:
		le := resp.GetLostEvents()
		ev.lost = &lostView{Node: cmpOr(resp.GetNodeName(), agent), Source: le.GetSource().String(),
			Lost: le.GetNumEventsLost(), Time: resp.GetTime().AsTime()}
	default:
		return
	}
	h.recent[h.next] = ev
	h.next = (h.next + 1) % len(h.recent)
	h.full = h.full || h.next == 0
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			s.mu.Lock()
			s.lost++
			s.mu.Unlock()
		}
	}
}

// subscribe returns the records kept so far, oldest first, and a
// subscriber that receives every later one: no record is missed or
// repeated between the two.
func (h *flowHub) subscribe(buffer int) ([]*event, *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var snap []*event
	if h.full {
		snap = append(snap, h.recent[h.next:]...)
	}
	snap = append(snap, h.recent[:h.next]...)
	s := &subscriber{ch: make(chan *event, buffer)}
	h.subs[s] = struct{}{}
	return snap, s
}

func (h *flowHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}
