package aggregate

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/lab/traffic"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// synFlood sends about n SYNs from client to server:port over 200 ms (the
// lab's raw-socket flood, at most sports source ports) and returns how
// many left: fewer when the machine is slow, never none.
func synFlood(t *testing.T, client, server *testPod, port uint16, n, sports int) uint64 {
	t.Helper()
	const over = 200 * time.Millisecond
	f := traffic.SYNFlood{
		From: traffic.Endpoint{NetNS: client.ns, IP: mustAddr(t, client.ip)},
		To:   netip.AddrPortFrom(mustAddr(t, server.ip), port), Ports: 1, SourcePorts: sports,
		Rate: int(float64(n) / over.Seconds()), Duration: over,
	}
	for range 5 {
		res, err := f.Run(context.Background())
		require.NoError(t, err)
		if res.Sent > 0 {
			return res.Sent
		}
	}
	t.Fatal("the flood sent nothing five times")
	return 0
}

// kernelAttempts reads the flow table: the attempts aggregate of client to
// server:port (nil when absent) and how many entries of that pair and port
// have a source port of their own.
func kernelAttempts(t *testing.T, c *bpf.Capture, client, server *testPod, port uint16) (agg *bpf.FlowStats, own int) {
	t.Helper()
	src, dst := mustAddr(t, client.ip), mustAddr(t, server.ip)
	require.NoError(t, c.IterateFlows(func(rawKey, rawVal []byte) {
		var k bpf.FlowKey
		var st bpf.FlowStats
		require.NoError(t, bpf.DecodeFlowKey(rawKey, &k))
		require.NoError(t, bpf.DecodeFlowStats(rawVal, &st))
		s, d := k.Addrs()
		if s != src || d != dst || k.Proto != protoTCP || k.Dport != port {
			return
		}
		if k.Flags&bpf.FlowKeyAttempts != 0 {
			assert.Zero(t, k.Sport, "an aggregate has no source port")
			agg = &st
			return
		}
		own++
	}))
	return agg, own
}

// Dropped connection attempts (SYN without ACK) are folded in the kernel
// into one flow per source, destination and port: every SYN counted once,
// in the aggregate, and no flow of their own left behind; an accepted SYN
// keeps its connection's flow.
func TestConnectionAttemptsFolded(t *testing.T) {
	requireRoot(t)
	tn := newTestNode(t, "10.42.0", 2)
	tn.exec("iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "9", "-j", "REJECT")
	tn.exec("iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "10", "-j", "DROP")
	a, b := tn.pods[0], tn.pods[1]
	rc := startCapture(t, tn, bpf.Config{})

	sentTo := map[uint32]uint64{}
	for _, tc := range []struct {
		name   string
		port   uint16
		sports int // source ports the SYNs cycle through
		n      int
	}{
		{"flood of distinct source ports, rejected", 9, 0, 2000},
		{"one client retrying, dropped", 10, 1, 50},
		{"a few clients retrying, rejected", 9, 3, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agg0, _ := kernelAttempts(t, rc.c, a, b, tc.port)
			var before uint64
			if agg0 != nil {
				before = agg0.DropPkts
			}
			sent := synFlood(t, a, b, tc.port, tc.n, tc.sports)
			sentTo[uint32(tc.port)] += sent
			var agg *bpf.FlowStats
			var own int
			require.Eventually(t, func() bool {
				agg, own = kernelAttempts(t, rc.c, a, b, tc.port)
				return agg != nil && agg.DropPkts-before == sent
			}, 5*time.Second, 20*time.Millisecond, "every SYN counted in the aggregate")
			assert.Zero(t, own, "no attempt left a flow of its own")
			assert.Equal(t, agg.DropPkts, agg.Pkts, "what the pod sent is what was dropped: nothing held as forwarded")
			assert.Zero(t, agg.FwdPkts)
			assert.EqualValues(t, 0x02, agg.TcpFlags, "SYN")
			assert.EqualValues(t, bpf.ObsFromPod, agg.Obs)
		})
	}

	// An accepted connection is untouched: its own flow, its source port.
	tcpPort := tcpExchange(t, a, b, 8080, []byte("hello"))
	evs := rc.stop(t)
	fwd := flowsFor(evs, a.ip, b.ip, protoTCP, uint32(tcpPort), 8080)
	require.NotEmpty(t, byVerdict(fwd, flowlensv1.Verdict_FORWARDED))
	assert.Empty(t, byVerdict(fwd, flowlensv1.Verdict_DROPPED))
	assert.Empty(t, flowsFor(evs, a.ip, b.ip, protoTCP, 0, 8080), "no aggregate for an accepted SYN")
	for _, f := range fwd {
		assert.Zero(t, f.AggregatedAttempts)
	}
	// The records: each SYN once, all in the aggregates (source port 0).
	for port, sent := range sentTo {
		rej := flowsFor(evs, a.ip, b.ip, protoTCP, 0, port)
		assert.Empty(t, byVerdict(rej, flowlensv1.Verdict_FORWARDED))
		pkts, _ := sumPackets(byVerdict(rej, flowlensv1.Verdict_DROPPED))
		assert.Equal(t, sent, pkts, "port %d", port)
		for _, f := range rej {
			assert.Equal(t, f.Counters.GetPackets(), f.AggregatedAttempts)
		}
		assert.Zero(t, ownSourcePort(evs, a, b, port), "port %d: no attempt reported under its own source port", port)
	}
}

// ownSourcePort counts the TCP records of client to server:port that have
// a source port.
func ownSourcePort(evs []Event, client, server *testPod, port uint32) int {
	n := 0
	for _, ev := range evs {
		f := ev.FlowProto()
		if f != nil && f.Ip.GetSource() == client.ip && f.Ip.GetDestination() == server.ip &&
			f.L4.GetTcp().GetDestinationPort() == port && f.L4.GetTcp().GetSourcePort() != 0 {
			n++
		}
	}
	return n
}

// The fold against flushes every 100 ms (and idle deletes as often), with
// accepted packets confirmed where they leave, by the netfilter link or
// inferred: the records
// count each dropped SYN exactly once, none FORWARDED, none lost.
func TestConnectionAttemptsExactUnderFlushes(t *testing.T) {
	requireRoot(t)
	for _, mode := range []bpf.AcceptedMode{bpf.AcceptedEgress, bpf.AcceptedNetfilter, bpf.AcceptedInference} {
		t.Run(string(mode), func(t *testing.T) {
			tn := newTestNode(t, "10.42.0", 2)
			tn.exec("iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "9", "-j", "REJECT")
			a, b := tn.pods[0], tn.pods[1]
			rc := startCapture(t, tn, bpf.Config{Accepted: mode, FlushInterval: bpf.MinFlushInterval, IdleTimeout: bpf.MinFlushInterval})
			var sent uint64
			for range 3 {
				sent += synFlood(t, a, b, 9, 10000, 0)
			}
			time.Sleep(3 * bpf.MinFlushInterval)
			evs := rc.stop(t)

			lost := 0
			for _, ev := range evs {
				if ev.Lost != nil {
					lost += int(ev.Lost.NumEventsLost)
				}
			}
			rej := flowsFor(evs, a.ip, b.ip, protoTCP, 0, 9)
			pkts, _ := sumPackets(byVerdict(rej, flowlensv1.Verdict_DROPPED))
			assert.Equal(t, sent, pkts, "each SYN counted once")
			assert.Empty(t, byVerdict(rej, flowlensv1.Verdict_FORWARDED))
			assert.Zero(t, ownSourcePort(evs, a, b, 9), "no attempt reported under its own source port")
			assert.Zero(t, lost, "nothing lost")
			t.Logf("%d SYNs, %d DROPPED records summing %d", sent, len(byVerdict(rej, flowlensv1.Verdict_DROPPED)), pkts)
		})
	}
}
