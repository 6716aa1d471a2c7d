package e2e

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// follower is a GetFlows client that keeps reading: the flows it got, in
// order, and the CLIENT_QUEUE loss it was told of before each.
type follower struct {
	mu         sync.Mutex
	got        []string // flow UUIDs
	lostBefore []uint64 // loss told since the previous flow, per flow
	pending    uint64
	lost       uint64
}

// follow starts a follower on its own connection, reading until ctx ends.
func (a *agentProc) follow(t *testing.T, ctx context.Context) *follower {
	t.Helper()
	conn, err := a.dial()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() {
		cancel() // first: the reader then knows the end is meant
		conn.Close()
	})
	stream, err := flowlensv1.NewObserverClient(conn).GetFlows(ctx, &flowlensv1.GetFlowsRequest{Follow: true})
	require.NoError(t, err)
	f := &follower{}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("steady client: %v", err)
				}
				return
			}
			f.add(resp)
		}
	}()
	return f
}

func (f *follower) add(resp *flowlensv1.GetFlowsResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := resp.GetFlow(); fl != nil {
		f.got = append(f.got, fl.GetUuid())
		f.lostBefore = append(f.lostBefore, f.pending)
		f.pending = 0
	}
	if le := resp.GetLostEvents(); le.GetSource() == flowlensv1.LostEventSource_CLIENT_QUEUE {
		f.pending += le.GetNumEventsLost()
		f.lost += le.GetNumEventsLost()
	}
}

func (f *follower) flows() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func (f *follower) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return ""
	}
	return f.got[len(f.got)-1]
}

func (f *follower) lostTotal() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lost
}

// checkInOrder asserts that the follower got the flow log's records from
// its first one on, in the same order, and that every gap was told as
// CLIENT_QUEUE loss before the flow after it. It returns the flows missed.
func (f *follower) checkInOrder(t *testing.T, log []string) (missed int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(t, f.got, "the steady client got flows")
	pos := make(map[string]int, len(log))
	for i, u := range log {
		pos[u] = i
	}
	prev := -1
	for i, u := range f.got {
		p, ok := pos[u]
		require.True(t, ok, "flow %s is not in the flow log", u)
		if i > 0 {
			gap := p - prev - 1
			require.GreaterOrEqual(t, gap, 0, "flow %d of the stream is out of the flow log's order", i)
			assert.GreaterOrEqual(t, f.lostBefore[i], uint64(gap), "%d flows missed silently before flow %d", gap, i)
			missed += gap
		}
		prev = p
	}
	return missed
}

// vanishRepeatedly opens following streams that read a few records and
// vanish, until stop: on even rounds the whole connection is closed, on
// odd ones the stream is cancelled on a connection that stays. It returns
// how many vanished.
func vanishRepeatedly(ctx context.Context, t *testing.T, a *agentProc, stop <-chan struct{}) int {
	shared, err := a.dial()
	if err != nil {
		t.Errorf("dial: %v", err)
		return 0
	}
	defer shared.Close()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return i
		default:
		}
		conn := shared
		if i%2 == 0 {
			if conn, err = a.dial(); err != nil {
				t.Errorf("dial: %v", err)
				return i
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		stream, err := flowlensv1.NewObserverClient(conn).GetFlows(sctx, &flowlensv1.GetFlowsRequest{Number: 20, Follow: true})
		for n := 0; err == nil && n < 1+i%5; n++ {
			_, err = stream.Recv()
		}
		if err != nil && ctx.Err() == nil {
			t.Errorf("vanishing client %d: %v", i, err)
		}
		if conn != shared {
			conn.Close() // mid-stream: the agent sees the connection go
		}
		cancel()
	}
}

// readUntilLost reads the slow client's stream until it is told of
// CLIENT_QUEUE loss, and returns the flows it got before and the loss;
// cancel ends the stream.
func readUntilLost(t *testing.T, stream flowlensv1.Observer_GetFlowsClient, cancel context.CancelFunc) (flows int, lost uint64) {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, cancel)
	defer timer.Stop()
	defer cancel()
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			t.Errorf("the slow client's stream ended after %d flows without a CLIENT_QUEUE loss record", flows)
			return flows, 0
		}
		require.NoError(t, err)
		if resp.GetFlow() != nil {
			flows++
		}
		if le := resp.GetLostEvents(); le.GetSource() == flowlensv1.LostEventSource_CLIENT_QUEUE {
			return flows, le.GetNumEventsLost()
		}
	}
}
