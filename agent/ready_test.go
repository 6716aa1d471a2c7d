package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/enrich"
)

// readySource is a capture that says when it has attached.
type readySource struct {
	*chanSource
	attached atomic.Bool
}

func (s *readySource) Ready() error {
	if !s.attached.Load() {
		return errors.New("not attached")
	}
	return nil
}

// syncingResolver is enrichment whose first cluster state loads on demand.
type syncingResolver struct {
	enrich.Resolver
	synced atomic.Bool
}

func (r *syncingResolver) Status() enrich.Status {
	return enrich.Status{Source: "kubernetes", Synced: r.synced.Load()}
}

// /readyz answers 503 until the capture has attached and the first cluster
// state is loaded, and 200 after; it used to answer 200 once Run started.
func TestReadyzWaitsForAttachAndClusterState(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	src := &readySource{chanSource: &chanSource{}}
	res := &syncingResolver{}
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.MetricsAddress = addr
	a, err := newAgent(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg,
		deps{source: src, enrich: resolverState{res}, gatherer: reg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	readyz := func() int {
		resp, err := http.Get(fmt.Sprintf("http://%s/readyz", addr))
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return readyz() != 0 }, 5*time.Second, 10*time.Millisecond, "the server answers")
	for _, step := range []struct {
		name string
		set  func()
		want int
	}{
		{"started, nothing attached, no cluster state", func() {}, http.StatusServiceUnavailable},
		{"cluster state loaded, not attached", func() { res.synced.Store(true) }, http.StatusServiceUnavailable},
		{"attached too", func() { src.attached.Store(true) }, http.StatusOK},
		{"attached, cluster state lost", func() { res.synced.Store(false) }, http.StatusServiceUnavailable},
	} {
		step.set()
		assert.Equal(t, step.want, readyz(), step.name)
	}
}
