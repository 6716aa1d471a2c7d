package aggregate

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
)

// fakeKernel is a fake table whose Watch "closes the objects" on return:
// reading the table afterwards is an error the test sees.
type fakeKernel struct {
	fakeTable
	closed    atomic.Bool
	readAfter atomic.Bool
	watchErr  error
}

func (k *fakeKernel) IterateFlows(fn func(key, val []byte)) error {
	if k.closed.Load() {
		k.readAfter.Store(true)
		return errors.New("closed")
	}
	return k.fakeTable.IterateFlows(fn)
}

func (k *fakeKernel) DropReason(uint32) string    { return "NETFILTER_DROP" }
func (k *fakeKernel) InterfaceName(uint32) string { return "" }
func (k *fakeKernel) Inference() bool             { return false }
func (k *fakeKernel) Status() map[string]string   { return nil }
func (k *fakeKernel) Config() bpf.Config {
	return bpf.Config{NodeName: "n", FlushInterval: time.Hour, IdleTimeout: time.Hour}
}
func (k *fakeKernel) Watch(ctx context.Context, _ chan<- bpf.DropEvent) error {
	if k.watchErr != nil {
		k.closed.Store(true)
		return k.watchErr
	}
	<-ctx.Done()
	k.closed.Store(true)
	return nil
}

// The final flush reads the table before Watch is told to close it.
func TestRunFinalFlushBeforeWatchEnds(t *testing.T) {
	k := &fakeKernel{fakeTable: fakeTable{flows: map[bpf.FlowKey]bpf.FlowStats{
		tcpKey(1): {Pkts: 2, FwdPkts: 2, Obs: bpf.ObsFromPod},
	}}}
	src, err := New(k, nil, nil)
	require.NoError(t, err)
	out := make(chan Event, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, src.Run(ctx, out))
	require.Len(t, out, 1)
	assert.Equal(t, []rec{{fwd, 2, 0}}, recs([]Event{<-out}))
	assert.False(t, k.readAfter.Load(), "the table was read after Watch returned")
}

// A Watch that fails (nothing attached) ends Run with its error.
func TestRunWatchError(t *testing.T) {
	k := &fakeKernel{watchErr: errors.New("attach refused")}
	src, err := New(k, nil, nil)
	require.NoError(t, err)
	err = src.Run(context.Background(), make(chan Event, 1))
	require.ErrorContains(t, err, "attach refused")
}
