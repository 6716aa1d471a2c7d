package enrich

import (
	"runtime"
	"sync"
	"weak"
)

// interned hands out one shared *V per key while anything still holds it:
// the pods of a workload share one shape and one workload name instead of
// a copy each (issue 9). Entries hold their value weakly, so a value
// nobody references any more is collected and its entry goes with it; a
// key seen again after that gets a fresh value, never a wrong one. Values
// are immutable once made. Safe for concurrent use: the informers'
// transform and the index's writers both intern.
type interned[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]weak.Pointer[V]
}

// get returns the value for k, made by mk when there is none alive.
func (t *interned[K, V]) get(k K, mk func() *V) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.m[k]; ok {
		if v := w.Value(); v != nil {
			return v
		}
	}
	v := mk()
	w := weak.Make(v)
	if t.m == nil {
		t.m = map[K]weak.Pointer[V]{}
	}
	t.m[k] = w
	runtime.AddCleanup(v, t.forget, internedEntry[K, V]{k, w})
	return v
}

type internedEntry[K comparable, V any] struct {
	key K
	w   weak.Pointer[V]
}

// forget drops a collected value's entry unless the key has a newer one.
func (t *interned[K, V]) forget(e internedEntry[K, V]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[e.key] == e.w {
		delete(t.m, e.key)
	}
}

// len is the number of entries, collected or not yet forgotten.
func (t *interned[K, V]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
