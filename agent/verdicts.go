package agent

import (
	"sync"

	"github.com/flowlens/flowlens/policy"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// maxSharedVerdicts bounds the verdict cache: a node's flows name a few
// thousand distinct connections (issue 9's node: 5,000 pods, each one
// a verdict), and past the bound the cache starts over rather than grow.
const maxSharedVerdicts = 16384

// mismatches is the number of Mismatch values (policy.MismatchOf's range).
const mismatches = int(flowlensv1.Mismatch_ENFORCER_ALLOW) + 1

// verdictCache hands out one PolicyVerdict per engine, query and mismatch,
// shared by every flow judged alike: building a fresh one per flow was a
// quarter of the agent's allocation (issue 9). The messages are read-only
// once handed out (the flow log, the metrics and the ring only read them;
// gRPC marshals them), as the enrichment's cached Endpoints are.
//
// The cache holds them strongly, ~900 bytes each (4.5 MiB for issue 9's
// 5,000 pods): held weakly, they died at every collection under a tight
// GOMEMLIMIT and were rebuilt nearly as often as before.
type verdictCache struct {
	mu sync.Mutex // guards engine, byQuery
	// engine is what the cached verdicts were judged by: a recompiled set
	// (policies or the cluster changed) starts the cache over.
	engine *policy.Engine
	// byQuery holds a query's verdicts by mismatch; they differ in the
	// mismatch alone, which depends on what the kernel did.
	byQuery map[policy.Query]*[mismatches]*flowlensv1.PolicyVerdict
}

// get returns the verdict of q by e, with its mismatch against k and the
// given source.
func (c *verdictCache) get(e *policy.Engine, q policy.Query, k kernelAction, source string) *flowlensv1.PolicyVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engine != e || len(c.byQuery) >= maxSharedVerdicts {
		clear(c.byQuery)
		c.engine = e
	}
	vs := c.byQuery[q]
	if vs == nil {
		if c.byQuery == nil {
			c.byQuery = make(map[policy.Query]*[mismatches]*flowlensv1.PolicyVerdict)
		}
		vs = new([mismatches]*flowlensv1.PolicyVerdict)
		c.byQuery[q] = vs
	}
	// Any verdict of q gives the mismatch: it depends on the intended
	// verdict and the enforcer's reason, which they all share.
	for _, pv := range vs {
		if pv != nil {
			if shared := vs[k.mismatch(pv)]; shared != nil {
				return shared
			}
			break
		}
	}
	pv := e.Evaluate(q).Proto()
	pv.Source = source
	pv.Mismatch = k.mismatch(pv)
	vs[pv.Mismatch] = pv
	return pv
}
