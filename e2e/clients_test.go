package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestSlowAndVanishingClients runs the agent binary with a 2,048-record
// recent-flow ring under 22 rounds of 2,000 UDP flows (one record each per
// flush, fewer when the flow log's reader lags and the kernel aggregates
// more per flush) and 80 MiB of TCP, while one gRPC client follows and
// never reads, and others connect and vanish mid-stream over and over. The
// client that keeps reading gets every flow in the flow log's order, any
// gap told as CLIENT_QUEUE loss before the flow after it; the slow one is
// told its loss as CLIENT_QUEUE once it reads; the agent's RSS stays within
// a bound of what it was before the slow client connected, and its
// goroutines return to the baseline.
func TestSlowAndVanishingClients(t *testing.T) {
	const ringCap, perRound, rounds, bulk = 2048, 2000, 20, 8 << 20
	// A full ring is ~3 MiB, a full agent queue (8,192 records, when the
	// flow log's reader lags) ~12 MiB; a queue per slow client would be
	// ~60 MiB here.
	const rssBoundMiB = 32
	l := startLab(t, 1)
	a := startAgent(t, l, "node1", "--ring-capacity", fmt.Sprint(ringCap))
	fe := l.Pod("demo/frontend")
	_, udpDst := podAddr(t, l, "demo/backend", 5353)
	_, tcpDst := podAddr(t, l, "demo/backend", 8080)
	socks := openUDP(t, fe, udpDst, perRound)
	ctx := ctxTimeout(t, 3*time.Minute)
	normal := a.follow(t, ctx)

	// Fill the ring once, so the baseline holds a full ring.
	for range 2 {
		sendRound(t, socks)
		time.Sleep(600 * time.Millisecond)
	}
	baseRSS, baseG := readProcMem(t, a.cmd.Process.Pid).rss, a.metric(t, "go_goroutines")

	slowConn, err := a.dial(grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	require.NoError(t, err)
	defer slowConn.Close()
	slowCtx, cancelSlow := context.WithCancel(ctx)
	defer cancelSlow()
	slow, err := flowlensv1.NewObserverClient(slowConn).GetFlows(slowCtx, &flowlensv1.GetFlowsRequest{Follow: true})
	require.NoError(t, err)

	stop := make(chan struct{})
	var vanished int
	var wg sync.WaitGroup
	wg.Go(func() { vanished = vanishRepeatedly(ctx, t, a, stop) })
	peakRSS := baseRSS
	for r := range rounds {
		sendRound(t, socks)
		if r%2 == 0 {
			payload := payloadOf(bulk)
			_, reply, err := tcpExchange(t, fe, tcpDst, 0, payload)
			require.NoError(t, err)
			okReply(t, reply, payload, "demo/backend")
		}
		time.Sleep(600 * time.Millisecond)
		peakRSS = max(peakRSS, readProcMem(t, a.cmd.Process.Pid).rss)
	}
	close(stop)
	wg.Wait()

	a.waitFor("the steady client caught up with the flow log", 20*time.Second, func() bool {
		log := a.uuids()
		return len(log) > 0 && normal.last() == log[len(log)-1]
	})
	missed := normal.checkInOrder(t, a.uuids())
	slowGot, slowLost := readUntilLost(t, slow, cancelSlow)
	assert.Positive(t, slowLost, "the slow client is told what it missed")
	status := a.statusLost(flowlensv1.LostEventSource_CLIENT_QUEUE)
	metric := a.lostMetric(t, flowlensv1.LostEventSource_CLIENT_QUEUE)
	assert.GreaterOrEqual(t, status, slowLost+normal.lostTotal(), "status counts what the clients were told")
	assert.EqualValues(t, status, metric, "the metric counts what the status reports")
	endRSS := readProcMem(t, a.cmd.Process.Pid).rss
	assert.Less(t, peakRSS-baseRSS, float64(rssBoundMiB), "RSS growth while the slow client lagged")
	var endG float64
	assert.Eventually(t, func() bool { endG = a.metric(t, "go_goroutines"); return endG <= baseG+8 }, 10*time.Second, 100*time.Millisecond,
		"goroutines back near the baseline %.0f after %d vanished clients", baseG, vanished)
	t.Logf("ring %d; %d flow records, %d MiB of TCP; steady client: %d flows in order, %d missed, %d told lost; slow client got %d flows, then was told %d lost (CLIENT_QUEUE status %d, metric %.0f); %d clients vanished mid-stream; agent RSS %.1f MiB before the slow client, peak %.1f, end %.1f (bound +%d); goroutines %.0f -> %.0f",
		ringCap, len(a.uuids()), rounds/2*bulk>>20, len(normal.flows()), missed, normal.lostTotal(), slowGot, slowLost, status, metric,
		vanished, baseRSS, peakRSS, endRSS, rssBoundMiB, baseG, endG)
}

// openUDP opens n sockets from pod to dst, each its own flow.
func openUDP(t *testing.T, from *scenario.Pod, dst netip.AddrPort, n int) []*net.UDPConn {
	t.Helper()
	socks := make([]*net.UDPConn, 0, n)
	t.Cleanup(func() {
		for _, c := range socks {
			c.Close()
		}
	})
	require.NoError(t, netns.Do(from.NetNS, func() error {
		for range n {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: from.IP.AsSlice()}, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			socks = append(socks, c)
		}
		return nil
	}))
	return socks
}

// sendRound sends one datagram on each socket: one record per flow at the
// next flush.
func sendRound(t *testing.T, socks []*net.UDPConn) {
	t.Helper()
	for _, c := range socks {
		_, err := c.Write([]byte("round"))
		require.NoError(t, err)
	}
}

// uuids are the flow log's records so far, in the order the agent wrote
// them (the order it writes its recent-flow ring).
func (a *agentProc) uuids() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, len(a.flows))
	for i, f := range a.flows {
		out[i] = f.GetUuid()
	}
	return out
}
