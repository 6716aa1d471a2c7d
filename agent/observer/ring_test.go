package observer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// fakeSink records what a query produced; onRecord runs after each record.
type fakeSink struct {
	got      []int
	lostN    []uint64
	lastNano int64
	onRecord func()
}

func (s *fakeSink) record(e *entry, ev *flowlensv1.GetFlowsResponse) error {
	s.got = append(s.got, int(ev.GetFlow().GetCounters().GetPackets()))
	s.lastNano = e.nano()
	if s.onRecord != nil {
		s.onRecord()
	}
	return nil
}

func (s *fakeSink) lost(n uint64, _, _ int64) error { s.lostN = append(s.lostN, n); return nil }
func (s *fakeSink) lastTime() int64                 { return s.lastNano }

func TestRingOverwrite(t *testing.T) {
	r := NewRing(8)
	for i := range 20 {
		r.Write(flowN(i, "web", flowlensv1.Verdict_FORWARDED))
	}
	assert.Equal(t, 8, r.Len())
	assert.Equal(t, 8, r.Capacity())
	assert.EqualValues(t, 20, r.SeenFlows())
	out := &fakeSink{}
	require.NoError(t, r.run(context.Background(), &query{}, out))
	assert.Equal(t, seq(12, 20), out.got)
	assert.Empty(t, out.lostN)
}

// TestRingReaderLapped writes behind a reader's back while it sends, so the
// reader is overwritten and must say how much it lost rather than skip silently.
func TestRingReaderLapped(t *testing.T) {
	r := NewRing(8)
	next := 0
	write := func(n int) {
		for range n {
			r.Write(flowN(next, "web", flowlensv1.Verdict_FORWARDED))
			next++
		}
	}
	write(8)
	out := &fakeSink{}
	out.onRecord = func() {
		if len(out.got) == 2 {
			write(10) // laps the reader: records 2..9 are gone
		}
	}
	end, err := r.forward(context.Background(), &query{}, 0, r.Head(), out)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1}, out.got[:2])
	require.Len(t, out.lostN, 1)
	assert.EqualValues(t, 8, out.lostN[0], "records 2..9 overwritten")
	assert.Empty(t, out.got[2:], "the history part ends at the head seen at the start")
	assert.EqualValues(t, 10, end, "following resumes after the gap, not inside it")
}

func TestRingTailDropsBacklogBeyondLag(t *testing.T) {
	r := NewRing(64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 40 {
		r.Write(flowN(i, "web", flowlensv1.Verdict_FORWARDED))
	}
	out := &fakeSink{}
	out.onRecord = func() {
		if len(out.got) == 2 {
			cancel()
		}
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		r.Write(flowN(40, "web", flowlensv1.Verdict_FORWARDED))
		r.Write(flowN(41, "web", flowlensv1.Verdict_FORWARDED))
	}()
	err := r.tail(ctx, &query{maxLag: 16}, 0, out)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []uint64{40}, out.lostN, "40 records behind with a lag bound of 16")
	assert.Equal(t, []int{40, 41}, out.got)
}

func TestRingWaitHonoursContext(t *testing.T) {
	r := NewRing(4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, r.wait(ctx, 0), context.DeadlineExceeded)
}

// countStream counts flows and lost records for the benchmark.
type countStream struct {
	n       atomic.Uint64
	skipped atomic.Uint64
}

func (s *countStream) record(*entry, *flowlensv1.GetFlowsResponse) error { s.n.Add(1); return nil }
func (s *countStream) lost(n uint64, _, _ int64) error                   { s.skipped.Add(n); return nil }
func (s *countStream) lastTime() int64                                   { return 0 }

// BenchmarkRingWrite measures flows/second through Ring.Write while 1 or 10
// followers tail the ring, and how many flows the followers had to skip.
func BenchmarkRingWrite(b *testing.B) {
	for _, followers := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("followers=%d", followers), func(b *testing.B) {
			r := NewRing(0)
			ctx, cancel := context.WithCancel(context.Background())
			sinks := make([]*countStream, followers)
			var wg sync.WaitGroup
			for i := range sinks {
				sinks[i] = &countStream{}
				wg.Add(1)
				go func() { defer wg.Done(); _ = r.tail(ctx, &query{}, 0, sinks[i]) }()
			}
			ev := flowN(1, "web", flowlensv1.Verdict_FORWARDED)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				r.Write(ev)
			}
			// Wait for followers to have seen or skipped everything.
			for _, s := range sinks {
				for s.n.Load()+s.skipped.Load() < uint64(b.N) {
					time.Sleep(50 * time.Microsecond)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			wg.Wait()
			var lost uint64
			for _, s := range sinks {
				lost += s.skipped.Load()
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "flows/s")
			if followers > 0 {
				b.ReportMetric(float64(lost)/float64(followers)/float64(b.N)*100, "%lost/follower")
				b.ReportMetric((float64(b.N)-float64(lost)/float64(followers))/elapsed.Seconds(), "delivered/s/follower")
			}
		})
	}
}
