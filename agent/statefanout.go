package agent

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/enrich"
)

// stateFanout is the one reader of the cluster state's change signal (a
// single coalescing channel, so two readers would steal each other's
// wake-ups): each change is handed to every consumer, here the policy
// judge (rebuild) and the metrics (forget deleted pods).
type stateFanout struct {
	state     enrich.ClusterState
	consumers []func(pods []corev1.Pod)
}

func (f *stateFanout) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.state.Changed():
			_, pods := f.state.Snapshot()
			for _, c := range f.consumers {
				c(pods)
			}
		}
	}
}
