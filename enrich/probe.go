package enrich

import (
	"context"
	"time"
)

// Probe timings: how often the API server is asked for its version, and how
// long an answer may take before it counts as unreachable.
const (
	probeEvery   = 5 * time.Second
	probeTimeout = 5 * time.Second
)

// probeResource is the health entry of the probe, next to the watched resources.
const probeResource = "apiserver"

// probe marks enrichment degraded while the API server does not answer. The
// informers alone are not enough: a watch on a connection that went silent
// (a partition, no RST) only ends at its timeout, minutes later, and until
// then nothing the reflector does reports an error.
func (k *Kube) probe(ctx context.Context, call func(context.Context) error, every, timeout time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := call(pctx)
		cancel()
		_ = k.called(ctx, probeResource, err)
		k.reach.set(err == nil)
	}
}
