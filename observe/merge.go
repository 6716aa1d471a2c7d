package observe

import (
	"context"
	"errors"
	"io"
	"time"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// recvFunc reads the next response of one stream; io.EOF ends it.
type recvFunc func() (*flowlensv1.GetFlowsResponse, error)

type arrival struct {
	src  int
	resp *flowlensv1.GetFlowsResponse
	err  error // io.EOF when the stream ended
	at   time.Time
}

// merge reads several streams and emits their responses ordered by event
// time. Each stream is in time order, so while every open stream has a
// response waiting, the oldest head is the next to print (a k-way merge). A
// stream that is quiet (a node with no traffic while following) must not hold
// the others back for ever: a response waiting longer than window is emitted
// anyway.
func merge(ctx context.Context, streams []recvFunc, window time.Duration, emit func(*flowlensv1.GetFlowsResponse) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan arrival, 64*len(streams))
	for i, recv := range streams {
		go func() {
			for {
				resp, err := recv()
				select {
				case in <- arrival{src: i, resp: resp, err: err, at: time.Now()}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	pending := make([][]arrival, len(streams))
	open := len(streams)
	isOpen := make([]bool, len(streams))
	for i := range isOpen {
		isOpen[i] = true
	}
	tick := time.NewTicker(window / 2)
	defer tick.Stop()

	// pop emits the oldest head among streams that have one.
	pop := func() error {
		best := -1
		for i, q := range pending {
			if len(q) > 0 && (best < 0 || eventTime(q[0].resp).Before(eventTime(pending[best][0].resp))) {
				best = i
			}
		}
		a := pending[best][0]
		pending[best] = pending[best][1:]
		return emit(a.resp)
	}
	ready := func() bool { // every open stream has a head, and at least one head exists
		any := false
		for i, q := range pending {
			if len(q) == 0 && isOpen[i] {
				return false
			}
			any = any || len(q) > 0
		}
		return any
	}
	for {
		for ready() {
			if err := pop(); err != nil {
				return err
			}
		}
		if open == 0 {
			return nil
		}
		select {
		case a := <-in:
			switch {
			case errors.Is(a.err, io.EOF):
				isOpen[a.src] = false
				open--
			case a.err != nil:
				return a.err
			default:
				pending[a.src] = append(pending[a.src], a)
			}
		case now := <-tick.C:
			for {
				oldest := -1
				for i, q := range pending {
					if len(q) > 0 && now.Sub(q[0].at) >= window && (oldest < 0 || eventTime(q[0].resp).Before(eventTime(pending[oldest][0].resp))) {
						oldest = i
					}
				}
				if oldest < 0 {
					break
				}
				a := pending[oldest][0]
				pending[oldest] = pending[oldest][1:]
				if err := emit(a.resp); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
