package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// dropRingSlots is how many drop events a ring of size bytes holds: each
// is a struct drop_event behind an 8-byte record header.
func dropRingSlots(size int) int { return size / (int(unsafe.Sizeof(bpf.DropEvent{})) + 8) }

// TestDropRingStorm runs the agent with the smallest drop ring (one page)
// and sends two storms of 2,000 distinct flows that the lab's policies
// reject: one while the agent runs (whether the ring overflows then depends
// on the machine's load), one while it is stopped (SIGSTOP, as on a node
// too busy to schedule it), so the ring certainly overflows. Counted, never
// silent: every flow of each storm comes out as a DROPPED record with its
// one packet, and what the ring could not hold is reported as
// KERNEL_RING_BUFFER loss, the same in the status and the metric.
func TestDropRingStorm(t *testing.T) {
	const flows = 2000
	page := os.Getpagesize()
	l := startLab(t, 1)
	a := startAgent(t, l, "node1", "--drop-ring-size", strconv.Itoa(page))
	fe := l.Pod("demo/frontend")
	_, db := podAddr(t, l, "demo/db", 0)
	require.Zero(t, a.statusLost(flowlensv1.LostEventSource_KERNEL_RING_BUFFER), "no loss before the storm")

	took := dropStorm(t, a, fe, db.Addr(), 20000, flows)
	runningLost := a.statusLost(flowlensv1.LostEventSource_KERNEL_RING_BUFFER)
	t.Logf("agent running: %d distinct flows dropped in %v, %d DROPPED records; %d early reports lost and counted",
		flows, took.Round(time.Millisecond), flows, runningLost)

	require.NoError(t, a.cmd.Process.Signal(syscall.SIGSTOP))
	stopped := true
	waitStopped(t, a.cmd.Process.Pid)
	defer func() {
		if stopped {
			_ = a.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	took = dropStorm(t, a, fe, db.Addr(), 22000, flows, func() {
		require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
		stopped = false
	})
	lost := a.statusLost(flowlensv1.LostEventSource_KERNEL_RING_BUFFER) - runningLost
	slots := dropRingSlots(page)
	assert.GreaterOrEqual(t, lost, uint64(flows-slots), "what the one-page ring could not hold is counted")
	assert.LessOrEqual(t, lost, uint64(flows))
	status := a.statusLost(flowlensv1.LostEventSource_KERNEL_RING_BUFFER)
	metric := a.lostMetric(t, flowlensv1.LostEventSource_KERNEL_RING_BUFFER)
	assert.EqualValues(t, status, metric, "the metric counts what the status reports")
	t.Logf("agent stopped: %d-byte drop ring (%d events), %d distinct flows dropped in %v, %d DROPPED records; %d early reports lost and counted as KERNEL_RING_BUFFER (both storms: status %d, metric %.0f)",
		page, slots, flows, took.Round(time.Millisecond), flows, lost, status, metric)
}

// dropStorm sends one datagram from fe to each of n ports of db from
// basePort on, runs then (if any) and waits until every flow is reported
// DROPPED with its one packet and a flush has passed since, so the status
// holds the storm's loss.
func dropStorm(t *testing.T, a *agentProc, fe *scenario.Pod, db netip.Addr, basePort, n int, then ...func()) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, netns.Do(fe.NetNS, func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: fe.IP.AsSlice()})
		if err != nil {
			return err
		}
		defer conn.Close()
		for i := range n {
			if _, err := conn.WriteToUDP([]byte("storm"), &net.UDPAddr{IP: db.AsSlice(), Port: basePort + i}); err != nil {
				return err
			}
		}
		return nil
	}))
	took := time.Since(start)
	for _, fn := range then {
		fn()
	}
	storm := func(f *flowlensv1.Flow) bool {
		dp := f.GetL4().GetUdp().GetDestinationPort()
		return f.GetIp().GetSource() == fe.IP.String() && f.GetIp().GetDestination() == db.String() &&
			dp >= uint32(basePort) && dp < uint32(basePort+n)
	}
	a.waitFor("a DROPPED record for every flow of the storm", 15*time.Second, func() bool {
		return len(distinctPorts(a.match(and(storm, verdict(flowlensv1.Verdict_DROPPED))))) == n
	})
	pk, _ := sum(a.match(and(storm, verdict(flowlensv1.Verdict_DROPPED))))
	assert.EqualValues(t, n, pk, "each flow's one packet, counted once")
	assert.Empty(t, a.match(and(storm, verdict(flowlensv1.Verdict_FORWARDED))), "the policies reject the storm")
	time.Sleep(1200 * time.Millisecond) // two flushes: the loss is read at each
	return took
}

// waitStopped waits until every thread of pid is stopped: SIGSTOP reaches
// a thread running on another CPU only when it next enters the kernel, and
// the ring reader could take one more event meanwhile.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	require.Eventually(t, func() bool {
		stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(stats) == 0 {
			return false
		}
		for _, p := range stats {
			raw, err := os.ReadFile(p)
			if err != nil {
				return false
			}
			// The state follows the parenthesised command name.
			if i := bytes.LastIndexByte(raw, ')'); i < 0 || i+2 >= len(raw) || raw[i+2] != 'T' {
				return false
			}
		}
		return true
	}, 5*time.Second, time.Millisecond, "agent %d stopped", pid)
}

func distinctPorts(fs []*flowlensv1.Flow) map[uint32]bool {
	out := map[uint32]bool{}
	for _, f := range fs {
		out[f.GetL4().GetUdp().GetDestinationPort()] = true
	}
	return out
}
