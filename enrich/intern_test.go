package enrich

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInternedSharesAndForgets(t *testing.T) {
	var tab interned[string, Workload]
	made := 0
	mk := func(name string) func() *Workload {
		return func() *Workload { made++; return &Workload{Kind: "Deployment", Name: name} }
	}
	a := tab.get("a", mk("a"))
	assert.Same(t, a, tab.get("a", mk("a")), "alive: shared")
	func() {
		b := tab.get("b", mk("b"))
		assert.NotSame(t, a, b)
	}()
	assert.Equal(t, 2, made)
	assert.Equal(t, 2, tab.len())

	// Cleanups run after the collection that found b unreachable.
	require.Eventually(t, func() bool { runtime.GC(); return tab.len() == 1 }, 10*time.Second, 10*time.Millisecond,
		"an entry nobody holds is forgotten")
	assert.Same(t, a, tab.get("a", mk("a")), "a held entry stays")
	assert.Equal(t, Workload{Kind: "Deployment", Name: "b"}, *tab.get("b", mk("b")), "a forgotten key gets a fresh value")
	assert.Equal(t, 3, made)
	runtime.KeepAlive(a)
}
