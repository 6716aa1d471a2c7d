package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/enrich"
	"github.com/flowlens/flowlens/internal/signal"
	"github.com/flowlens/flowlens/policy"
	policysource "github.com/flowlens/flowlens/policy/source"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// policyJudge holds the compiled intended policy set and rebuilds it when
// the policies or the cluster's pods and namespaces change. A set that fails
// to compile never replaces the last good one: flows keep being judged by
// what last made sense, and the status says what is wrong.
type policyJudge struct {
	log    *slog.Logger
	source string // "files:<path>" or "cluster"
	state  enrich.ClusterState
	// enforcer is the profile flows are judged with: what the enforcer
	// does besides the spec.
	enforcer policy.Enforcer

	engine atomic.Pointer[policy.Engine]
	// verdicts judges with the latest engine and hands out each verdict
	// once, shared by the flows judged alike.
	verdicts *verdictCache

	mu sync.Mutex // guards policies, invalid, loaded, status
	// policies is the latest set, parsed as it arrives: the decoded
	// objects are not kept (issue 9), only what a recompile needs.
	policies *policy.Set
	// invalid is why the latest set does not parse (policies is then nil):
	// every rebuild reports it, as a compile error, until a set parses.
	invalid error
	// loaded is false until the source delivered its first set: judging
	// by an empty set meanwhile would call every flow NOT_ISOLATED.
	loaded bool
	status string

	// drift says how the cluster's own set differs from the files; nil
	// unless the judge works from files and the cluster is known too.
	drift *policysource.Drift

	// changed wakes run: the set or the cluster state changed.
	changed *signal.Signal
}

// nodeLister is the part of the enrichment that knows the nodes: the
// engine needs their addresses to exempt a pod's own node.
type nodeLister interface {
	Nodes() []corev1.Node
}

func newPolicyJudge(log *slog.Logger, from string, state enrich.ClusterState) *policyJudge {
	return &policyJudge{log: log, source: from, state: state, status: "loading", changed: signal.New(),
		verdicts: &verdictCache{source: from}}
}

// Judge implements judge: the verdict is shared and read-only.
func (j *policyJudge) Judge(q PolicyQuery, k kernelAction) *flowlensv1.PolicyVerdict {
	proto := corev1.Protocol(q.Protocol)
	if q.Protocol == "ICMP" {
		proto = policy.ProtocolICMP
	}
	return j.verdicts.get(policy.Query{Src: q.Src, Dst: q.Dst, Port: q.Port, Protocol: proto, ICMPType: q.ICMPType}, k)
}

// State implements stateReporter.
func (j *policyJudge) State() (string, string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.status
	if diff := j.drift.Diff(); len(diff) > 0 {
		st += "; the cluster's set differs from the files: " + strings.Join(diff, "; ")
	}
	// The profile belongs with the source: both say what flows are judged by.
	return j.source + ", enforcer " + j.enforcer.Name, st
}

// setPolicies replaces the intended set and asks for a rebuild.
func (j *policyJudge) setPolicies(p []networkingv1.NetworkPolicy) {
	set, err := policy.NewSet(p)
	j.mu.Lock()
	j.policies, j.invalid = set, err
	j.loaded = true
	j.mu.Unlock()
	j.changed.Notify()
}

func (j *policyJudge) setStatus(s string) {
	j.mu.Lock()
	j.status = s
	j.mu.Unlock()
}

// setError reports a source's failure; the last good set stays.
func (j *policyJudge) setError(err error) {
	j.setStatus(fmt.Sprintf("error (keeping the last good set): %v", err))
}

// run rebuilds the engine on every change, coalescing bursts (an informer
// resync touches every pod) into one compile.
// The cluster state's changes arrive as changed.Notify calls from the
// agent's state fan-out, the one reader of the state's own signal.
func (j *policyJudge) run(ctx context.Context) error {
	j.rebuild()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-j.changed.C():
		}
		// Let a burst of updates settle, except for the first set: until
		// it compiles, flows go out without an intended verdict.
		if j.engine.Load() != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
		j.rebuild()
	}
}

func (j *policyJudge) rebuild() {
	j.mu.Lock()
	pols, invalid, loaded := j.policies, j.invalid, j.loaded
	j.mu.Unlock()
	if !loaded {
		return
	}
	var cs policy.ClusterState
	if j.state != nil {
		cs.Namespaces, cs.Pods = j.state.Snapshot()
		if n, ok := j.state.(nodeLister); ok {
			cs.Nodes = n.Nodes()
		}
	}
	start := time.Now()
	var e *policy.Engine
	err := invalid
	if err == nil {
		e, err = pols.Compile(cs)
	}
	if err != nil {
		j.log.Error("intended policy set does not compile; keeping the last good set", "err", err)
		j.setStatus(fmt.Sprintf("error (keeping the last good set): %v", err))
		return
	}
	e = e.WithEnforcer(j.enforcer)
	j.engine.Store(e)
	j.verdicts.use(e)
	j.setStatus(fmt.Sprintf("ok: %d policies, %d pods", pols.Len(), len(cs.Pods)))
	j.log.Debug("intended policy set compiled", "policies", pols.Len(), "pods", len(cs.Pods), "took", time.Since(start))
}
