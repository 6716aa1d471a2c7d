package observer

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Clients that disconnect mid-stream leave nothing behind (goroutines, and
// so readers over the ring, return to the baseline), and a client that
// stays gets every flow written meanwhile.
func TestVanishingClientsLeaveNothingBehind(t *testing.T) {
	const rounds, perRound = 100, 50
	ring := NewRing(4096)
	c, _, _ := startServer(t, NewServer(ring, nil, "node-a", nil), ServeConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ring.Write(flowN(0, "web", flowlensv1.Verdict_FORWARDED))
	steady, err := c.GetFlows(ctx, &flowlensv1.GetFlowsRequest{Number: 1, Follow: true})
	require.NoError(t, err)
	first, err := steady.Recv()
	require.NoError(t, err)
	require.EqualValues(t, 0, first.GetFlow().GetCounters().GetPackets())
	baseline := runtime.NumGoroutine()

	n := 1
	for range rounds {
		sctx, scancel := context.WithCancel(ctx)
		st, err := c.GetFlows(sctx, &flowlensv1.GetFlowsRequest{Number: 1, Follow: true})
		require.NoError(t, err)
		for range perRound {
			ring.Write(flowN(n, "web", flowlensv1.Verdict_FORWARDED))
			n++
		}
		_, err = st.Recv() // connected and reading, then gone mid-stream
		require.NoError(t, err)
		scancel()
		for want := n - perRound; want < n; want++ {
			resp, err := steady.Recv()
			require.NoError(t, err)
			require.EqualValues(t, want, resp.GetFlow().GetCounters().GetPackets(), "the steady client misses nothing")
		}
	}
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline+2 }, 10*time.Second, 20*time.Millisecond,
		"goroutines back to the baseline of %d after %d vanished clients (now %d)", baseline, rounds, runtime.NumGoroutine())
	t.Logf("%d clients vanished mid-stream; steady client got all %d flows; goroutines %d (baseline %d)", rounds, n, runtime.NumGoroutine(), baseline)
}
