package aggregate

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/lost/losttest"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
)

func mapped(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// rawKey and rawStats lay out the generated structs as the kernel does.
func rawKey(k bpf.FlowKey) []byte     { return raw(k) }
func rawStats(s bpf.FlowStats) []byte { return raw(s) }

func raw(v any) []byte {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, v)
	return buf.Bytes()
}

// fakeTable is an in-memory flow table.
type fakeTable struct {
	flows       map[bpf.FlowKey]bpf.FlowStats
	created     uint64
	ringbufLost uint64
	deleted     []bpf.FlowKey
}

func (f *fakeTable) IterateFlows(fn func(key, val []byte)) error {
	keys := make([]bpf.FlowKey, 0, len(f.flows))
	for k := range f.flows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Sport < keys[j].Sport })
	for _, k := range keys {
		fn(rawKey(k), rawStats(f.flows[k]))
	}
	return nil
}

func (f *fakeTable) DeleteFlows(keys []bpf.FlowKey) error {
	for _, k := range keys {
		delete(f.flows, k)
		f.deleted = append(f.deleted, k)
	}
	return nil
}

func (f *fakeTable) Counters() (uint64, uint64, error) { return f.created, f.ringbufLost, nil }

type fixture struct {
	table *fakeTable
	rep   *reporter
	out   chan Event
	reg   *prometheus.Registry
	mono  uint64
}

const sec = uint64(time.Second)

var testUUID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func newFixture(t *testing.T, inference bool, outCap int) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	fx := &fixture{table: &fakeTable{flows: map[bpf.FlowKey]bpf.FlowStats{}}, out: make(chan Event, outCap), reg: reg, mono: 100 * sec}
	reasons := bpf.DropReasons{12: "NETFILTER_DROP"}
	names := map[uint32]string{3: "vethaaaa", 4: "vethbbbb", 9: "cni0"}
	agg := newAggregator("node-1", inference, time.Minute, reasons.Name, func(i uint32) string { return names[i] }, int64(1_000_000*sec))
	agg.newUUID = func() [16]byte { return testUUID }
	fx.rep = &reporter{agg: agg, table: fx.table, out: fx.out, metrics: m, log: slog.New(slog.DiscardHandler),
		now: func() uint64 { return fx.mono }}
	return fx
}

// put sets a flow's cumulative counters; new keys count as created.
func (fx *fixture) put(k bpf.FlowKey, s bpf.FlowStats) {
	if _, ok := fx.table.flows[k]; !ok {
		fx.table.created++
	}
	if s.LastNs == 0 {
		s.LastNs = fx.mono
	}
	fx.table.flows[k] = s
}

func (fx *fixture) flush(final bool) []Event {
	fx.rep.flush(final)
	var evs []Event
	for {
		select {
		case ev := <-fx.out:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

func tcpKey(sport uint16) bpf.FlowKey {
	return bpf.FlowKey{Saddr: mapped("10.42.0.10"), Daddr: mapped("10.42.0.11"), Sport: sport, Dport: 8080, Proto: protoTCP, Family: 4}
}

type rec struct {
	verdict flowlensv1.Verdict
	pkts    uint64
	bytes   uint64
}

func recs(evs []Event) []rec {
	var out []rec
	for _, ev := range evs {
		if f := ev.FlowProto(); f != nil {
			out = append(out, rec{f.Verdict, f.Counters.Packets, f.Counters.Bytes})
		}
	}
	return out
}

const (
	fwd  = flowlensv1.Verdict_FORWARDED
	drop = flowlensv1.Verdict_DROPPED
)

func TestReporterVerdicts(t *testing.T) {
	type step struct {
		stats bpf.FlowStats
		want  []rec
	}
	from := func(pkts, fwdPkts, dropPkts uint64) bpf.FlowStats {
		return bpf.FlowStats{Pkts: pkts, Bytes: pkts * 100, FwdPkts: fwdPkts, FwdBytes: fwdPkts * 100,
			DropPkts: dropPkts, DropBytes: dropPkts * 100, DropReason: 12, Obs: bpf.ObsFromPod, Ifindex: 3}
	}
	tests := []struct {
		name      string
		inference bool
		steps     []step
	}{
		{"confirmed flow reports deltas", false, []step{
			{from(10, 10, 0), []rec{{fwd, 10, 1000}}},
			{from(15, 15, 0), []rec{{fwd, 5, 500}}},
			{from(15, 15, 0), nil},
		}},
		{"unconfirmed packets wait for confirmation", false, []step{
			{from(3, 0, 0), nil},
			{from(4, 1, 0), []rec{{fwd, 4, 400}}},
		}},
		{"only dropped never forwarded", false, []step{
			{from(1, 0, 1), []rec{{drop, 1, 100}}},
			{from(3, 0, 3), []rec{{drop, 2, 200}}},
		}},
		{"only dropped never forwarded, inference", true, []step{
			{from(1, 0, 1), []rec{{drop, 1, 100}}},
			{from(3, 0, 3), []rec{{drop, 2, 200}}},
			{from(3, 0, 3), nil},
		}},
		{"drop seen one read after the count", true, []step{
			{from(1, 0, 0), nil},
			{from(1, 0, 1), []rec{{drop, 1, 100}}},
			{from(1, 0, 1), nil},
		}},
		{"inference forwards undropped packets one flush later", true, []step{
			{from(5, 0, 0), nil},
			{from(7, 0, 0), []rec{{fwd, 5, 500}}},
			{from(7, 0, 0), []rec{{fwd, 2, 200}}},
		}},
		{"drops of a confirmed flow are not forwarded", false, []step{
			{from(10, 8, 2), []rec{{drop, 2, 200}, {fwd, 8, 800}}},
		}},
		{"delivered flow from outside", false, []step{
			{bpf.FlowStats{Pkts: 4, Bytes: 400, FwdPkts: 4, FwdBytes: 400, Obs: bpf.ObsToPod, Ifindex: 3}, []rec{{fwd, 4, 400}}},
		}},
		// flowState keeps each cumulative counter on its own: distinct
		// values per counter show none is mixed up with another.
		{"every kept counter is its own", false, []step{
			{bpf.FlowStats{Pkts: 2, Bytes: 300, FwdPkts: 2, DropPkts: 1, DropBytes: 70, DropReason: 12, Obs: bpf.ObsToPod},
				[]rec{{drop, 1, 70}, {fwd, 2, 300}}},
			{bpf.FlowStats{Pkts: 5, Bytes: 310, FwdPkts: 5, DropPkts: 3, DropBytes: 1070, DropReason: 12, Obs: bpf.ObsToPod},
				[]rec{{drop, 2, 1000}, {fwd, 3, 10}}},
		}},
		{"a recreated entry counts from zero", false, []step{
			{from(10, 10, 4), []rec{{drop, 4, 400}, {fwd, 6, 600}}},
			{from(3, 3, 1), []rec{{drop, 1, 100}, {fwd, 2, 200}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.inference, 100)
			k := tcpKey(1)
			for i, s := range tt.steps {
				fx.mono += sec
				fx.put(k, s.stats)
				assert.Equal(t, s.want, recs(fx.flush(false)), "step %d", i)
			}
		})
	}
}

func TestReporterRecordFields(t *testing.T) {
	fx := newFixture(t, false, 100)
	k := tcpKey(40000)
	fx.put(k, bpf.FlowStats{FirstNs: 90 * sec, LastNs: 99 * sec, Pkts: 2, Bytes: 120, FwdPkts: 1,
		TcpFlags: 0x12, Obs: bpf.ObsFromPod, Ifindex: 3, IsReply: 1})
	rev := bpf.FlowKey{Saddr: mapped("10.42.1.5"), Daddr: mapped("10.42.0.11"), Sport: 7, Dport: 8<<8 | 0, Proto: protoICMP, Family: 4}
	fx.put(rev, bpf.FlowStats{LastNs: 99 * sec, DropPkts: 1, DropBytes: 84, DropReason: 12, DropIfindex: 9, Obs: bpf.ObsToPod})

	evs := fx.flush(false)
	require.Len(t, evs, 2)
	f := evs[1].FlowProto() // sorted by sport: the ICMP key (7) first
	if f.L4.GetTcp() == nil {
		f = evs[0].FlowProto()
	}
	assert.Equal(t, "node-1", f.NodeName)
	assert.Equal(t, "10.42.0.10", f.Ip.Source)
	assert.Equal(t, flowlensv1.IPVersion_IPV4, f.Ip.IpVersion)
	assert.Equal(t, uint32(40000), f.L4.GetTcp().SourcePort)
	assert.Equal(t, flowlensv1.TrafficDirection_EGRESS, f.TrafficDirection)
	assert.Equal(t, flowlensv1.ObservationPoint_FROM_POD, f.ObservationPoint)
	assert.Equal(t, "vethaaaa", f.Interface.Name)
	assert.True(t, f.IsReply)
	assert.True(t, f.TcpFlags.SYN && f.TcpFlags.ACK && !f.TcpFlags.FIN)
	assert.Equal(t, int64(1_000_099), f.Time.Seconds, "monotonic converted to wall clock")
	assert.Equal(t, int64(1_000_090), f.Counters.FirstSeen.Seconds)
	assert.Equal(t, "01020304-0506-0708-090a-0b0c0d0e0f10", f.Uuid)

	d := evs[0].FlowProto()
	if d.L4.GetIcmpv4() == nil {
		d = evs[1].FlowProto()
	}
	assert.Equal(t, drop, d.Verdict)
	assert.Equal(t, "NETFILTER_DROP", d.DropReason)
	assert.Equal(t, flowlensv1.ObservationPoint_KFREE_SKB, d.ObservationPoint)
	assert.Equal(t, flowlensv1.TrafficDirection_INGRESS, d.TrafficDirection)
	assert.Equal(t, "cni0", d.Interface.Name)
	assert.Equal(t, uint32(8), d.L4.GetIcmpv4().Type)
	assert.Equal(t, uint32(0), d.L4.GetIcmpv4().Code)
}

func TestReporterIdleFlowsRemoved(t *testing.T) {
	fx := newFixture(t, false, 100)
	k := tcpKey(1)
	fx.put(k, bpf.FlowStats{Pkts: 1, FwdPkts: 1, Obs: bpf.ObsFromPod, LastNs: fx.mono})
	assert.Len(t, recs(fx.flush(false)), 1)
	fx.put(k, bpf.FlowStats{Pkts: 3, FwdPkts: 3, Obs: bpf.ObsFromPod, LastNs: fx.mono})
	fx.mono += 2 * uint64(time.Minute)
	assert.Equal(t, []rec{{fwd, 2, 0}}, recs(fx.flush(false)), "the remainder is reported first")
	assert.Equal(t, []bpf.FlowKey{k}, fx.table.deleted)
	assert.Zero(t, fx.rep.agg.flows.len())
}

func TestReporterLoss(t *testing.T) {
	fx := newFixture(t, false, 1)
	before := losttest.Scrape(t, fx.reg)
	for i := uint16(1); i <= 3; i++ {
		fx.put(tcpKey(i), bpf.FlowStats{Pkts: 1, FwdPkts: 1, Obs: bpf.ObsFromPod})
	}
	fx.table.created += 4 // created and evicted before any read
	fx.table.ringbufLost = 2
	evs := fx.flush(false)
	require.Len(t, evs, 1, "out holds one event; the rest are lost")

	lost := map[flowlensv1.LostEventSource]uint64{}
	collect := func(evs []Event) {
		for _, ev := range evs {
			if ev.Lost != nil {
				lost[ev.Lost.Source] += ev.Lost.NumEventsLost
			}
		}
	}
	// Each later flush has room for one Lost event at a time.
	for range 4 {
		collect(fx.flush(false))
	}
	assert.Equal(t, uint64(4), lost[flowlensv1.LostEventSource_KERNEL_FLOW_TABLE])
	assert.Equal(t, uint64(2), lost[flowlensv1.LostEventSource_KERNEL_RING_BUFFER])
	assert.Equal(t, uint64(2), lost[flowlensv1.LostEventSource_AGENT_QUEUE])

	want := `# HELP flowlens_lost_events_total Flow events lost before delivery, by where they were lost.
# TYPE flowlens_lost_events_total counter
flowlens_lost_events_total{source="AGENT_QUEUE"} 2
flowlens_lost_events_total{source="CLIENT_QUEUE"} 0
flowlens_lost_events_total{source="KERNEL_FLOW_TABLE"} 4
flowlens_lost_events_total{source="KERNEL_RING_BUFFER"} 2
`
	assert.NoError(t, testutil.GatherAndCompare(fx.reg, strings.NewReader(want), "flowlens_lost_events_total"))
	// Each kind of loss here fires the alert; none fires before.
	losttest.AssertAlertFires(t, before, losttest.Scrape(t, fx.reg), "AGENT_QUEUE", "KERNEL_FLOW_TABLE", "KERNEL_RING_BUFFER")
}

func TestReporterImmediateDrop(t *testing.T) {
	fx := newFixture(t, false, 10)
	k := tcpKey(9)
	st := bpf.FlowStats{Pkts: 1, DropPkts: 1, DropBytes: 60, DropReason: 12, Obs: bpf.ObsFromPod, LastNs: fx.mono}
	fx.put(k, st)
	fx.rep.reportDrop(&bpf.DropEvent{Key: k, Stats: st})
	require.Equal(t, []rec{{drop, 1, 60}}, recs(fx.flush(false)[:1]))
	assert.Empty(t, recs(fx.flush(false)), "the flush does not report the drop again")
}

// A drop event of a drop counted before a flush began is not reported
// again, even once that flush deleted the flow as idle and forgot it.
func TestReporterDropEventBeforeFlush(t *testing.T) {
	fx := newFixture(t, false, 10)
	k := tcpKey(9)
	st := bpf.FlowStats{Pkts: 1, DropPkts: 1, DropBytes: 60, DropReason: 12, Obs: bpf.ObsFromPod, LastNs: fx.mono}
	fx.put(k, st)
	fx.mono += 2 * uint64(time.Minute) // idle: reported, deleted, forgotten
	require.Equal(t, []rec{{drop, 1, 60}}, recs(fx.flush(false)))
	require.Equal(t, []bpf.FlowKey{k}, fx.table.deleted)
	fx.rep.reportDrop(&bpf.DropEvent{Key: k, Stats: st})
	assert.Empty(t, fx.out, "the flush reported it")
}

// A drop event is read after a flush that already saw newer counters of
// its flow (it waited in the channel): it reports nothing, and the drops
// are counted once.
func TestReporterStaleDropEvent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		event  bpf.FlowStats
		want   []rec
		reason string
	}{
		{"older", bpf.FlowStats{Pkts: 1, DropPkts: 1, DropBytes: 60}, nil, "the flush counted it already"},
		{"same", bpf.FlowStats{Pkts: 3, DropPkts: 3, DropBytes: 180}, nil, "nothing new"},
		{"newer", bpf.FlowStats{Pkts: 4, DropPkts: 4, DropBytes: 240}, []rec{{drop, 1, 60}}, "the one drop since the flush"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, false, 10)
			k := tcpKey(9)
			fx.put(k, bpf.FlowStats{Pkts: 3, DropPkts: 3, DropBytes: 180, DropReason: 12, Obs: bpf.ObsFromPod})
			require.Equal(t, []rec{{drop, 3, 180}}, recs(fx.flush(false)))
			ev := bpf.DropEvent{Key: k, Stats: tc.event}
			ev.Stats.DropReason, ev.Stats.Obs, ev.Stats.LastNs = 12, bpf.ObsFromPod, fx.mono
			fx.rep.reportDrop(&ev)
			var got []Event
			for len(fx.out) > 0 {
				got = append(got, <-fx.out)
			}
			assert.Equal(t, tc.want, recs(got), tc.reason)
		})
	}
}

// corruptTable yields one entry that does not decode before the real ones.
type corruptTable struct{ *fakeTable }

func (c corruptTable) IterateFlows(fn func(key, val []byte)) error {
	fn([]byte{1, 2, 3}, rawStats(bpf.FlowStats{}))
	return c.fakeTable.IterateFlows(fn)
}

// Failed reads of the kernel side are counted, not dropped on the floor,
// and the entries that do read are still reported.
func TestReporterCountsReadErrors(t *testing.T) {
	fx := newFixture(t, false, 10)
	fx.rep.table = corruptTable{fx.table}
	fx.put(tcpKey(1), bpf.FlowStats{Pkts: 1, FwdPkts: 1, Obs: bpf.ObsFromPod})
	assert.Equal(t, []rec{{fwd, 1, 0}}, recs(fx.flush(false)))

	want := `# HELP flowlens_errors_total Failed reads of the kernel's flow table and counters, by kind; the next flush retries them.
# TYPE flowlens_errors_total counter
flowlens_errors_total{kind="counters"} 0
flowlens_errors_total{kind="decode"} 1
flowlens_errors_total{kind="delete"} 0
flowlens_errors_total{kind="iterate"} 0
`
	assert.NoError(t, testutil.GatherAndCompare(fx.reg, strings.NewReader(want), "flowlens_errors_total"))
}

func BenchmarkObserve(b *testing.B) {
	agg := newAggregator("n", false, time.Minute, bpf.DropReasons{}.Name, nil, 0)
	agg.newUUID = func() [16]byte { return [16]byte{} }
	keys := make([]bpf.FlowKey, 1024)
	for i := range keys {
		keys[i] = tcpKey(uint16(i))
	}
	st := bpf.FlowStats{FwdPkts: 1, Obs: bpf.ObsFromPod}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st.Pkts++ // every observation yields one FORWARDED record
		st.LastNs = uint64(i)
		agg.observe(&keys[i%len(keys)], &st, uint64(i), false)
	}
}

func TestReporterServiceTranslation(t *testing.T) {
	fx := newFixture(t, false, 10)
	k := bpf.FlowKey{Saddr: mapped("10.42.0.10"), Daddr: mapped("10.43.0.10"), Sport: 5000, Dport: 53, Proto: protoUDP, Family: 4}
	fx.put(k, bpf.FlowStats{Pkts: 1, FwdPkts: 1, Obs: bpf.ObsFromPod, Xlat: 1, XlatDaddr: mapped("10.42.0.11"), XlatDport: 5353})
	evs := fx.flush(false)
	require.Len(t, evs, 1)
	f := evs[0].FlowProto()
	assert.Equal(t, "10.42.0.11", f.Ip.Destination, "the backend the packets reached")
	assert.Equal(t, "10.43.0.10", f.Ip.DestinationOriginal, "the ClusterIP the pod sent to")
	assert.Equal(t, uint32(5353), f.L4.GetUdp().DestinationPort)
	assert.Equal(t, uint32(5000), f.L4.GetUdp().SourcePort)
}

// Any key the kernel could hand over yields a record without panicking.
func FuzzRecord(f *testing.F) {
	f.Add(rawKey(bpf.FlowKey{Family: 4, Proto: protoTCP}))
	f.Add(rawKey(bpf.FlowKey{Family: 6, Proto: protoICMPv6, Dport: 128 << 8}))
	agg := newAggregator("n", true, time.Minute, bpf.DropReasons{}.Name, nil, 0)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var k bpf.FlowKey
		if bpf.DecodeFlowKey(raw, &k) != nil {
			return
		}
		st := bpf.FlowStats{Pkts: 1, DropPkts: 1, Obs: bpf.ObsFromPod, Xlat: 1}
		for _, v := range []flowlensv1.Verdict{fwd, drop} {
			if r := agg.record(&k, &st, v, 1, 1); r.Proto().Ip == nil {
				t.Fatal("record without addresses")
			}
		}
	})
}

// A flush far larger than the queue waits for the pipeline to make room
// (up to its patience) instead of losing what does not fit at once; a
// pipeline that does not drain in time still costs counted loss, not a
// stalled capture.
func TestReporterFlushWaitsForRoom(t *testing.T) {
	tests := []struct {
		name     string
		patience time.Duration
		drain    bool
		wantLost uint64
	}{
		{name: "pipeline drains: nothing lost", patience: 5 * time.Second, drain: true, wantLost: 0},
		{name: "no patience: what does not fit is lost", patience: 0, drain: true, wantLost: 96},
		{name: "pipeline stuck: lost after the patience", patience: 50 * time.Millisecond, drain: false, wantLost: 96},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, false, 4)
			fx.rep.patience = tt.patience
			for i := uint16(1); i <= 100; i++ {
				fx.put(tcpKey(i), bpf.FlowStats{Pkts: 1, FwdPkts: 1, Obs: bpf.ObsFromPod})
			}
			got := make(chan int)
			stop := make(chan struct{})
			go func() {
				n := 0
				if tt.drain {
					// Slower than the reporter, as the pipeline is; without
					// patience the reporter is done before it starts.
					time.Sleep(10 * time.Millisecond)
					for {
						select {
						case ev := <-fx.out:
							if ev.Lost == nil {
								n++
							}
							time.Sleep(100 * time.Microsecond)
							continue
						case <-stop:
						}
						break
					}
				}
				got <- n
			}()
			start := time.Now()
			fx.rep.flush(false)
			took := time.Since(start)
			if tt.drain {
				time.Sleep(50 * time.Millisecond)
			}
			close(stop)
			n := <-got
			if !tt.drain {
				n = len(recs(fx.flush(false))) // what sits in out
				assert.GreaterOrEqual(t, took, tt.patience, "waited for room first")
			}
			assert.Equal(t, float64(tt.wantLost), losttest.Scrape(t, fx.reg)["AGENT_QUEUE"])
			if tt.drain {
				assert.Equal(t, 100-int(tt.wantLost), n, "records the pipeline received")
			}
		})
	}
}
