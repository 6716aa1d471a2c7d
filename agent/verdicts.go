package agent

import (
	"encoding/binary"
	"sync"
	"weak"

	"google.golang.org/protobuf/proto"

	"github.com/flowlens/flowlens/policy"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// maxSharedVerdicts bounds the verdict cache: a node's flows name a few
// thousand distinct connections (issue 9's node: 5,000 pods, each one
// a verdict), and past the bound the cache starts over rather than grow.
const maxSharedVerdicts = 16384

// mismatches is the number of Mismatch values (policy.MismatchOf's range).
const mismatches = int(flowlensv1.Mismatch_ENFORCER_ALLOW) + 1

// verdictCache hands out one PolicyVerdict per query and mismatch, shared
// by every flow judged alike: building a fresh one per flow was a quarter
// of the agent's allocation (issue 9). The messages are read-only once
// handed out (the flow log and the metrics read them, the ring keeps them
// by reference, gRPC marshals them), as the enrichment's cached Endpoints.
//
// It holds them weakly: the ring holds those its flows name, so a verdict
// lives as long as a flow shows it, and the cache costs the live heap only
// its index. After a recompile (the policies or the cluster changed) a
// query is judged anew, and where its verdict did not change the one
// handed out before is handed out again, so the ring does not hold two
// equal verdicts of one query (unless the cache started over at its bound).
type verdictCache struct {
	source string // PolicyVerdict.source

	mu sync.Mutex // guards the fields below
	// engine judges; gen counts its changes.
	engine  *policy.Engine
	gen     uint64
	byQuery map[policy.Query]judged
	// refs are the lists of PolicyRefs the verdicts of engine share.
	refs sharedRefs
}

// judged is a query's verdicts by mismatch, as of engine generation gen;
// they differ in the mismatch alone, which depends on what the kernel did.
type judged struct {
	gen      uint64
	verdicts [mismatches]weak.Pointer[flowlensv1.PolicyVerdict]
}

// use makes e the engine verdicts are judged by from now on.
func (c *verdictCache) use(e *policy.Engine) {
	c.mu.Lock()
	c.engine = e
	c.gen++
	c.refs.byKey = nil
	c.mu.Unlock()
}

// get returns the verdict of q, with its mismatch against k; nil before
// the first engine.
func (c *verdictCache) get(q policy.Query, k kernelAction) *flowlensv1.PolicyVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engine == nil {
		return nil
	}
	j := c.byQuery[q]
	if j.gen == c.gen {
		// Any verdict of q gives the mismatch: it depends on the intended
		// verdict and the enforcer's reason, which they all share.
		for i := range j.verdicts {
			if pv := j.verdicts[i].Value(); pv != nil {
				if shared := j.verdicts[k.mismatch(pv)].Value(); shared != nil {
					return shared
				}
				break
			}
		}
	}
	v := c.engine.Evaluate(q)
	build := func(m flowlensv1.Mismatch) *flowlensv1.PolicyVerdict {
		pv := v.ProtoSharing(&c.refs)
		pv.Source, pv.Mismatch = c.source, m
		return pv
	}
	if j.gen != c.gen {
		// Judged by an earlier engine: keep what it still gives.
		for i := range j.verdicts {
			if old := j.verdicts[i].Value(); old == nil || !proto.Equal(old, build(flowlensv1.Mismatch(i))) {
				j.verdicts[i] = weak.Pointer[flowlensv1.PolicyVerdict]{}
			}
		}
		j.gen = c.gen
	}
	pv := build(flowlensv1.Mismatch_MISMATCH_UNSPECIFIED)
	pv.Mismatch = k.mismatch(pv)
	if kept := j.verdicts[pv.Mismatch].Value(); kept != nil {
		pv = kept
	} else {
		j.verdicts[pv.Mismatch] = weak.Make(pv)
	}
	if c.byQuery == nil || len(c.byQuery) >= maxSharedVerdicts {
		c.byQuery = make(map[policy.Query]judged)
	}
	c.byQuery[q] = j
	return pv
}

// sharedRefs hands out one list of PolicyRefs per distinct list of refs:
// the policies isolating a pod, or a rule allowing a peer, are named by
// the verdicts of every flow to or from it, and a list each was half of a
// cached verdict's heap (issue 9). The lists are read-only, as the
// verdicts. Not safe for concurrent use (verdictCache.mu guards it).
type sharedRefs struct {
	byKey map[string][]*flowlensv1.PolicyRef
	key   []byte // scratch
}

// Refs implements policy.RefsConverter.
func (s *sharedRefs) Refs(refs []policy.Ref) []*flowlensv1.PolicyRef {
	if len(refs) == 0 {
		return nil
	}
	// Keyed by value, length-prefixed so any strings survive: the engine
	// shares most lists, but builds a list of several allowing rules anew.
	s.key = s.key[:0]
	for _, r := range refs {
		s.key = binary.AppendUvarint(s.key, uint64(len(r.Namespace)))
		s.key = append(s.key, r.Namespace...)
		s.key = binary.AppendUvarint(s.key, uint64(len(r.Name)))
		s.key = append(s.key, r.Name...)
		s.key = binary.AppendVarint(s.key, int64(r.Rule))
	}
	if out, ok := s.byKey[string(s.key)]; ok {
		return out
	}
	arr, out := make([]flowlensv1.PolicyRef, len(refs)), make([]*flowlensv1.PolicyRef, len(refs))
	for i, r := range refs {
		out[i] = policy.RefProto(&arr[i], r)
	}
	if s.byKey == nil || len(s.byKey) >= maxSharedVerdicts {
		s.byKey = make(map[string][]*flowlensv1.PolicyRef)
	}
	s.byKey[string(s.key)] = out
	return out
}
