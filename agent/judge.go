package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/enrich"
	"github.com/flowlens/flowlens/policy"
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

	engine atomic.Pointer[policy.Engine]

	mu       sync.Mutex // guards policies, loaded, status, clusterDiff
	policies []networkingv1.NetworkPolicy
	// loaded is false until the source delivered its first set: judging
	// by an empty set meanwhile would call every flow NOT_ISOLATED.
	loaded bool
	status string
	// clusterDiff says how the cluster's own set differs from the files,
	// when both are known.
	clusterDiff []string

	kick chan struct{}
}

func newPolicyJudge(log *slog.Logger, source string, state enrich.ClusterState) *policyJudge {
	return &policyJudge{log: log, source: source, state: state, status: "loading", kick: make(chan struct{}, 1)}
}

// Judge implements judge.
func (j *policyJudge) Judge(q PolicyQuery) *flowlensv1.PolicyVerdict {
	e := j.engine.Load()
	if e == nil {
		return nil
	}
	// kube-router (like every enforcer) accepts traffic from a pod's own node
	// (kubelet probes), and the NetworkPolicy documentation says the same.
	if q.SrcKind == flowlensv1.EndpointKind_HOST && q.DstKind == flowlensv1.EndpointKind_POD {
		return &flowlensv1.PolicyVerdict{
			Verdict: flowlensv1.IntendedVerdict_ALLOW,
			Summary: "allow: traffic from the pod's own node is always allowed",
			Source:  j.source,
		}
	}
	proto := corev1.Protocol(q.Protocol)
	if q.Protocol == "ICMP" {
		proto = policy.ProtocolICMP
	}
	v := e.Evaluate(policy.Query{Src: q.Src, Dst: q.Dst, Port: q.Port, Protocol: proto})
	pv := v.Proto()
	pv.Source = j.source
	return pv
}

// State implements stateReporter.
func (j *policyJudge) State() (string, string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.status
	if len(j.clusterDiff) > 0 {
		st += "; the cluster's set differs from the files: " + strings.Join(j.clusterDiff, "; ")
	}
	return j.source, st
}

// setPolicies replaces the intended set and asks for a rebuild.
func (j *policyJudge) setPolicies(p []networkingv1.NetworkPolicy) {
	j.mu.Lock()
	j.policies = p
	j.loaded = true
	j.mu.Unlock()
	j.trigger()
}

func (j *policyJudge) setStatus(s string) {
	j.mu.Lock()
	j.status = s
	j.mu.Unlock()
}

func (j *policyJudge) setClusterDiff(d []string) {
	j.mu.Lock()
	j.clusterDiff = d
	j.mu.Unlock()
}

func (j *policyJudge) trigger() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// run rebuilds the engine on every change, coalescing bursts (an informer
// resync touches every pod) into one compile.
// The cluster state's changes arrive as trigger calls from the agent's
// state fan-out, the one reader of its change signal.
func (j *policyJudge) run(ctx context.Context) error {
	j.rebuild()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-j.kick:
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
	pols, loaded := j.policies, j.loaded
	j.mu.Unlock()
	if !loaded {
		return
	}
	var cs policy.ClusterState
	if j.state != nil {
		cs.Namespaces, cs.Pods = j.state.Snapshot()
	}
	start := time.Now()
	e, err := policy.Compile(cs, pols)
	if err != nil {
		j.log.Error("intended policy set does not compile; keeping the last good set", "err", err)
		j.setStatus(fmt.Sprintf("error (keeping the last good set): %v", err))
		return
	}
	j.engine.Store(e)
	j.setStatus(fmt.Sprintf("ok: %d policies, %d pods", len(pols), len(cs.Pods)))
	j.log.Debug("intended policy set compiled", "policies", len(pols), "pods", len(cs.Pods), "took", time.Since(start))
}

// watchFiles reloads the policy files whenever their names, sizes or
// modification times change. A reload that fails keeps the last good set.
func (j *policyJudge) watchFiles(ctx context.Context, path string, every time.Duration) error {
	var last [32]byte
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		sum, err := treeStamp(path)
		switch {
		case err != nil:
			j.log.Error("reading policy files", "path", path, "err", err)
			j.setStatus(fmt.Sprintf("error (keeping the last good set): %v", err))
		case sum != last:
			pols, err := policy.LoadFiles(path)
			if err != nil {
				j.log.Error("loading policy files; keeping the last good set", "path", path, "err", err)
				j.setStatus(fmt.Sprintf("error (keeping the last good set): %v", err))
			} else {
				last = sum
				j.log.Info("intended policy set loaded", "path", path, "policies", len(pols))
				j.setPolicies(pols)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// treeStamp summarises the names, sizes and mtimes of the policy files.
func treeStamp(root string) ([32]byte, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	var out [32]byte
	if err != nil {
		return out, fmt.Errorf("walk %s: %w", root, err)
	}
	copy(out[:], h.Sum(nil))
	return out, nil
}
