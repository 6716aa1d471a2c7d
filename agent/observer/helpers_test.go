package observer

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

var base = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// flowN is the n-th test flow: Counters.Packets carries n so tests can check
// ordering and continuity; it is stamped base+n ms.
func flowN(n int, ns string, verdict flowlensv1.Verdict) *flowlensv1.GetFlowsResponse {
	t := timestamppb.New(base.Add(time.Duration(n) * time.Millisecond))
	return &flowlensv1.GetFlowsResponse{
		ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: &flowlensv1.Flow{
			Time:        t,
			NodeName:    "node-a",
			Verdict:     verdict,
			Ip:          &flowlensv1.IP{Source: "10.42.0.10", Destination: "10.42.0.20"},
			Source:      &flowlensv1.Endpoint{Namespace: "client", PodName: "client-0"},
			Destination: &flowlensv1.Endpoint{Namespace: ns, PodName: ns + "-0"},
			Counters:    &flowlensv1.Counters{Packets: uint64(n)},
		}},
		Time: t,
	}
}

// startServer serves srv on 127.0.0.1:0 and returns a connected client. The
// server stops at test end; stop() stops it earlier and returns Serve's error.
func startServer(t *testing.T, srv *Server, cfg ServeConfig, dialOpts ...grpc.DialOption) (flowlensv1.ObserverClient, *grpc.ClientConn, func() error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeListener(ctx, lis, cfg, srv, nil) }()
	var stopErr error
	stopped := false
	stop := func() error {
		if !stopped {
			cancel()
			stopped = true
			select {
			case stopErr = <-errc:
			case <-time.After(15 * time.Second):
				stopErr = errors.New("serve did not return")
			}
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	if len(dialOpts) == 0 {
		dialOpts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(lis.Addr().String(), dialOpts...)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return flowlensv1.NewObserverClient(conn), conn, stop
}

// collect reads a non-follow stream to its end and returns the flow numbers.
func collect(t *testing.T, c flowlensv1.ObserverClient, req *flowlensv1.GetFlowsRequest) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.GetFlows(ctx, req)
	require.NoError(t, err)
	got := []int{}
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return got
		}
		require.NoError(t, err)
		require.NotNil(t, resp.GetFlow(), "unexpected %v", resp)
		got = append(got, int(resp.GetFlow().GetCounters().GetPackets()))
	}
}

func seq(from, to int) []int {
	out := []int{}
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
