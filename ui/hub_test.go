package ui

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func TestHubCountsWhatASlowStreamMisses(t *testing.T) {
	h := newHub(nil, hubConfig{Keep: 3}, slog.New(slog.DiscardHandler))
	fe, be := pod("demo", "fe-1", "frontend"), pod("demo", "be-1", "backend")
	h.publish(flowResp(tcpFlow(1, fe, be, 80, flowlensv1.Verdict_FORWARDED)), "a")
	snap, sub := h.subscribe(2)
	require.Len(t, snap, 1)
	for i := 2; i <= 6; i++ {
		h.publish(flowResp(tcpFlow(i, fe, be, 80, flowlensv1.Verdict_FORWARDED)), "a")
	}
	assert.Len(t, sub.ch, 2, "the buffer holds two")
	assert.Equal(t, uint64(3), sub.takeLost(), "the other three are counted")
	assert.Zero(t, sub.takeLost(), "and reported once")

	// The hub keeps the last three for the next stream, oldest first.
	h.unsubscribe(sub)
	snap, _ = h.subscribe(1)
	require.Len(t, snap, 3)
	assert.Equal(t, []uint32{40004, 40005, 40006}, []uint32{snap[0].view.SrcPort, snap[1].view.SrcPort, snap[2].view.SrcPort})
}

func TestHubShowsAnUnreachableAgent(t *testing.T) {
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	h := newHub([]source{{name: "gone", client: flowlensv1.NewObserverClient(conn)}},
		hubConfig{StatusEvery: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	st, _ := h.statuses()
	require.Len(t, st, 1)
	assert.Equal(t, "connecting", st[0].State)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool {
		st, _ := h.statuses()
		return st[0].State == "error" && st[0].StreamError != "" && st[0].Error != ""
	}, 5*time.Second, 20*time.Millisecond)
}
