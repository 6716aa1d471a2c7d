package agent

import (
	"bytes"
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flowlens/flowlens/agent/flowlog"
	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/aggregate"
	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func as16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// pipelineRecords are records as aggregation sends them, varied so that
// a flow built into reused messages would show any field left over from
// the one before: protocols, verdicts, a translated service, IPv6, an
// aggregate of attempts, a link-local one the pipeline skips.
func pipelineRecords() []aggregate.Record {
	key := func(src, dst string, sport, dport uint16, proto uint8) bpf.FlowKey {
		fam := uint8(4)
		if netip.MustParseAddr(src).Is6() {
			fam = 6
		}
		return bpf.FlowKey{Saddr: as16(src), Daddr: as16(dst), Sport: sport, Dport: dport, Proto: proto, Family: fam}
	}
	attempts := key("10.42.0.10", "10.42.0.12", 0, 5432, 6)
	attempts.Flags = bpf.FlowKeyAttempts
	base := func(i int, k bpf.FlowKey, v flowlensv1.Verdict) aggregate.Record {
		return aggregate.Record{Key: k, Verdict: v, NodeName: "node1", Obs: bpf.ObsFromPod, Ifindex: 3, IfName: "veth3",
			Packets: uint64(i + 1), Bytes: uint64(100 * (i + 1)), FirstNs: int64(i) * 1e9, LastNs: int64(i)*1e9 + 5e8,
			UUID: [16]byte{15: byte(i + 1), 6: 0x40, 8: 0x80}}
	}
	var out []aggregate.Record
	add := func(r aggregate.Record) { out = append(out, r) }
	add(base(0, key("10.42.0.10", "10.42.0.11", 40000, 8080, 6), fwd))
	r := base(1, key("10.42.0.11", "10.42.0.10", 8080, 40000, 6), fwd)
	r.IsReply, r.Obs, r.TCPFlags = true, bpf.ObsToPod, 0x12
	add(r)
	r = base(2, key("10.42.0.10", "10.42.0.12", 40001, 8080, 6), drop)
	r.DropReason, r.TCPFlags = "NETFILTER_DROP", 0x02
	add(r)
	r = base(3, key("10.42.0.10", "10.43.0.20", 5000, 80, 17), fwd)
	r.Xlat, r.XlatDaddr, r.XlatDport = true, as16("10.42.0.11"), 8080
	add(r)
	add(base(4, key("10.42.0.10", "10.42.0.11", 7, 8<<8, 1), fwd))
	add(base(5, key("fd00:42::10", "fd00:42::11", 40000, 443, 6), fwd))
	r = base(6, attempts, drop)
	r.DropReason, r.Ifindex, r.IfName = "NETFILTER_DROP", 0, ""
	add(r)
	add(base(7, key("fe80::1", "ff02::2", 0, 133<<8, 58), fwd))
	r = base(8, key("10.42.0.11", "10.42.0.10", 8080, 40000, 6), fwd)
	r.Obs, r.Ifindex, r.IfName, r.UUID = bpf.ObsToPod, 0, "", [16]byte{}
	add(r)
	return out
}

const (
	fwd  = flowlensv1.Verdict_FORWARDED
	drop = flowlensv1.Verdict_DROPPED
)

// collectStream is a GetFlows stream that keeps a copy of what it is sent.
type collectStream struct {
	grpc.ServerStream
	ctx context.Context
	got []*flowlensv1.GetFlowsResponse
}

func (s *collectStream) Context() context.Context { return s.ctx }
func (s *collectStream) Send(r *flowlensv1.GetFlowsResponse) error {
	s.got = append(s.got, proto.CloneOf(r))
	return nil
}

// pipelineOutputs runs evs through a pipeline with the real ring, flow log
// and metrics, judged by j, and returns what a client reads back from the
// ring, the flow log's lines and the metrics.
func pipelineOutputs(t *testing.T, evs []aggregate.Event, j judge) (flows []*flowlensv1.GetFlowsResponse, log string, reg *prometheus.Registry) {
	t.Helper()
	names := fakeNamer{
		"10.42.0.10": {Kind: flowlensv1.EndpointKind_POD, Namespace: "demo", PodName: "frontend", NodeName: "node1"},
		"10.42.0.11": {Kind: flowlensv1.EndpointKind_POD, Namespace: "demo", PodName: "backend", NodeName: "node1"},
		"10.42.0.12": {Kind: flowlensv1.EndpointKind_POD, Namespace: "demo", PodName: "db", NodeName: "node1"},
	}
	var logOut bytes.Buffer
	fw, err := flowlog.New(flowlog.Config{Path: "-"}, &logOut)
	require.NoError(t, err)
	reg = prometheus.NewRegistry()
	m, err := newFlowMetrics(reg, "node1", true)
	require.NoError(t, err)
	ring := observer.NewRing(64)
	p := &pipeline{log: slog.New(slog.NewTextHandler(io.Discard, nil)), node: "node1",
		ann:     &annotator{names: names, judge: j},
		metrics: m, flowlog: fw, ring: ring}
	in := make(chan aggregate.Event, len(evs))
	for _, ev := range evs {
		in <- ev
	}
	close(in)
	p.run(in)

	stream := &collectStream{ctx: t.Context()}
	srv := observer.NewServer(ring, nil, "node1", slog.New(slog.DiscardHandler))
	require.NoError(t, srv.GetFlows(&flowlensv1.GetFlowsRequest{Number: 64}, stream))
	return stream.got, logOut.String(), reg
}

// Records built into one reused flow reach every consumer exactly as
// flows built anew for each record do: nothing a consumer kept was
// overwritten by the next record.
func TestPipelineRecordsAsFreshFlows(t *testing.T) {
	recs := pipelineRecords()
	var asRecords, asFlows []aggregate.Event
	for i := range recs {
		asRecords = append(asRecords, aggregate.Event{Record: recs[i]})
		asFlows = append(asFlows, aggregate.Event{Flow: recs[i].Proto()})
	}
	j := &denyTo{dst: netip.MustParseAddr("10.42.0.12")}
	gotRing, gotLog, gotReg := pipelineOutputs(t, asRecords, j)
	wantRing, wantLog, wantReg := pipelineOutputs(t, asFlows, j)
	assertSameOutputs(t, len(recs)-1, wantRing, gotRing, wantLog, gotLog, wantReg, gotReg)
}

// assertSameOutputs compares two runs of pipelineOutputs that saw n flows.
func assertSameOutputs(t *testing.T, n int, wantRing, gotRing []*flowlensv1.GetFlowsResponse, wantLog, gotLog string, wantReg, gotReg *prometheus.Registry) {
	t.Helper()
	require.Len(t, wantRing, n, "all but the link-local record")
	require.Len(t, gotRing, len(wantRing))
	for i := range wantRing {
		assert.True(t, proto.Equal(wantRing[i], gotRing[i]), "record %d:\nwant %v\n got %v", i, wantRing[i], gotRing[i])
	}
	assert.Equal(t, wantLog, gotLog)
	assert.Equal(t, n, bytes.Count([]byte(gotLog), []byte("\n")))
	for _, name := range []string{"flowlens_flows_total", "flowlens_packets_total", "flowlens_bytes_total", "flowlens_policy_verdicts_total"} {
		want, err := testutil.CollectAndFormat(wantReg, expfmt.TypeTextPlain, name)
		require.NoError(t, err)
		got, err := testutil.CollectAndFormat(gotReg, expfmt.TypeTextPlain, name)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), name)
		assert.NotEmpty(t, want)
	}
	// The pipeline annotated what it built: a sanity check that the
	// comparison above compared named, judged flows.
	assert.Equal(t, "frontend", gotRing[0].GetFlow().GetSource().GetPodName())
	assert.NotNil(t, gotRing[0].GetFlow().GetPolicy())
}

// A sink that keeps the responses it is given (the ring does so with a
// flow its compact form cannot carry) gets a new flow each time.
func TestPipelineNewFlowAfterSinkKeptOne(t *testing.T) {
	recs := pipelineRecords()
	ring := &memSink{}
	p := &pipeline{log: slog.New(slog.DiscardHandler), node: "node1", ann: &annotator{}, ring: ring}
	for i := range recs {
		p.handle(&aggregate.Event{Record: recs[i]})
	}
	require.Len(t, ring.got, len(recs)-1)
	for i, r := range ring.got {
		j := i
		if i >= 7 {
			j++ // the link-local record was skipped
		}
		want := recs[j].Proto()
		assert.True(t, proto.Equal(want, r.GetFlow()), "record %d:\nwant %v\n got %v", i, want, r.GetFlow())
		if i > 0 {
			assert.NotSame(t, ring.got[i-1].GetFlow(), r.GetFlow())
		}
	}
}

// addrNamer names pods by address from a map, as the enrichment index
// does, returning its shared endpoints.
type addrNamer map[netip.Addr]*flowlensv1.Endpoint

func (n addrNamer) Endpoint(ip netip.Addr, _ time.Time) *flowlensv1.Endpoint { return n[ip] }
func (n addrNamer) Service(netip.Addr, uint16, string) *flowlensv1.Service   { return nil }

// allowAll allows everything, handing out one shared verdict per mismatch
// as the policy judge does.
type allowAll [mismatches]*flowlensv1.PolicyVerdict

func newAllowAll() *allowAll {
	var a allowAll
	for m := range a {
		a[m] = &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_ALLOW, Summary: "allowed", Mismatch: flowlensv1.Mismatch(m)}
	}
	return &a
}

func (a *allowAll) Judge(_ PolicyQuery, k kernelAction) *flowlensv1.PolicyVerdict {
	return a[k.mismatch(a[0])]
}

// BenchmarkPipeline prices one flow through the pipeline (annotation,
// metrics, flow log, ring) as aggregation now sends it ("record", built
// into reused messages) against a proto built anew for each record as
// aggregation did before (issue 9; "flow", that build included). The two
// run in alternating rounds of 4,096 flows on one locked thread, timed by
// the thread's own CPU time, so a busy machine slows both alike; it
// reports each one's CPU ns a flow and record/flow.
func BenchmarkPipeline(b *testing.B) {
	names := addrNamer{}
	recs := make([]aggregate.Record, 4096)
	for i := range recs {
		src, dst := memNode.PodIP(i%memPods), memNode.PodIP((i*7+1)%memPods)
		for _, a := range []netip.Addr{src, dst} {
			names[a] = &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: fmt.Sprintf("ns-%d", i%50),
				PodName: fmt.Sprintf("pod-%d", i), NodeName: "node-0",
				Workloads: []*flowlensv1.Workload{{Kind: "Deployment", Name: fmt.Sprintf("app-%d", i/5)}}}
		}
		recs[i] = aggregate.Record{Key: bpf.FlowKey{Saddr: src.As16(), Daddr: dst.As16(), Sport: uint16(i), Dport: 8080, Proto: 6, Family: 4},
			Verdict: fwd, NodeName: "node-0", Obs: bpf.ObsFromPod, Ifindex: 3, IfName: "veth0123abcd", TCPFlags: 0x12,
			Packets: 10, Bytes: 1000, FirstNs: time.Now().UnixNano(), LastNs: time.Now().UnixNano(), UUID: [16]byte{1, 6: 0x40, 8: 0x80}}
	}
	judge := newAllowAll()
	newPipeline := func() *pipeline {
		fw, err := flowlog.New(flowlog.Config{Path: "-"}, io.Discard)
		require.NoError(b, err)
		m, err := newFlowMetrics(prometheus.NewRegistry(), "node-0", false)
		require.NoError(b, err)
		return &pipeline{log: slog.New(slog.DiscardHandler), node: "node-0", ann: &annotator{names: names, judge: judge},
			metrics: m, flowlog: fw, ring: observer.NewRing(0)}
	}
	pipelines := [2]*pipeline{newPipeline(), newPipeline()}
	rounds := [2]func(){
		func() { // record
			p := pipelines[0]
			for i := range recs {
				p.handle(&aggregate.Event{Record: recs[i]})
			}
		},
		func() { // flow
			p := pipelines[1]
			for i := range recs {
				p.handle(&aggregate.Event{Flow: recs[i].Proto()})
			}
		},
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Full rings first, their interned values made: the state the agent
	// runs in.
	for range observer.DefaultRingCapacity / len(recs) {
		rounds[0]()
		rounds[1]()
	}
	var spent [2]time.Duration
	n := 0
	for b.Loop() {
		for k := range 2 {
			k := (k + n) % 2 // alternate which goes first
			start := threadCPU(b)
			rounds[k]()
			spent[k] += threadCPU(b) - start
		}
		n++
	}
	per := func(k int) float64 { return float64(spent[k].Nanoseconds()) / float64(n*len(recs)) }
	b.ReportMetric(per(0), "record-cpu-ns/flow")
	b.ReportMetric(per(1), "flow-cpu-ns/flow")
	b.ReportMetric(per(0)/per(1), "record/flow")
}

// threadCPU is the calling thread's CPU time (user and system).
func threadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	require.NoError(b, unix.Getrusage(unix.RUSAGE_THREAD, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
