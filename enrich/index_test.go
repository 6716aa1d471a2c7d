package enrich

import (
	"fmt"
	"sync"
	"testing"
	"time"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

func TestHandlersUnwrapTombstones(t *testing.T) {
	var deleted []string
	h := handlers(func(*corev1.Pod) {}, func(p *corev1.Pod) { deleted = append(deleted, p.Name) })
	h.OnDelete(pod("a", "direct", nil))
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "a/missed", Obj: pod("a", "missed", nil)})
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "a/other", Obj: namespace("a")}) // wrong type: ignored
	assert.Equal(t, []string{"direct", "missed"}, deleted)
}

func TestIPSlotPick(t *testing.T) {
	t0 := time.Unix(1000, 0)
	grace := time.Minute
	old := &podIdent{pod: &podInfo{name: "old"}}
	cur := &podIdent{pod: &podInfo{name: "new"}}
	gone := &displaced{id: old, until: t0}
	tests := []struct {
		name string
		slot ipSlot
		at   time.Time
		want *podIdent
	}{
		{"only current", ipSlot{cur: cur}, t0, cur},
		{"deleted, within grace", ipSlot{prev: gone}, t0.Add(30 * time.Second), old},
		{"deleted, after grace", ipSlot{prev: gone}, t0.Add(grace), nil},
		{"deleted, zero time", ipSlot{prev: gone}, time.Time{}, old},
		{"reused, flow before the handover", ipSlot{cur: cur, prev: gone}, t0.Add(-time.Second), old},
		{"reused, flow after the handover", ipSlot{cur: cur, prev: gone}, t0.Add(time.Second), cur},
		{"reused, zero time", ipSlot{cur: cur, prev: gone}, time.Time{}, cur},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Same(t, tt.want, tt.slot.pick(tt.at, grace))
		})
	}
}

// TestConcurrentLookups runs lookups against churning writers; its value
// is under -race.
func TestConcurrentLookups(t *testing.T) {
	ix := newIndex(Config{NodeName: testNode, DeletedGrace: time.Millisecond})
	ix.upsertNamespace(namespace("a", "k", "v"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ix.Lookup(addr(fmt.Sprintf("10.42.0.%d", (i+r)%50+2)), time.Now())
				if id.Kind == flowlensv1.EndpointKind_POD && id.Namespace != "a" {
					t.Errorf("bad identity %+v", id)
					return
				}
				_ = id.Endpoint().GetPodName()
				ix.LookupService(addr("10.43.0.10"), 80, "TCP")
				_, _ = ix.Snapshot()
			}
		}()
	}
	for i := range 2000 {
		ip := fmt.Sprintf("10.42.0.%d", i%50+2)
		name := fmt.Sprintf("p-%d", i%60)
		ix.upsertPod(ix.podInfo(pod("a", name, []string{ip}, labels("i", fmt.Sprint(i)))), time.Now())
		if i%3 == 0 {
			ix.deletePod("a", fmt.Sprintf("p-%d", (i+7)%60), time.Now())
		}
		if i%100 == 0 {
			ix.upsertNamespace(namespace("a", "k", fmt.Sprint(i)))
			ix.upsertService(newServiceInfo(service("a", "s", "10.43.0.10", corev1.ServicePort{Name: "http", Port: 80})))
			ix.gc(time.Now())
		}
	}
	close(stop)
	wg.Wait()
}
