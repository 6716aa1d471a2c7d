package bpf

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/netns"
)

// The drop ring is as large as the configuration says: the default that
// maps.h declares, and the smallest the kernel takes (one page).
func TestDropRingSizedFromConfig(t *testing.T) {
	requireRoot(t)
	ns := nodeNetns(t)
	for _, size := range []int{0, os.Getpagesize(), 1 << 20} {
		want := size
		if want == 0 {
			want = DefaultDropRingSize
		}
		var c *Capture
		require.NoError(t, netns.Do(ns, func() error {
			var err error
			c, err = New(Config{NodeName: "n", DropRingSize: size}, testLogger(t), prometheus.NewRegistry())
			return err
		}))
		assert.EqualValues(t, want, c.objs.DropEvents.MaxEntries(), "configured %d", size)
		require.NoError(t, c.Close())
	}
}

// A drop storm far larger than a one-page drop ring, with nothing reading
// the ring meanwhile (an agent that cannot be scheduled): every first drop
// of a flow is either a ring event or counted in ringbuf_lost, never
// neither, and every dropped flow is in the flow table for the next flush.
func TestDropStormCountedNeverSilent(t *testing.T) {
	requireRoot(t)
	const flows, basePort = 2000, 20000
	br := newBridge(t, 2)
	src, dst := br.Pods[0], br.Pods[1]
	out, err := exec.Command("ip", "netns", "exec", br.Node.NetNS, "iptables", "-A", "FORWARD", "-p", "udp",
		"--dport", "20000:21999", "-j", "DROP").CombinedOutput()
	require.NoError(t, err, "%s", out)

	var c *Capture
	require.NoError(t, netns.Do(br.Node.NetNS, func() error {
		var err error
		if c, err = New(Config{NodeName: "n", DropRingSize: os.Getpagesize()}, testLogger(t), prometheus.NewRegistry()); err != nil {
			return err
		}
		return c.attachGlobal()
	}))
	defer c.close()
	require.Equal(t, "tp_btf/kfree_skb", c.Status()[StatusDrops])

	require.NoError(t, netns.Do(src.NetNS, func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src.IP.AsSlice()})
		if err != nil {
			return err
		}
		defer conn.Close()
		for i := range flows {
			if _, err := conn.WriteToUDP([]byte("storm"), &net.UDPAddr{IP: dst.IP.AsSlice(), Port: basePort + i}); err != nil {
				return err
			}
		}
		return nil
	}))

	events, ours := drainDropRing(t, c, func(k *FlowKey) bool { return k.Dport >= basePort && k.Dport < basePort+flows })
	_, lost, err := c.Counters()
	require.NoError(t, err)
	dropped, droppedOurs := 0, 0
	require.NoError(t, c.IterateFlows(func(rawKey, rawVal []byte) {
		var k FlowKey
		var st FlowStats
		require.NoError(t, DecodeFlowKey(rawKey, &k))
		require.NoError(t, DecodeFlowStats(rawVal, &st))
		if st.DropPkts == 0 {
			return
		}
		dropped++
		if k.Dport >= basePort && k.Dport < basePort+flows {
			droppedOurs++
			assert.EqualValues(t, 1, st.DropPkts)
		}
	}))
	assert.Equal(t, flows, droppedOurs, "every dropped flow is in the table")
	assert.EqualValues(t, dropped, uint64(events)+lost, "each first drop is an event or counted lost")
	assert.Positive(t, lost, "the storm overflowed the one-page ring")
	maxEvents := os.Getpagesize() / (dropEventSize + 8) // 8-byte record header
	assert.LessOrEqual(t, events, maxEvents)
	t.Logf("%d flows dropped into a %d-byte ring: %d events delivered (%d of the storm), %d counted lost (ringbuf_lost); %d + %d = %d flows with drops in the table",
		flows, os.Getpagesize(), events, ours, lost, events, lost, dropped)
}

// drainDropRing reads what the ring holds; ours counts the events whose key
// satisfies mine.
func drainDropRing(t *testing.T, c *Capture, mine func(*FlowKey) bool) (events, ours int) {
	t.Helper()
	rd, err := ringbuf.NewReader(c.objs.DropEvents)
	require.NoError(t, err)
	defer rd.Close()
	rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
	var ev DropEvent
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return events, ours
		}
		require.NoError(t, err)
		require.NoError(t, DecodeDropEvent(rec.RawSample, &ev))
		events++
		if mine(&ev.Key) {
			ours++
		}
	}
}

// A flow's first drop reaches the reader both ways it reads: an idle
// reader (no record for a read interval) sleeps with no timer and
// kfree_skb wakes it; right after, while it reads on its timer, kfree_skb
// does not wake it for a ring that is nearly empty (BPF_RB_NO_WAKEUP) and
// the timer reads the record. Each event carries the flow's counters: one
// packet dropped, its reason.
func TestFirstDropEventIdleAndOnTimer(t *testing.T) {
	requireRoot(t)
	br := newBridge(t, 2)
	src, dst := br.Pods[0], br.Pods[1]
	out, err := exec.Command("ip", "netns", "exec", br.Node.NetNS, "iptables", "-A", "FORWARD", "-p", "udp",
		"--dport", "20998:20999", "-j", "DROP").CombinedOutput()
	require.NoError(t, err, "%s", out)
	drops := make(chan DropEvent, 16)
	c := watchCapture(t, br.Node.NetNS, Config{NodeName: "n"}, testLogger(t), drops)
	require.Eventually(t, func() bool { return c.Ready() == nil }, 10*time.Second, 10*time.Millisecond)

	readerIdle := func() bool {
		var v uint64
		require.NoError(t, c.objs.DropReaderIdle.Get(&v))
		return v == 1
	}
	// Other drops in the lab's namespaces (none expected) keep it awake.
	require.Eventually(t, readerIdle, 5*time.Second, 10*time.Millisecond, "the reader goes idle")
	time.Sleep(3 * dropReadInterval) // long past any deadline it could still have had
	require.True(t, readerIdle())

	for i, port := range []int{20999, 20998} {
		sent := time.Now()
		require.NoError(t, netns.Do(src.NetNS, func() error {
			conn, err := net.Dial("udp4", net.JoinHostPort(dst.IP.String(), strconv.Itoa(port)))
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = conn.Write([]byte("first"))
			return err
		}))
		select {
		case ev := <-drops:
			took := time.Since(sent)
			t.Logf("first drop event of port %d after %v (reader %s)", port, took, []string{"idle: woken", "on its timer"}[i])
			assert.Less(t, took, 5*dropReadInterval)
			assert.EqualValues(t, port, ev.Key.Dport)
			assert.EqualValues(t, 1, ev.Stats.DropPkts)
			assert.EqualValues(t, 1, ev.Stats.Pkts, "counted at the veth")
			assert.Equal(t, "NETFILTER_DROP", c.DropReason(ev.Stats.DropReason))
		case <-time.After(2 * time.Second):
			// The first: no timer would ever have read it.
			t.Fatalf("no drop event for port %d within 2s", port)
		}
		if i == 0 {
			assert.False(t, readerIdle(), "awake after the event: the next drop waits for its timer")
		}
	}
}
