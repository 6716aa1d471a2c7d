package observer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/filter"
	"github.com/flowlens/flowlens/internal/lost"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Status is the agent's view of itself; the server adds the ring's figures.
type Status interface {
	Status() *flowlensv1.ServerStatusResponse
}

// Server implements flowlensv1.ObserverServer over a Ring.
type Server struct {
	flowlensv1.UnimplementedObserverServer

	ring     *Ring
	status   Status
	nodeName string
	log      *slog.Logger
	started  time.Time
	maxLag   uint64

	// clientLost counts records dropped for slow clients, over all clients.
	clientLost atomic.Uint64
	lostMetric *lost.Counter

	// stopping is closed by Stop so that following streams end and a
	// graceful stop of the gRPC server can complete.
	stopping chan struct{}
	stopOnce sync.Once
}

var _ flowlensv1.ObserverServer = (*Server)(nil)

// NewServer returns an Observer server reading ring. status may be nil.
func NewServer(ring *Ring, status Status, nodeName string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ring: ring, status: status, nodeName: nodeName, log: log,
		started: time.Now(), stopping: make(chan struct{})}
}

// SetClientBuffer bounds how many records a following client may be behind
// the writer before its backlog is dropped (and reported as lost). The
// default, and the upper bound, is the ring's capacity.
func (s *Server) SetClientBuffer(n int) {
	if n > 0 {
		s.maxLag = uint64(n)
	}
}

// SetLostCounter counts records dropped for slow clients in c as well
// (flowlens_lost_events_total{source="CLIENT_QUEUE"}). Call before serving.
func (s *Server) SetLostCounter(c *lost.Counter) { s.lostMetric = c }

// Stop ends every running GetFlows stream cleanly (clients see end of
// stream). Serve calls it on shutdown.
func (s *Server) Stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

// ServerStatus implements flowlensv1.ObserverServer.
func (s *Server) ServerStatus(context.Context, *flowlensv1.ServerStatusRequest) (*flowlensv1.ServerStatusResponse, error) {
	resp := &flowlensv1.ServerStatusResponse{}
	if s.status != nil {
		if st := s.status.Status(); st != nil {
			// The agent may hand out a shared message; fill a copy.
			resp = proto.CloneOf(st)
		}
	}
	if resp.NodeName == "" {
		resp.NodeName = s.nodeName
	}
	resp.NumFlows = uint64(s.ring.Len())
	resp.MaxFlows = uint64(s.ring.Capacity())
	resp.SeenFlows = s.ring.SeenFlows()
	resp.UptimeNs = uint64(time.Since(s.started))
	if n := s.clientLost.Load(); n > 0 {
		resp.LostEvents = append(resp.LostEvents, &flowlensv1.LostEvents{
			Source: flowlensv1.LostEventSource_CLIENT_QUEUE, NumEventsLost: n})
	}
	return resp, nil
}

// GetFlows implements flowlensv1.ObserverServer.
func (s *Server) GetFlows(req *flowlensv1.GetFlowsRequest, stream flowlensv1.Observer_GetFlowsServer) error {
	q, err := s.parse(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	out := &grpcStream{srv: s, stream: stream}
	err = s.ring.run(ctx, q, out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled) && stream.Context().Err() == nil:
		return nil // server shutdown: end the stream cleanly
	case stream.Context().Err() != nil:
		return status.FromContextError(stream.Context().Err()).Err()
	}
	return err
}

func (s *Server) parse(req *flowlensv1.GetFlowsRequest) (*query, error) {
	f, err := filter.Compile(req.GetAllowlist(), req.GetDenylist())
	if err != nil {
		return nil, err
	}
	if len(req.GetAllowlist())+len(req.GetDenylist()) == 0 {
		f = nil // nothing to match: flows need no view for it
	}
	q := &query{filter: f, number: req.GetNumber(), first: req.GetFirst(), follow: req.GetFollow(), maxLag: s.maxLag}
	if q.first && q.follow {
		return nil, errors.New("first and follow cannot be combined")
	}
	if req.GetUntil() != nil && q.follow {
		return nil, errors.New("until and follow cannot be combined")
	}
	if t := req.GetSince(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, errors.New("since: " + err.Error())
		}
		q.since = t.AsTime().UnixNano()
	}
	if t := req.GetUntil(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, errors.New("until: " + err.Error())
		}
		q.until = t.AsTime().UnixNano()
	}
	if q.since != 0 && q.until != 0 && q.until < q.since {
		return nil, errors.New("until is before since")
	}
	return q, nil
}

// grpcStream sends records to one client.
type grpcStream struct {
	srv      *Server
	stream   flowlensv1.Observer_GetFlowsServer
	lastNano int64
}

func (o *grpcStream) lastTime() int64 { return o.lastNano }

func (o *grpcStream) record(e *entry, ev *flowlensv1.GetFlowsResponse) error {
	o.lastNano = e.nano()
	if ev.GetNodeName() == "" || ev.GetTime() == nil {
		// A record kept whole is shared with other readers: send a copy
		// that shares the (read-only) payload.
		cp := &flowlensv1.GetFlowsResponse{ResponseTypes: ev.GetResponseTypes(), NodeName: ev.GetNodeName(), Time: ev.GetTime()}
		if cp.NodeName == "" {
			cp.NodeName = o.srv.nodeName
		}
		if cp.Time == nil {
			cp.Time = timestampOrNil(e.nano())
		}
		ev = cp
	}
	return o.stream.Send(ev)
}

func (o *grpcStream) lost(count uint64, first, last int64) error {
	o.srv.clientLost.Add(count)
	o.srv.lostMetric.Add(flowlensv1.LostEventSource_CLIENT_QUEUE, count)
	o.srv.log.Debug("client too slow, records dropped", "count", count)
	return o.stream.Send(&flowlensv1.GetFlowsResponse{
		ResponseTypes: &flowlensv1.GetFlowsResponse_LostEvents{LostEvents: &flowlensv1.LostEvents{
			Source:        flowlensv1.LostEventSource_CLIENT_QUEUE,
			NumEventsLost: count,
			First:         timestampOrNil(first),
			Last:          timestampOrNil(last),
		}},
		NodeName: o.srv.nodeName,
		Time:     timestamppb.Now(),
	})
}
