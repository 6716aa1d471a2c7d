package enrich

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/flowlens/flowlens/kubeapi/kubeapitest"
)

// TestKubeAPIRestarted is an API server stopped long enough for the
// reflectors' backoff to grow to seconds, then started again: every list and
// watch is refused meanwhile, and the new API server cannot resume the old
// watches (410 Gone), so every informer lists again. A pod created during the
// outage must be named within a probe interval or two of the return, not
// after the reflector's backoff (which would be 6 s or more here, and up to a
// minute after a 30 s outage).
func TestKubeAPIRestarted(t *testing.T) {
	refusedErr := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	var (
		down     atomic.Bool
		mu       sync.Mutex
		watchers []*watch.FakeWatcher
		resumed  = map[string]bool{} // resources whose first watch after the restart was answered
	)
	cs := kubeapitest.New(pod("a", "web", []string{"10.42.0.50"}))
	cs.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, refusedErr
		}
		return false, nil, nil // the tracker lists
	})
	cs.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		if down.Load() {
			return true, nil, refusedErr
		}
		mu.Lock()
		defer mu.Unlock()
		w := watch.NewFakeWithChanSize(1, false)
		watchers = append(watchers, w)
		if r := a.GetResource().Resource; len(watchers) > 7 && !resumed[r] {
			resumed[r] = true
			gone := apierrors.NewResourceExpired("too old resource version")
			w.Error(&gone.ErrStatus)
		}
		return true, w, nil
	})
	k, _ := startKubeWith(t, cs, Config{ProbeInterval: 100 * time.Millisecond}, true)
	require.Equal(t, "web", k.Lookup(addr("10.42.0.50"), time.Now()).Name)

	// The API server stops: its watches end cleanly (not within a second of
	// their start, which the reflector takes for an error), every new call is
	// refused.
	time.Sleep(1100 * time.Millisecond)
	down.Store(true)
	mu.Lock()
	for _, w := range watchers {
		w.Stop()
	}
	mu.Unlock()
	eventually(t, func() bool { return k.Status().Degraded }, "degraded while the API server is down")
	err := cs.Tracker().Add(pod("a", "late", []string{"10.42.0.51"})) // as if created just after the return
	require.NoError(t, err)
	time.Sleep(5 * time.Second) // the reflector's backoff would now be 3-6 s and growing

	down.Store(false)
	back := time.Now()
	require.Eventually(t, func() bool { return k.Lookup(addr("10.42.0.51"), time.Now()).Name == "late" },
		4*time.Second, 10*time.Millisecond, "the pod listed after the restart is not named")
	t.Logf("named %v after the API server returned", time.Since(back).Round(time.Millisecond))
	eventually(t, func() bool { return !k.Status().Degraded }, "recovers")
	assert.Equal(t, "web", k.Lookup(addr("10.42.0.50"), time.Now()).Name)
}

func TestKubeRefusalsThatAreNoFailure(t *testing.T) {
	initial := true
	forbidden := apierrors.NewInvalid(schema.GroupKind{Group: "meta.k8s.io", Kind: "ListOptions"}, "",
		field.ErrorList{field.Forbidden(field.NewPath("sendInitialEvents"), "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")})
	for _, tc := range []struct {
		name     string
		opts     metav1.ListOptions
		err      error
		fallback bool
	}{
		{"streaming list refused by an API server before v1.35", metav1.ListOptions{SendInitialEvents: &initial}, forbidden, true},
		{"plain watch invalid", metav1.ListOptions{}, forbidden, false},
		{"streaming list refused for another reason", metav1.ListOptions{SendInitialEvents: &initial}, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", nil), false},
		{"no error", metav1.ListOptions{SendInitialEvents: &initial}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.fallback, watchListRefused(tc.opts, tc.err))
		})
	}
	k, _ := startKube(t, Config{})
	err := k.called(t.Context(), "pods", &fallbackError{forbidden})
	require.Error(t, err)
	assert.False(t, k.Status().Degraded, "a streaming list the reflector replaces by a list is no degradation")
}
