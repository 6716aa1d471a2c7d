package e2e

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/netns"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// dropRingSlots is how many drop events a ring of size bytes holds: each
// is a 48-byte struct drop_event behind an 8-byte record header.
func dropRingSlots(size int) int { return size / (48 + 8) }

// TestDropRingStorm runs the agent with the smallest drop ring (one page)
// and sends a storm of 2,000 distinct flows that the lab's policies
// reject, while the agent is stopped (SIGSTOP, as on a node too busy to
// schedule it), so the ring overflows. Counted, never silent: every flow
// of the storm comes out as a DROPPED record with its one packet, and what
// the ring could not hold is reported as KERNEL_RING_BUFFER loss, the same
// in the status and the metric.
func TestDropRingStorm(t *testing.T) {
	const flows, basePort = 2000, 20000
	page := os.Getpagesize()
	l := startLab(t, 1)
	a := startAgent(t, l, "node1", "--drop-ring-size", strconv.Itoa(page))
	fe := l.Pod("demo/frontend")
	_, db := podAddr(t, l, "demo/db", basePort)
	storm := func(f *flowlensv1.Flow) bool {
		dp := f.GetL4().GetUdp().GetDestinationPort()
		return f.GetIp().GetSource() == fe.IP.String() && f.GetIp().GetDestination() == db.Addr().String() &&
			dp >= basePort && dp < basePort+flows
	}
	require.Zero(t, a.statusLost(flowlensv1.LostEventSource_KERNEL_RING_BUFFER), "no loss before the storm")

	require.NoError(t, a.cmd.Process.Signal(syscall.SIGSTOP))
	stopped := true
	defer func() {
		if stopped {
			_ = a.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	start := time.Now()
	require.NoError(t, netns.Do(fe.NetNS, func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: fe.IP.AsSlice()})
		if err != nil {
			return err
		}
		defer conn.Close()
		for i := range flows {
			if _, err := conn.WriteToUDP([]byte("storm"), &net.UDPAddr{IP: db.Addr().AsSlice(), Port: basePort + i}); err != nil {
				return err
			}
		}
		return nil
	}))
	took := time.Since(start)
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
	stopped = false

	a.waitFor("a DROPPED record for every flow of the storm", 15*time.Second, func() bool {
		return len(distinctPorts(a.match(and(storm, verdict(flowlensv1.Verdict_DROPPED))))) == flows
	})
	dropped := a.match(and(storm, verdict(flowlensv1.Verdict_DROPPED)))
	pk, _ := sum(dropped)
	assert.EqualValues(t, flows, pk, "each flow's one packet, counted once")
	assert.Empty(t, a.match(and(storm, verdict(flowlensv1.Verdict_FORWARDED))), "the policies reject the storm")

	lost := a.waitLost(flowlensv1.LostEventSource_KERNEL_RING_BUFFER, 10*time.Second)
	slots := dropRingSlots(page)
	assert.GreaterOrEqual(t, lost, uint64(flows-slots), "what the one-page ring could not hold is counted")
	assert.LessOrEqual(t, lost, uint64(flows))
	metric := a.lostMetric(t, flowlensv1.LostEventSource_KERNEL_RING_BUFFER)
	assert.EqualValues(t, lost, metric, "the metric counts what the status reports")
	t.Logf("%d-byte drop ring (%d events), %d distinct flows dropped in %v with the agent stopped: %d DROPPED records (%d packets), %d early reports lost and counted as KERNEL_RING_BUFFER (status %d, metric %.0f)",
		page, slots, flows, took.Round(time.Millisecond), len(dropped), pk, lost, lost, metric)
}

func distinctPorts(fs []*flowlensv1.Flow) map[uint32]bool {
	out := map[uint32]bool{}
	for _, f := range fs {
		out[f.GetL4().GetUdp().GetDestinationPort()] = true
	}
	return out
}
