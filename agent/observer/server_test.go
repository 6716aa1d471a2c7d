package observer

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/internal/lost"
	"github.com/flowlens/flowlens/internal/lost/losttest"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// tenFlows fills a ring with flows 0..9: even ones to "web" FORWARDED, odd
// ones to "db" DROPPED, 3 and 7 aggregates of dropped connection attempts.
func tenFlows() *Ring {
	r := NewRing(64)
	for i := range 10 {
		ns, v := "web", flowlensv1.Verdict_FORWARDED
		if i%2 == 1 {
			ns, v = "db", flowlensv1.Verdict_DROPPED
		}
		resp := flowN(i, ns, v)
		if i == 3 || i == 7 {
			resp.GetFlow().AggregatedAttempts = 12
		}
		r.Write(resp)
	}
	return r
}

func TestGetFlowsHistory(t *testing.T) {
	c, _, _ := startServer(t, NewServer(tenFlows(), nil, "node-a", nil), ServeConfig{})
	type ff = flowlensv1.FlowFilter
	dropped := []flowlensv1.Verdict{flowlensv1.Verdict_DROPPED}
	tests := []struct {
		name string
		req  *flowlensv1.GetFlowsRequest
		want []int
	}{
		{"all", &flowlensv1.GetFlowsRequest{}, seq(0, 10)},
		{"last 3", &flowlensv1.GetFlowsRequest{Number: 3}, []int{7, 8, 9}},
		{"first 3", &flowlensv1.GetFlowsRequest{Number: 3, First: true}, []int{0, 1, 2}},
		{"last more than stored", &flowlensv1.GetFlowsRequest{Number: 100}, seq(0, 10)},
		{"allow", &flowlensv1.GetFlowsRequest{Allowlist: []*ff{{DestinationNamespace: []string{"db"}}}}, []int{1, 3, 5, 7, 9}},
		{"allow last 2", &flowlensv1.GetFlowsRequest{Number: 2, Allowlist: []*ff{{Verdict: dropped}}}, []int{7, 9}},
		{"allow first 2", &flowlensv1.GetFlowsRequest{Number: 2, First: true, Allowlist: []*ff{{Verdict: dropped}}}, []int{1, 3}},
		{"deny (--not)", &flowlensv1.GetFlowsRequest{Denylist: []*ff{{Verdict: dropped}}}, []int{0, 2, 4, 6, 8}},
		{"allow and deny", &flowlensv1.GetFlowsRequest{
			Allowlist: []*ff{{SourceNamespace: []string{"client"}}},
			Denylist:  []*ff{{DestinationNamespace: []string{"web"}}, {DestinationPod: []string{"db/db"}}}}, []int{}},
		{"attempts", &flowlensv1.GetFlowsRequest{Allowlist: []*ff{{AggregatedAttempts: true}}}, []int{3, 7}},
		{"no attempts (--not --attempts)", &flowlensv1.GetFlowsRequest{Denylist: []*ff{{AggregatedAttempts: true}}}, []int{0, 1, 2, 4, 5, 6, 8, 9}},
		{"since", &flowlensv1.GetFlowsRequest{Since: timestamppb.New(base.Add(7 * time.Millisecond))}, []int{7, 8, 9}},
		{"until", &flowlensv1.GetFlowsRequest{Until: timestamppb.New(base.Add(2 * time.Millisecond))}, []int{0, 1, 2}},
		{"since until", &flowlensv1.GetFlowsRequest{Since: timestamppb.New(base.Add(3 * time.Millisecond)),
			Until: timestamppb.New(base.Add(5 * time.Millisecond))}, []int{3, 4, 5}},
		{"since last 1", &flowlensv1.GetFlowsRequest{Number: 1, Since: timestamppb.New(base.Add(3 * time.Millisecond)),
			Until: timestamppb.New(base.Add(5 * time.Millisecond))}, []int{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, collect(t, c, tt.req))
		})
	}
}

func TestGetFlowsInvalidArgument(t *testing.T) {
	c, _, _ := startServer(t, NewServer(tenFlows(), nil, "node-a", nil), ServeConfig{})
	now := timestamppb.Now()
	tests := []struct {
		name string
		req  *flowlensv1.GetFlowsRequest
		want string
	}{
		{"bad cidr", &flowlensv1.GetFlowsRequest{Allowlist: []*flowlensv1.FlowFilter{{SourceIp: []string{"10.0.0.0/33"}}}},
			`allowlist[0]: source_ip "10.0.0.0/33": invalid CIDR`},
		{"bad deny port", &flowlensv1.GetFlowsRequest{Denylist: []*flowlensv1.FlowFilter{{Port: []uint32{70000}}}},
			`denylist[0]: port "70000": port out of range`},
		{"first follow", &flowlensv1.GetFlowsRequest{First: true, Follow: true}, "first and follow"},
		{"until follow", &flowlensv1.GetFlowsRequest{Follow: true, Until: now}, "until and follow"},
		{"until before since", &flowlensv1.GetFlowsRequest{Since: now, Until: timestamppb.New(base)}, "until is before since"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := c.GetFlows(context.Background(), tt.req)
			require.NoError(t, err)
			_, err = st.Recv()
			assert.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			assert.Contains(t, status.Convert(err).Message(), tt.want)
		})
	}
}

// TestFollowNoGaps switches clients from history to live while the writer
// runs, and checks every flow arrives exactly once, in order.
func TestFollowNoGaps(t *testing.T) {
	const total = 20000
	ring := NewRing(0)
	c, _, _ := startServer(t, NewServer(ring, nil, "node-a", nil), ServeConfig{})

	half := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range total {
			if i == total/2 {
				close(half)
			}
			ring.Write(flowN(i, "web", flowlensv1.Verdict_FORWARDED))
			if i%64 == 0 {
				time.Sleep(100 * time.Microsecond) // let the clients start mid-stream
			}
		}
	}()
	<-half

	reqs := map[string]*flowlensv1.GetFlowsRequest{
		"all history then live": {Number: total * 2, Follow: true},
		"since then live":       {Since: timestamppb.New(base), Follow: true},
		"last 100 then live":    {Number: 100, Follow: true},
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			st, err := c.GetFlows(ctx, req)
			require.NoError(t, err)
			var got []int
			for len(got) == 0 || got[len(got)-1] != total-1 {
				resp, err := st.Recv()
				require.NoError(t, err)
				require.Nil(t, resp.GetLostEvents(), "no loss expected")
				got = append(got, int(resp.GetFlow().GetCounters().GetPackets()))
			}
			if req.Number != 100 {
				require.Equal(t, 0, got[0])
			}
			for i := 1; i < len(got); i++ {
				require.Equal(t, got[i-1]+1, got[i], "gap or duplicate at %d", i)
			}
		})
	}
	wg.Wait()
}

// TestSlowClientLosesFastClientDoesNot runs a client that stops reading and
// one that keeps up: the writer is never held back, the fast client gets
// every flow, and the slow one is told exactly how many it lost.
func TestSlowClientLosesFastClientDoesNot(t *testing.T) {
	const total = 20000
	ring := NewRing(1024)
	ring.Write(flowN(0, "web", flowlensv1.Verdict_FORWARDED))
	reg := prometheus.NewRegistry()
	counter, err := lost.NewCounter(reg)
	require.NoError(t, err)
	before := losttest.Scrape(t, reg)
	srv := NewServer(ring, nil, "node-a", nil)
	srv.SetLostCounter(counter)
	// Small fixed windows so the slow client's transport buffers little.
	c, _, _ := startServer(t, srv, ServeConfig{},
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func() flowlensv1.Observer_GetFlowsClient {
		st, err := c.GetFlows(ctx, &flowlensv1.GetFlowsRequest{Number: 1, Follow: true})
		require.NoError(t, err)
		resp, err := st.Recv()
		require.NoError(t, err)
		require.EqualValues(t, 0, resp.GetFlow().GetCounters().GetPackets())
		return st
	}
	fast, slow := open(), open()

	var fastSeen atomic.Int64
	fastDone := make(chan error, 1)
	go func() {
		next := 1
		for next <= total {
			resp, err := fast.Recv()
			if err != nil {
				fastDone <- err
				return
			}
			if resp.GetLostEvents() != nil {
				fastDone <- errors.New("fast client lost events")
				return
			}
			if n := int(resp.GetFlow().GetCounters().GetPackets()); n != next {
				fastDone <- errors.New("fast client gap")
				return
			}
			fastSeen.Store(int64(next))
			next++
		}
		fastDone <- nil
	}()

	// Write in batches, pacing on the fast client only.
	for i := 1; i <= total; i++ {
		ring.Write(flowN(i, "web", flowlensv1.Verdict_FORWARDED))
		if i%256 == 0 {
			require.Eventually(t, func() bool { return fastSeen.Load() >= int64(i) }, 10*time.Second, 100*time.Microsecond)
		}
	}
	require.NoError(t, <-fastDone)

	var flows, lost uint64
	for flows+lost < total {
		resp, err := slow.Recv()
		require.NoError(t, err)
		if le := resp.GetLostEvents(); le != nil {
			assert.Equal(t, flowlensv1.LostEventSource_CLIENT_QUEUE, le.GetSource())
			assert.NotNil(t, le.GetFirst())
			assert.NotNil(t, le.GetLast())
			lost += le.GetNumEventsLost()
			continue
		}
		flows++
	}
	assert.EqualValues(t, total, flows+lost, "every flow is either delivered or counted lost")
	assert.Positive(t, lost)
	t.Logf("slow client: %d flows delivered, %d lost", flows, lost)
	after := losttest.Scrape(t, reg)
	assert.EqualValues(t, lost, after["CLIENT_QUEUE"], "the metric counts what the client was told")
	losttest.AssertAlertFires(t, before, after, "CLIENT_QUEUE")
}

func TestShutdownWithClientsConnected(t *testing.T) {
	ring := tenFlows()
	c, _, stop := startServer(t, NewServer(ring, nil, "node-a", nil), ServeConfig{})
	var streams []flowlensv1.Observer_GetFlowsClient
	for range 3 {
		st, err := c.GetFlows(context.Background(), &flowlensv1.GetFlowsRequest{Number: 1, Follow: true})
		require.NoError(t, err)
		_, err = st.Recv()
		require.NoError(t, err)
		streams = append(streams, st)
	}
	start := time.Now()
	require.NoError(t, stop())
	assert.Less(t, time.Since(start), gracePeriod, "graceful stop should not need the timeout")
	for _, st := range streams {
		_, err := st.Recv()
		assert.ErrorIs(t, err, io.EOF, "clients see a clean end of stream")
	}
}

type fakeStatus struct{}

func (fakeStatus) Status() *flowlensv1.ServerStatusResponse {
	return &flowlensv1.ServerStatusResponse{Kernel: "6.18.0", AttachModes: map[string]string{"veth": "tcx"},
		LostEvents: []*flowlensv1.LostEvents{{Source: flowlensv1.LostEventSource_KERNEL_RING_BUFFER, NumEventsLost: 3}}}
}

func TestServerStatusHealthReflection(t *testing.T) {
	ring := tenFlows()
	ring.Write(&flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_LostEvents{
		LostEvents: &flowlensv1.LostEvents{Source: flowlensv1.LostEventSource_AGENT_QUEUE, NumEventsLost: 1}}})
	c, conn, _ := startServer(t, NewServer(ring, fakeStatus{}, "node-a", nil), ServeConfig{})
	ctx := context.Background()

	st, err := c.ServerStatus(ctx, &flowlensv1.ServerStatusRequest{})
	require.NoError(t, err)
	assert.Equal(t, "node-a", st.GetNodeName())
	assert.Equal(t, "6.18.0", st.GetKernel())
	assert.EqualValues(t, 11, st.GetNumFlows(), "ring records including the lost-events record")
	assert.EqualValues(t, 64, st.GetMaxFlows())
	assert.EqualValues(t, 10, st.GetSeenFlows())
	assert.Positive(t, st.GetUptimeNs())
	assert.Len(t, st.GetLostEvents(), 1)

	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "flowlens.v1.Observer"})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus())

	rc, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	require.NoError(t, rc.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	resp, err := rc.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	assert.Contains(t, names, "flowlens.v1.Observer")
	assert.Contains(t, names, "grpc.health.v1.Health")

	// The lost-events record in the ring passes any flow filter.
	got, err := c.GetFlows(ctx, &flowlensv1.GetFlowsRequest{Number: 1,
		Allowlist: []*flowlensv1.FlowFilter{{Verdict: []flowlensv1.Verdict{flowlensv1.Verdict_DROPPED}}}})
	require.NoError(t, err)
	first, err := got.Recv()
	require.NoError(t, err)
	assert.EqualValues(t, 9, first.GetFlow().GetCounters().GetPackets())
	second, err := got.Recv()
	require.NoError(t, err)
	assert.Equal(t, flowlensv1.LostEventSource_AGENT_QUEUE, second.GetLostEvents().GetSource())
	assert.Equal(t, "node-a", second.GetNodeName(), "server fills the node name")
}
