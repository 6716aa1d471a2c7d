package bpf

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/lab/netns"
)

// Packets of the flows a CPU counted last wait in its hot slot (maps.h) and
// reach the flow table within the flush delay, with no further packet to
// push them: after a burst and a pause, the flow holds every datagram, once.
// Other flows' packets in between (the slot's two entries taken in turn,
// evicting each other) lose none and count none twice.
func TestHotSlotPacketsReachFlow(t *testing.T) {
	requireRoot(t)
	br, c := slotBridge(t)

	src, dst := br.Pods[0], br.Pods[1]
	// send writes n datagrams from each of sports, in turns (one from each
	// port, then again). Unconnected: no server listens, and the port
	// unreachable replies must not fail the writes.
	send := func(t *testing.T, sports []int, n int) {
		require.NoError(t, netns.Do(src.NetNS, func() error {
			conns := make([]*net.UDPConn, len(sports))
			for i, sport := range sports {
				conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src.IP.AsSlice(), Port: sport})
				if err != nil {
					return err
				}
				defer conn.Close()
				conns[i] = conn
			}
			for range n {
				for _, conn := range conns {
					if _, err := conn.WriteToUDP([]byte("hot"), &net.UDPAddr{IP: dst.IP.AsSlice(), Port: 5353}); err != nil {
						return err
					}
				}
			}
			return nil
		}))
	}
	key := func(sport int) *FlowKey {
		k := &FlowKey{Sport: uint16(sport), Dport: 5353, Proto: unix.IPPROTO_UDP, Family: 4}
		k.Saddr, k.Daddr = netip16(src.IP.As4()), netip16(dst.IP.As4())
		return k
	}
	pkts := func(sport int) uint64 {
		var st FlowStats
		if err := c.LookupFlow(key(sport), &st); err != nil {
			return 0
		}
		return st.Pkts
	}

	for _, tc := range []struct {
		name   string
		bursts [][]int // each burst's source ports, sent in turns
		n      int     // datagrams from each port of a burst
	}{
		{name: "a burst alone", bursts: [][]int{{40001}}, n: 37},
		{name: "then another flow", bursts: [][]int{{40002}, {40003}}, n: 41},
		{name: "two flows in turns", bursts: [][]int{{40004, 40005}}, n: 43},
		{name: "three flows in turns", bursts: [][]int{{40006, 40007, 40008}}, n: 29},
		{name: "two flows, then a third", bursts: [][]int{{40009, 40010}, {40011}}, n: 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ports := range tc.bursts {
				send(t, ports, tc.n)
			}
			time.Sleep(5 * PendingDelay) // well past the flush delay
			for _, ports := range tc.bursts {
				for _, sport := range ports {
					assert.EqualValues(t, tc.n, pkts(sport), "from port %d", sport)
				}
			}
		})
	}
}

// slotBridge is a node with two pods on a bridge, both veths captured.
func slotBridge(t *testing.T) (*netns.Bridge, *Capture) {
	t.Helper()
	br := newBridge(t, 2)
	c := watchCapture(t, br.Node.NetNS, Config{FlushInterval: time.Second}, testLogger(t), make(chan DropEvent, 1024))
	require.Eventually(t, func() bool { return c.Status()[StatusInterfaces] == "2" }, 10*time.Second, 10*time.Millisecond)
	return br, c
}

// netip16 is an IPv4 address v4-mapped, as flow keys hold it.
func netip16(a [4]byte) [16]byte {
	var k [16]byte
	k[10], k[11] = 0xff, 0xff
	copy(k[12:], a[:])
	return k
}

// tickSlack bounds how far a flow's times may lag the packet: the coarse
// clock moves once per tick (10 ms at the lowest common HZ, 100), and
// coarse_now (hotslot.h) may serve the tick before for one more.
const tickSlack = 20 * time.Millisecond

// A flow's first and last times are the clock at its first and last packet,
// to the coarse clock's resolution: tc_from_pod reads the clock once per
// tick and CPU (coarse_now), and a packet of a later tick must never carry
// an earlier one's time, also when it only waits in the hot slot.
func TestFlowTimesFollowTheClock(t *testing.T) {
	requireRoot(t)
	br, c := slotBridge(t)

	src, dst := br.Pods[0], br.Pods[1]
	const sport = 40100
	// burst sends n datagrams of one flow and returns the monotonic clock
	// just before the first and just after the last.
	burst := func(n int) (before, after uint64) {
		require.NoError(t, netns.Do(src.NetNS, func() error {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src.IP.AsSlice(), Port: sport})
			if err != nil {
				return err
			}
			defer conn.Close()
			before = monotonicNs(t)
			for range n {
				if _, err := conn.WriteToUDP([]byte("tick"), &net.UDPAddr{IP: dst.IP.AsSlice(), Port: 5353}); err != nil {
					return err
				}
			}
			after = monotonicNs(t)
			return nil
		}))
		return before, after
	}

	firstFrom, firstTo := burst(50)
	// Several ticks apart, so a time cached from the first burst's tick
	// would show.
	time.Sleep(200 * time.Millisecond)
	lastFrom, lastTo := burst(50)
	time.Sleep(5 * PendingDelay) // the slot's packets reach the flow

	k := &FlowKey{Sport: sport, Dport: 5353, Proto: unix.IPPROTO_UDP, Family: 4}
	k.Saddr, k.Daddr = netip16(src.IP.As4()), netip16(dst.IP.As4())
	var st FlowStats
	require.NoError(t, c.LookupFlow(k, &st))
	require.EqualValues(t, 100, st.Pkts)
	slack := uint64(tickSlack)
	assert.GreaterOrEqual(t, st.FirstNs, firstFrom-slack, "first time before the first packet")
	assert.LessOrEqual(t, st.FirstNs, firstTo, "first time after the first burst")
	assert.GreaterOrEqual(t, st.LastNs, lastFrom-slack, "last time before the last burst: a stale clock")
	assert.LessOrEqual(t, st.LastNs, lastTo, "last time after the last packet")
}

func monotonicNs(t *testing.T) uint64 {
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
	return uint64(ts.Nano())
}
