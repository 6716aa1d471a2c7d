package observe

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func at(ms int, node string) *flowlensv1.GetFlowsResponse {
	t := timestamppb.New(t0.Add(time.Duration(ms) * time.Millisecond))
	return &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: &flowlensv1.Flow{Time: t, NodeName: node}}, Time: t}
}

// sliceStream replays responses, optionally pausing before index pauseAt.
func sliceStream(rs []*flowlensv1.GetFlowsResponse, pauseAt int, pause <-chan struct{}) recvFunc {
	i := 0
	return func() (*flowlensv1.GetFlowsResponse, error) {
		if i == pauseAt && pause != nil {
			<-pause
		}
		if i == len(rs) {
			return nil, io.EOF
		}
		i++
		return rs[i-1], nil
	}
}

func collectMerge(t *testing.T, streams []recvFunc, window time.Duration) []int64 {
	t.Helper()
	var got []int64
	err := merge(context.Background(), streams, window, func(r *flowlensv1.GetFlowsResponse) error {
		got = append(got, eventTime(r).Sub(t0).Milliseconds())
		return nil
	})
	require.NoError(t, err)
	return got
}

func TestMergeOrdersByTime(t *testing.T) {
	a := []*flowlensv1.GetFlowsResponse{at(1, "a"), at(4, "a"), at(9, "a")}
	b := []*flowlensv1.GetFlowsResponse{at(2, "b"), at(3, "b"), at(10, "b")}
	c := []*flowlensv1.GetFlowsResponse{}
	got := collectMerge(t, []recvFunc{sliceStream(a, -1, nil), sliceStream(b, -1, nil), sliceStream(c, -1, nil)}, time.Hour)
	assert.Equal(t, []int64{1, 2, 3, 4, 9, 10}, got)
}

// TestMergeQuietStreamDoesNotBlock: a node with nothing to say delays the
// others by at most the window.
func TestMergeQuietStreamDoesNotBlock(t *testing.T) {
	pause := make(chan struct{})
	a := []*flowlensv1.GetFlowsResponse{at(1, "a"), at(2, "a")}
	b := []*flowlensv1.GetFlowsResponse{at(5, "b")}
	var got []int64
	done := make(chan error, 1)
	first := make(chan struct{})
	go func() {
		done <- merge(context.Background(), []recvFunc{sliceStream(a, 2, pause), sliceStream(b, 0, pause)}, 50*time.Millisecond,
			func(r *flowlensv1.GetFlowsResponse) error {
				got = append(got, eventTime(r).Sub(t0).Milliseconds())
				if len(got) == 2 {
					close(first)
				}
				return nil
			})
	}()
	select {
	case <-first:
	case <-time.After(5 * time.Second):
		t.Fatal("a quiet stream held back the merge")
	}
	close(pause)
	require.NoError(t, <-done)
	assert.Equal(t, []int64{1, 2, 5}, got)
}

func TestMergeStreamError(t *testing.T) {
	boom := errors.New("boom")
	err := merge(context.Background(), []recvFunc{func() (*flowlensv1.GetFlowsResponse, error) { return nil, boom }}, time.Second,
		func(*flowlensv1.GetFlowsResponse) error { return nil })
	assert.ErrorIs(t, err, boom)
}
