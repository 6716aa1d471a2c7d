package bpf

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/lab/netns"
)

// Packets of the flow a CPU counted last wait in its hot slot (maps.h) and
// reach the flow table within the flush delay, with no further packet to
// push them: after a burst and a pause, the flow holds every datagram, once.
// A second flow's burst in between makes the first flush at once.
func TestHotSlotPacketsReachFlow(t *testing.T) {
	requireRoot(t)
	br := newBridge(t, 2)
	var c *Capture
	require.NoError(t, netns.Do(br.Node.NetNS, func() error {
		var err error
		c, err = New(Config{FlushInterval: time.Second}, testLogger(t), prometheus.NewRegistry())
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, make(chan DropEvent, 1024)) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool { return c.Status()[StatusInterfaces] == "2" }, 10*time.Second, 10*time.Millisecond)

	src, dst := br.Pods[0], br.Pods[1]
	// Unconnected: no server listens, and the port unreachable replies
	// must not fail the writes.
	send := func(t *testing.T, sport, n int) {
		require.NoError(t, netns.Do(src.NetNS, func() error {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src.IP.AsSlice(), Port: sport})
			if err != nil {
				return err
			}
			defer conn.Close()
			for range n {
				if _, err := conn.WriteToUDP([]byte("hot"), &net.UDPAddr{IP: dst.IP.AsSlice(), Port: 5353}); err != nil {
					return err
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
		name        string
		sport, n    int
		interleaved int // a second flow's burst right after, from this port
	}{
		{name: "a burst alone", sport: 40001, n: 37},
		{name: "then another flow", sport: 40002, n: 41, interleaved: 40003},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send(t, tc.sport, tc.n)
			if tc.interleaved != 0 {
				send(t, tc.interleaved, 1)
			}
			time.Sleep(5 * PendingDelay) // well past the flush delay
			assert.EqualValues(t, tc.n, pkts(tc.sport))
			if tc.interleaved != 0 {
				assert.EqualValues(t, 1, pkts(tc.interleaved))
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
