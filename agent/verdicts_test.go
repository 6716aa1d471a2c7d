package agent

import (
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/aggregate"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// demoState is the pods of pipelineRecords: frontend and backend in demo,
// db in data.
type demoState struct{}

func (demoState) Snapshot() ([]corev1.Namespace, []corev1.Pod) {
	pod := func(ns, name, ip string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: "node1"},
			Status: corev1.PodStatus{PodIP: ip}}
	}
	return nil, []corev1.Pod{pod("demo", "frontend", "10.42.0.10"), pod("demo", "backend", "10.42.0.11"), pod("data", "db", "10.42.0.12")}
}
func (demoState) Changed() <-chan struct{} { return nil }

// denyIngress isolates the ingress of every pod in ns.
func denyIngress(ns string) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
}

func demoJudge(t *testing.T, pols ...networkingv1.NetworkPolicy) *policyJudge {
	t.Helper()
	j := newPolicyJudge(slog.New(slog.DiscardHandler), "files:test", demoState{})
	j.setPolicies(pols)
	j.rebuild()
	_, st := j.State()
	require.Contains(t, st, "ok:")
	return j
}

// The judge hands out one verdict per query and mismatch, and a new one
// once the set is recompiled.
func TestJudgeSharesVerdicts(t *testing.T) {
	j := demoJudge(t, denyIngress("data"))
	toBackend := PolicyQuery{Src: netip.MustParseAddr("10.42.0.10"), Dst: netip.MustParseAddr("10.42.0.11"), Port: 8080, Protocol: "TCP"}
	forwarded := kernelAction{verdict: flowlensv1.Verdict_FORWARDED}
	netfilterDrop := kernelAction{verdict: flowlensv1.Verdict_DROPPED}
	noSocket := kernelAction{verdict: flowlensv1.Verdict_DROPPED, otherDrop: true}

	first := j.Judge(toBackend, forwarded)
	require.NotNil(t, first)
	assert.Equal(t, flowlensv1.IntendedVerdict_NOT_ISOLATED, first.GetVerdict())
	assert.Equal(t, flowlensv1.Mismatch_NONE, first.GetMismatch())
	assert.Equal(t, "files:test", first.GetSource())
	assert.Same(t, first, j.Judge(toBackend, forwarded), "the same query and kernel action")
	assert.Same(t, first, j.Judge(toBackend, noSocket), "another kernel action, the same mismatch")

	dropped := j.Judge(toBackend, netfilterDrop)
	assert.NotSame(t, first, dropped)
	assert.Equal(t, flowlensv1.Mismatch_UNEXPECTED_DROP, dropped.GetMismatch())
	assert.Equal(t, flowlensv1.Mismatch_NONE, first.GetMismatch(), "the shared verdict is not modified")
	assert.Same(t, dropped, j.Judge(toBackend, netfilterDrop))

	otherPort := toBackend
	otherPort.Port = 9090
	assert.NotSame(t, first, j.Judge(otherPort, forwarded), "another query")

	// After a recompile a verdict that did not change is the one handed
	// out before (the ring holds one of each); a changed one is new.
	j.setPolicies([]networkingv1.NetworkPolicy{denyIngress("data")})
	j.rebuild()
	assert.Same(t, first, j.Judge(toBackend, forwarded))
	assert.Same(t, dropped, j.Judge(toBackend, netfilterDrop))
	j.setPolicies([]networkingv1.NetworkPolicy{denyIngress("demo")})
	j.rebuild()
	denied := j.Judge(toBackend, forwarded)
	assert.Equal(t, flowlensv1.IntendedVerdict_DENY, denied.GetVerdict())
	assert.Equal(t, flowlensv1.Mismatch_UNEXPECTED_ALLOW, denied.GetMismatch())
	assert.Equal(t, flowlensv1.IntendedVerdict_NOT_ISOLATED, first.GetVerdict(), "a verdict handed out stays as it was")
	assert.Equal(t, flowlensv1.Mismatch_NONE, j.Judge(toBackend, netfilterDrop).GetMismatch(), "the changed verdict's other mismatch")
	// Verdicts naming the same policies share the list.
	fromDB := toBackend
	fromDB.Src = netip.MustParseAddr("10.42.0.12")
	other := j.Judge(fromDB, forwarded)
	require.NotSame(t, denied, other)
	require.Len(t, other.GetIngress().GetIsolatedBy(), 1)
	assert.Same(t, denied.GetIngress().GetIsolatedBy()[0], other.GetIngress().GetIsolatedBy()[0])
	assert.Equal(t, "demo", other.GetIngress().GetIsolatedBy()[0].GetNamespace())

	// The cache holds verdicts weakly: one no flow holds is judged anew.
	want := proto.CloneOf(j.Judge(otherPort, forwarded))
	runtime.GC()
	runtime.GC()
	got := j.Judge(otherPort, forwarded)
	assert.True(t, proto.Equal(want, got), "got %v\nwant %v", got, want)
}

// watchedJudge remembers a copy of each verdict j hands out, as it was
// the first time, to check that no consumer modifies a shared one.
type watchedJudge struct {
	j       judge
	clone   bool // hand out copies, as the judge did before it shared them
	mu      sync.Mutex
	judged  int
	firstAs map[*flowlensv1.PolicyVerdict]*flowlensv1.PolicyVerdict
}

func (w *watchedJudge) Judge(q PolicyQuery, k kernelAction) *flowlensv1.PolicyVerdict {
	pv := w.j.Judge(q, k)
	if pv == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.judged++
	if w.clone {
		return proto.CloneOf(pv)
	}
	if w.firstAs == nil {
		w.firstAs = make(map[*flowlensv1.PolicyVerdict]*flowlensv1.PolicyVerdict)
	}
	if _, ok := w.firstAs[pv]; !ok {
		w.firstAs[pv] = proto.CloneOf(pv)
	}
	return pv
}

// Shared verdicts reach the ring, the flow log and the metrics exactly as
// a verdict of each flow's own did, and none of them modifies one.
func TestPipelineSharedVerdictsAsOwn(t *testing.T) {
	recs := pipelineRecords()
	var evs []aggregate.Event
	for range 2 { // the second round is judged from the cache
		for i := range recs {
			evs = append(evs, aggregate.Event{Record: recs[i]})
		}
	}
	// demo isolated: the forwarded flows to backend are UNEXPECTED_ALLOW,
	// the dropped ones to db UNEXPECTED_DROP.
	j := demoJudge(t, denyIngress("demo"))
	shared, own := &watchedJudge{j: j}, &watchedJudge{j: j, clone: true}
	gotRing, gotLog, gotReg := pipelineOutputs(t, evs, shared)
	wantRing, wantLog, wantReg := pipelineOutputs(t, evs, own)
	assertSameOutputs(t, 2*(len(recs)-1), wantRing, gotRing, wantLog, gotLog, wantReg, gotReg)

	assert.Equal(t, own.judged, shared.judged)
	assert.Less(t, len(shared.firstAs), shared.judged/2, "flows judged alike share a verdict")
	for pv, first := range shared.firstAs {
		assert.True(t, proto.Equal(first, pv), "a consumer modified a shared verdict:\nnow %v\nwas %v", pv, first)
	}
	seen := map[flowlensv1.Mismatch]bool{}
	for _, r := range gotRing {
		seen[r.GetFlow().GetPolicy().GetMismatch()] = true
	}
	for _, m := range []flowlensv1.Mismatch{flowlensv1.Mismatch_NONE, flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW} {
		assert.True(t, seen[m], "the comparison covered %v", m)
	}
}
