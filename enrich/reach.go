package enrich

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// reachability is whether the API server answers, as the probe and the
// list/watch calls last found it.
//
// A list or watch refused because the API server is down waits here for the
// probe to reach it again, then asks again, instead of going back to the
// reflector: the reflector's backoff, shared by its watch retries and its
// relists, doubles to 30 s (up to a minute with its jitter) over a 30 s
// outage, and the relist that follows every restart of an API server (its
// new watch cache cannot resume the old watch) would wait that long. Names of
// pods created meanwhile would be missing from flows for that minute, while
// health already says recovered. Waiting on the probe keeps the API server
// asked once per probe interval during an outage, not once per resource.
type reachability struct {
	mu sync.Mutex
	up chan struct{} // closed while the API server answers
}

func newReachability() *reachability {
	r := &reachability{up: make(chan struct{})}
	close(r.up)
	return r
}

func (r *reachability) set(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.up:
		if !up {
			r.up = make(chan struct{})
		}
	default:
		if up {
			close(r.up)
		}
	}
}

// answering is closed once the API server answers (at once if it does).
func (r *reachability) answering() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up
}

// refused reports an API server that is not there: nothing listens at its
// address. The reflector would retry such a watch on its own backoff.
func refused(err error) bool { return utilnet.IsConnectionRefused(err) }

// watchListRefused reports an API server that does not serve streaming lists
// (before v1.35 the WatchList feature is off by default): the reflector falls
// back to a plain list, so it is not a failure of the API server.
func watchListRefused(o metav1.ListOptions, err error) bool {
	return o.SendInitialEvents != nil && apierrors.IsInvalid(err)
}

// retryRefused calls fn until it is not refused, waiting for the API server
// to answer the probe between tries. Every outcome is recorded in health.
func retryRefused[T any](ctx context.Context, k *Kube, resource string, fn func() (T, error)) (T, error) {
	for {
		v, err := fn()
		if err == nil || !refused(err) || ctx.Err() != nil {
			return v, k.called(ctx, resource, err)
		}
		err = k.called(ctx, resource, err)
		k.reach.set(false)
		select {
		case <-ctx.Done():
			return v, err
		case <-k.reach.answering():
		}
	}
}
