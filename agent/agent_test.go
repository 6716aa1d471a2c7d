package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/agent/flowlog"
	"github.com/flowlens/flowlens/aggregate"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// fakeSource plays records as the kernel capture would, then waits for ctx
// and plays the records of its final flush.
type fakeSource struct {
	before, final []aggregate.Event
}

func (f *fakeSource) Run(ctx context.Context, out chan<- aggregate.Event) error {
	for _, r := range f.before {
		out <- r
	}
	<-ctx.Done()
	for _, r := range f.final {
		out <- r
	}
	return nil
}

func (f *fakeSource) Status() map[string]string {
	return map[string]string{"veth": "tcx", "interfaces": "3"}
}

type fakeNamer map[string]*flowlensv1.Endpoint

func (f fakeNamer) Endpoint(ip netip.Addr, _ time.Time) *flowlensv1.Endpoint {
	if ep, ok := f[ip.String()]; ok {
		return ep
	}
	return &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_WORLD}
}

func (f fakeNamer) Service(ip netip.Addr, port uint16, _ string) *flowlensv1.Service {
	if ip.String() == "10.43.0.20" {
		return &flowlensv1.Service{Namespace: "demo", Name: "backend", Port: uint32(port)}
	}
	return nil
}

// denyTo denies connections to one address and records what it was asked.
type denyTo struct {
	mu   sync.Mutex
	dst  netip.Addr
	seen []PolicyQuery
}

func (d *denyTo) Judge(q PolicyQuery, k kernelAction) *flowlensv1.PolicyVerdict {
	d.mu.Lock()
	d.seen = append(d.seen, q)
	d.mu.Unlock()
	pv := &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_ALLOW, Summary: "allow"}
	if q.Dst == d.dst {
		pv = &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY, Summary: "deny"}
	}
	pv.Mismatch = k.mismatch(pv)
	return pv
}

type memSink struct {
	mu  sync.Mutex
	got []*flowlensv1.GetFlowsResponse
}

func (m *memSink) Write(r *flowlensv1.GetFlowsResponse) bool {
	m.mu.Lock()
	m.got = append(m.got, r)
	m.mu.Unlock()
	return true
}

func tcpFlow(src, dst string, sport, dport uint32, v flowlensv1.Verdict, reply bool) aggregate.Event {
	fl := &flowlensv1.Flow{
		Time:     timestamppb.Now(),
		Verdict:  v,
		Ip:       &flowlensv1.IP{Source: src, Destination: dst},
		L4:       &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: sport, DestinationPort: dport}}},
		IsReply:  reply,
		Counters: &flowlensv1.Counters{Packets: 2, Bytes: 120},
	}
	if v == flowlensv1.Verdict_DROPPED {
		fl.DropReason = "NETFILTER_DROP"
	}
	return aggregate.Event{Flow: fl}
}

func TestPipelineNamesJudgesAndFansOut(t *testing.T) {
	names := fakeNamer{
		"10.42.0.10": {Kind: flowlensv1.EndpointKind_POD, Namespace: "demo", PodName: "frontend", NodeName: "node1"},
		"10.42.0.11": {Kind: flowlensv1.EndpointKind_POD, Namespace: "demo", PodName: "backend", NodeName: "node1"},
		"10.42.0.12": {Kind: flowlensv1.EndpointKind_POD, Namespace: "demo", PodName: "db", NodeName: "node1"},
	}
	judge := &denyTo{dst: netip.MustParseAddr("10.42.0.12")}
	src := &fakeSource{
		before: []aggregate.Event{
			tcpFlow("10.42.0.10", "10.42.0.11", 40000, 8080, flowlensv1.Verdict_FORWARDED, false),
			tcpFlow("10.42.0.11", "10.42.0.10", 8080, 40000, flowlensv1.Verdict_FORWARDED, true),
			tcpFlow("10.42.0.10", "10.42.0.12", 40001, 8080, flowlensv1.Verdict_DROPPED, false),
			// Intended deny, kernel forwarded: an UNEXPECTED_ALLOW.
			tcpFlow("10.42.0.11", "10.42.0.12", 40002, 8080, flowlensv1.Verdict_FORWARDED, false),
			{Lost: &flowlensv1.LostEvents{Source: flowlensv1.LostEventSource_KERNEL_RING_BUFFER, NumEventsLost: 7}},
		},
		// Written on shutdown: must still reach the flow log.
		final: []aggregate.Event{
			tcpFlow("10.42.0.10", "10.42.0.11", 40003, 8080, flowlensv1.Verdict_FORWARDED, false),
		},
	}
	var logOut bytes.Buffer
	fw, err := flowlog.New(flowlog.Config{Path: "-"}, &logOut)
	require.NoError(t, err)
	ring := &memSink{}
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.NodeName = "node1"
	cfg.MetricsAddress = ""
	a, err := newAgent(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, deps{
		source: src, names: names, judge: judge, flowlog: fw, ring: ring, gatherer: reg,
	})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return a.pipe.seen.Load() == 4 }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	lines := strings.Split(strings.TrimSpace(logOut.String()), "\n")
	require.Len(t, lines, 5, "four flows before shutdown and one from the final flush")
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	assert.Equal(t, "frontend", first["source"].(map[string]any)["pod_name"])
	assert.Equal(t, "backend", first["destination"].(map[string]any)["pod_name"])
	assert.Equal(t, "node1", first["node_name"])

	ring.mu.Lock()
	require.Len(t, ring.got, 6)
	byPort := map[uint32]*flowlensv1.Flow{}
	for _, r := range ring.got {
		if fl := r.GetFlow(); fl != nil {
			byPort[fl.GetL4().GetTcp().GetSourcePort()] = fl
		}
		assert.Equal(t, "node1", r.GetNodeName())
	}
	ring.mu.Unlock()
	assert.Equal(t, flowlensv1.Mismatch_NONE, byPort[40000].GetPolicy().GetMismatch())
	assert.Equal(t, flowlensv1.Mismatch_NONE, byPort[40001].GetPolicy().GetMismatch(), "intended deny, dropped")
	assert.Equal(t, flowlensv1.Mismatch_UNEXPECTED_ALLOW, byPort[40002].GetPolicy().GetMismatch())

	// The reply was judged as the connection it answers: initiator first.
	judge.mu.Lock()
	assert.Contains(t, judge.seen, PolicyQuery{
		Src: netip.MustParseAddr("10.42.0.10"), Dst: netip.MustParseAddr("10.42.0.11"),
		SrcKind: flowlensv1.EndpointKind_POD, DstKind: flowlensv1.EndpointKind_POD, Port: 8080, Protocol: "TCP",
	})
	judge.mu.Unlock()

	assert.Equal(t, 1.0, testutil.ToFloat64(a.pipe.metrics.mismatches.WithLabelValues("UNEXPECTED_ALLOW", "demo", "demo")))
	// Lost records pass through to the ring; they were counted where they
	// were lost, so the pipeline registers no second lost-events metric.
	n, err := testutil.GatherAndCount(a.deps.gatherer, "flowlens_pipeline_lost_events_total")
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, 2.0, testutil.ToFloat64(a.pipe.metrics.packets.WithLabelValues("DROPPED", "NETFILTER_DROP", "egress", "demo", "frontend")))

	st := a.Status()
	assert.Equal(t, uint32(3), st.GetAttachedInterfaces())
	assert.Equal(t, "tcx", st.GetAttachModes()["veth"])
	assert.EqualValues(t, 5, st.GetSeenFlows())
	require.Len(t, st.GetLostEvents(), 1, "kernel losses are in the status")
	assert.Equal(t, flowlensv1.LostEventSource_KERNEL_RING_BUFFER, st.GetLostEvents()[0].GetSource())
	assert.EqualValues(t, 7, st.GetLostEvents()[0].GetNumEventsLost())
}

func TestMismatchOnlyForNetfilterDrops(t *testing.T) {
	allow := &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_ALLOW}
	deny := &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY}
	for _, tc := range []struct {
		name    string
		verdict flowlensv1.Verdict
		reason  string
		pv      *flowlensv1.PolicyVerdict
		want    flowlensv1.Mismatch
	}{
		{"allowed and forwarded", flowlensv1.Verdict_FORWARDED, "", allow, flowlensv1.Mismatch_NONE},
		{"allowed but netfilter dropped", flowlensv1.Verdict_DROPPED, "NETFILTER_DROP", allow, flowlensv1.Mismatch_UNEXPECTED_DROP},
		{"allowed, dropped for no socket", flowlensv1.Verdict_DROPPED, "NO_SOCKET", allow, flowlensv1.Mismatch_NONE},
		{"denied and dropped", flowlensv1.Verdict_DROPPED, "NETFILTER_DROP", deny, flowlensv1.Mismatch_NONE},
		{"denied but forwarded", flowlensv1.Verdict_FORWARDED, "", deny, flowlensv1.Mismatch_UNEXPECTED_ALLOW},
		{"not isolated, dropped", flowlensv1.Verdict_DROPPED, "NETFILTER_DROP", &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_NOT_ISOLATED}, flowlensv1.Mismatch_UNEXPECTED_DROP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := &flowlensv1.Flow{Verdict: tc.verdict, DropReason: tc.reason}
			assert.Equal(t, tc.want, kernelActionOf(fl).mismatch(tc.pv))
		})
	}
}

// An aggregate of connection attempts (source port 0) is judged as each
// of its attempts would be: NetworkPolicy looks at the destination port
// only, so the missing source port changes nothing.
func TestAggregatedAttemptsJudgedByDestinationPort(t *testing.T) {
	judge := &denyTo{dst: netip.MustParseAddr("10.42.0.12")}
	a := &annotator{judge: judge}
	one := tcpFlow("10.42.0.10", "10.42.0.12", 40001, 8080, flowlensv1.Verdict_DROPPED, false).Flow
	agg := tcpFlow("10.42.0.10", "10.42.0.12", 0, 8080, flowlensv1.Verdict_DROPPED, false).Flow
	agg.AggregatedAttempts = 5
	a.annotate(one)
	a.annotate(agg)
	require.Len(t, judge.seen, 2)
	assert.Equal(t, judge.seen[0], judge.seen[1], "the same query")
	assert.EqualValues(t, 8080, judge.seen[1].Port)
	assert.Equal(t, one.GetPolicy().GetVerdict(), agg.GetPolicy().GetVerdict())
	assert.Equal(t, flowlensv1.Mismatch_NONE, agg.GetPolicy().GetMismatch())
}

func TestICMPErrorsAreNotJudged(t *testing.T) {
	judge := &denyTo{}
	a := &annotator{judge: judge}
	fl := &flowlensv1.Flow{
		Verdict: flowlensv1.Verdict_FORWARDED,
		Ip:      &flowlensv1.IP{Source: "10.42.0.1", Destination: "10.42.0.10"},
		L4:      &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{Type: 3, Code: 3}}},
	}
	a.annotate(fl)
	assert.Nil(t, fl.GetPolicy())
	assert.Empty(t, judge.seen)
}

func TestConfigValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		flag   string
	}{
		{func(c *Config) { c.AttachMode = "xdp" }, "--attach-mode"},
		{func(c *Config) { c.AcceptedMode = "maybe" }, "--accepted-mode"},
		{func(c *Config) { c.Interfaces = []string{"veth["} }, "--interfaces"},
		{func(c *Config) { c.FlowTableSize = 1 }, "--flow-table-size"},
		{func(c *Config) { c.DropRingSize = 100000 }, "--drop-ring-size 100000: want a power of two"},
		{func(c *Config) { c.WatchCIDRs = []string{"10.42.0.0/33"} }, "--watch-cidr"},
		{func(c *Config) { c.FlushInterval = time.Millisecond }, "--flush-interval"},
		{func(c *Config) { c.IdleTimeout = time.Second }, "--idle-timeout"},
		{func(c *Config) { c.ClusterFile = "/nonexistent/cluster.yaml" }, "--cluster-file"},
		{func(c *Config) { c.TLSCert = "/etc/hostname" }, "--tls-cert and --tls-key"},
		{func(c *Config) { c.GRPCAddress = "localhost" }, "--grpc-address"},
		{func(c *Config) { c.LogLevel = "loud" }, "--log-level"},
		{func(c *Config) { c.QueueSize = 0 }, "--queue-size"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			c := DefaultConfig()
			c.NodeName = "n"
			tc.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.flag)
		})
	}
	c := DefaultConfig()
	require.NoError(t, c.Validate())
}

func TestLinkScopeRecordsAreSkipped(t *testing.T) {
	for _, tc := range []struct {
		src, dst string
		skip     bool
	}{
		{"fe80::1", "ff02::2", true},
		{"::", "ff02::1:ff42:559a", true},
		{"10.42.0.1", "224.0.0.22", true},
		{"169.254.1.1", "10.42.0.5", true},
		{"10.42.0.10", "10.42.0.11", false},
		{"fd00::1", "fd00::2", false},
	} {
		fl := &flowlensv1.Flow{Ip: &flowlensv1.IP{Source: tc.src, Destination: tc.dst}}
		assert.Equal(t, tc.skip, isLinkScope(fl), "%s -> %s", tc.src, tc.dst)
	}
}

func TestJudgeWaitsForTheFirstPolicySet(t *testing.T) {
	j := newPolicyJudge(slog.New(slog.DiscardHandler), "files:x", nil)
	j.rebuild()
	assert.Nil(t, j.Judge(PolicyQuery{Src: netip.MustParseAddr("10.42.0.10"), Dst: netip.MustParseAddr("10.42.0.11"), Port: 80, Protocol: "TCP"}, kernelAction{}),
		"no verdict before the source delivered a set")
	j.setPolicies(nil)
	j.rebuild()
	pv := j.Judge(PolicyQuery{Src: netip.MustParseAddr("10.42.0.10"), Dst: netip.MustParseAddr("10.42.0.11"), Port: 80, Protocol: "TCP"}, kernelAction{})
	require.NotNil(t, pv)
	assert.Equal(t, flowlensv1.IntendedVerdict_NOT_ISOLATED, pv.GetVerdict())
	_, state := j.State()
	assert.Contains(t, state, "ok: 0 policies")
}

func TestDirectionFilledFromNames(t *testing.T) {
	p := &pipeline{node: "node1"}
	pod := func(node string) *flowlensv1.Endpoint {
		return &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, NodeName: node}
	}
	for _, tc := range []struct {
		src, dst *flowlensv1.Endpoint
		want     flowlensv1.TrafficDirection
	}{
		{pod("node1"), pod("node2"), flowlensv1.TrafficDirection_EGRESS},
		{pod("node2"), pod("node1"), flowlensv1.TrafficDirection_INGRESS},
		{&flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_WORLD}, pod("node1"), flowlensv1.TrafficDirection_INGRESS},
		{pod("node2"), &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_WORLD}, flowlensv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED},
	} {
		got := p.directionByName(&flowlensv1.Flow{Source: tc.src, Destination: tc.dst})
		assert.Equal(t, tc.want, got)
	}
}

func TestFlowLogFilterFlags(t *testing.T) {
	c := DefaultConfig()
	c.NodeName = "n"
	c.FlowLogAllow = []string{`{"verdict":["DROPPED"]}`, `{"mismatch":["UNEXPECTED_DROP"]}`}
	f, err := c.FlowLogFilter()
	require.NoError(t, err)
	assert.True(t, f.Match(&flowlensv1.Flow{Verdict: flowlensv1.Verdict_DROPPED}))
	assert.False(t, f.Match(&flowlensv1.Flow{Verdict: flowlensv1.Verdict_FORWARDED}))

	for name, tc := range map[string]struct {
		allow, deny []string
		want        string
	}{
		"bad json":   {allow: []string{`{"verdict":`}, want: "--flow-log-allow #1"},
		"bad field":  {deny: []string{`{"verdct":["DROPPED"]}`}, want: "--flow-log-deny #1"},
		"bad cidr":   {allow: []string{`{"source_ip":["10.0.0.0/33"]}`}, want: "10.0.0.0/33"},
		"bad second": {allow: []string{`{}`, `{"port":["x"]}`}, want: "--flow-log-allow #2"},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			c.NodeName = "n"
			c.FlowLogAllow, c.FlowLogDeny = tc.allow, tc.deny
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestFlowLogToStdoutAndFile(t *testing.T) {
	var stdout bytes.Buffer
	file := t.TempDir() + "/flows.json"
	var ws flowWriters
	for _, p := range []string{"-", file} {
		w, err := flowlog.New(flowlog.Config{Path: p, MaxSizeMB: 1}, &stdout)
		require.NoError(t, err)
		ws = append(ws, w)
	}
	ev := tcpFlow("10.42.0.10", "10.42.0.11", 40000, 8080, flowlensv1.Verdict_FORWARDED, false)
	require.NoError(t, ws.Write(ev.Flow))
	require.NoError(t, ws.Flush())
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, stdout.String(), string(raw), "the same line in both")
	assert.Equal(t, 1, strings.Count(string(raw), "\n"))

	c := DefaultConfig()
	c.NodeName = "n"
	c.FlowLog = []string{"-", "-"}
	require.ErrorContains(t, c.Validate(), "--flow-log - given twice")
}
