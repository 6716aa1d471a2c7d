package source

import (
	"sync"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/policy"
)

// Drift says how the cluster's applied NetworkPolicies differ from the
// files (the set in git). Either side may change at any time, so the diff
// is recomputed whenever either does; until both are known there is none.
// It keeps each side's spec digests, not its objects. It is safe for
// concurrent use.
type Drift struct {
	mu                     sync.Mutex // guards everything below
	files, cluster         policy.SpecDigests
	haveFiles, haveCluster bool
	diff                   []string
}

// SetFiles records a newly loaded file set.
func (d *Drift) SetFiles(p []networkingv1.NetworkPolicy) {
	digests := policy.Digests(p)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files, d.haveFiles = digests, true
	d.recomputeLocked()
}

// SetCluster records the cluster's current set.
func (d *Drift) SetCluster(p []networkingv1.NetworkPolicy) {
	digests := policy.Digests(p)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cluster, d.haveCluster = digests, true
	d.recomputeLocked()
}

// Diff is policy.Diff(files, cluster) of the latest sets: nil until both
// are known, empty when they agree. The slice is shared: do not modify it.
func (d *Drift) Diff() []string {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.diff
}

func (d *Drift) recomputeLocked() {
	if !d.haveFiles || !d.haveCluster {
		return
	}
	d.diff = policy.DiffDigests(d.files, d.cluster)
	if d.diff == nil {
		d.diff = []string{}
	}
}
