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
	br := newBridge(t, 2)
	c := watchCapture(t, br.Node.NetNS, Config{FlushInterval: time.Second}, testLogger(t), make(chan DropEvent, 1024))
	require.Eventually(t, func() bool { return c.Status()[StatusInterfaces] == "2" }, 10*time.Second, 10*time.Millisecond)

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

// netip16 is an IPv4 address v4-mapped, as flow keys hold it.
func netip16(a [4]byte) [16]byte {
	var k [16]byte
	k[10], k[11] = 0xff, 0xff
	copy(k[12:], a[:])
	return k
}
