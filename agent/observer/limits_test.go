package observer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// One connection holds at most MaxConcurrentStreams streams: the next RPC
// waits until one ends rather than adding a reader over the ring.
func TestServeLimitsConcurrentStreams(t *testing.T) {
	c, _, _ := startServer(t, NewServer(NewRing(16), nil, "node-a", nil), ServeConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := make([]context.CancelFunc, 0, MaxConcurrentStreams)
	for range MaxConcurrentStreams {
		sctx, scancel := context.WithCancel(ctx)
		_, err := c.GetFlows(sctx, &flowlensv1.GetFlowsRequest{Follow: true})
		require.NoError(t, err)
		streams = append(streams, scancel)
	}
	status := func() error {
		uctx, ucancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer ucancel()
		_, err := c.ServerStatus(uctx, &flowlensv1.ServerStatusRequest{})
		return err
	}
	require.Eventually(t, func() bool { return status() != nil }, 5*time.Second, 50*time.Millisecond,
		"with every stream slot taken another RPC does not start")
	streams[0]()
	assert.Eventually(t, func() bool { return status() == nil }, 5*time.Second, 50*time.Millisecond,
		"a freed slot lets it through")
	for _, s := range streams[1:] {
		s()
	}
}

// A request larger than MaxRecvMsgSize is refused with ResourceExhausted.
func TestServeLimitsRequestSize(t *testing.T) {
	c, _, _ := startServer(t, NewServer(NewRing(16), nil, "node-a", nil), ServeConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := &flowlensv1.GetFlowsRequest{Allowlist: []*flowlensv1.FlowFilter{{Pod: []string{strings.Repeat("p", MaxRecvMsgSize)}}}}
	st, err := c.GetFlows(ctx, big)
	if err == nil {
		_, err = st.Recv()
	}
	require.Error(t, err)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)

	small := &flowlensv1.GetFlowsRequest{Allowlist: []*flowlensv1.FlowFilter{{Pod: []string{"p"}}}}
	assert.Empty(t, collect(t, c, small), "a normal request still works")
}
