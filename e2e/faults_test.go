package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/netns"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// kill ends the agent with SIGKILL: no final flush, no detach.
func (a *agentProc) kill() {
	a.t.Helper()
	require.NoError(a.t, a.cmd.Process.Kill())
	<-a.done
	_ = a.cmd.Wait() // "signal: killed", expected
}

// vethAttachments lists, per pod veth of node1, the programs attached to
// it: TCX programs as the kernel reports them (bpftool 7.1 does not list
// TCX) and tc filters, one entry each.
func vethAttachments(t *testing.T, l *testLab) map[string][]string {
	t.Helper()
	node := l.Node("node1")
	out := map[string][]string{}
	for _, p := range podsOn(l, "node1") {
		require.NoError(t, netns.Do(node.NetNS, func() error {
			iface, err := net.InterfaceByName(p.HostVeth)
			if err != nil {
				return err
			}
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				res, err := link.QueryPrograms(link.QueryOptions{Target: iface.Index, Attach: at})
				if err != nil {
					return fmt.Errorf("query %s %s: %w", p.HostVeth, at, err)
				}
				for range res.Programs {
					out[p.HostVeth] = append(out[p.HostVeth], at.String())
				}
			}
			return nil
		}))
		for _, dir := range []string{"ingress", "egress"} {
			raw := run(t, "ip", "netns", "exec", node.NetNS, "tc", "filter", "show", "dev", p.HostVeth, dir)
			for _, line := range strings.Split(raw, "\n") {
				if strings.Contains(line, " bpf ") && strings.Contains(line, " handle ") {
					out[p.HostVeth] = append(out[p.HostVeth], "tc "+dir)
				}
			}
		}
	}
	return out
}

// TestSIGKILLAndRestart kills the agent mid-traffic with SIGKILL and starts
// it again: nothing is attached twice, no link of the killed agent
// survives, counting resumes, and only what the killed agent had not
// flushed is lost.
func TestSIGKILLAndRestart(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run("attach-mode="+mode, func(t *testing.T) {
			l := startLab(t, 1)
			a := startAgent(t, l, "node1", "--attach-mode", mode)
			during := ownedLinks(t, a.cmd.Process.Pid)
			require.NotEmpty(t, during, "the agent holds BPF links (tracepoint, netfilter)")
			first := vethAttachments(t, l)
			require.Len(t, first, len(podsOn(l, "node1")), "every pod veth attached")
			for veth, progs := range first {
				require.Len(t, progs, 2, "%s: one program each way", veth)
			}

			fe := l.Pod("demo/frontend")
			_, dst := podAddr(t, l, "demo/backend", 8080)
			exchange := func(sport int, ag *agentProc) tuple {
				payload := payloadOf(16 << 10)
				tp, reply, err := tcpExchange(t, fe, dst, sport, payload)
				require.NoError(t, err)
				okReply(t, reply, payload, "demo/backend")
				return tp
			}
			flushed := exchange(42001, a)
			a.waitFor("the first connection flushed", 5*time.Second, func() bool {
				_, b := sum(a.match(and(flushed.is, verdict(flowlensv1.Verdict_FORWARDED))))
				return b >= 16<<10
			})
			unflushed := exchange(42002, a)
			a.kill() // within the 500ms flush interval of the second connection
			lostPk, _ := sum(a.match(unflushed.is))
			afterKill := bpfLinks(t)
			for id, desc := range during {
				if _, still := afterKill[id]; still {
					t.Errorf("BPF link of the killed agent survived: %s", desc)
				}
			}

			b := startAgent(t, l, "node1", "--attach-mode", mode)
			again := vethAttachments(t, l)
			assert.Equal(t, first, again, "the restarted agent attaches exactly what the first one did, nothing twice")
			resumed := exchange(42003, b)
			b.waitFor("counting resumed after the restart", 5*time.Second, func() bool {
				_, bytes := sum(b.match(and(resumed.is, verdict(flowlensv1.Verdict_FORWARDED))))
				return bytes >= 16<<10
			})
			assert.Empty(t, b.match(flushed.is), "the restarted agent does not report the killed agent's flows again")
			t.Logf("%s: killed mid-traffic; flushed connection reported, unflushed connection: %d packets reported before the kill (the rest lost with the process); restart attached %d veths once each",
				mode, lostPk, len(again))
		})
	}
}

// metricsText scrapes the agent's /metrics from inside its namespace.
func (a *agentProc) metricsText(t testing.TB) string {
	t.Helper()
	return string(a.get(t, "127.0.0.1:9280", "/metrics"))
}

// get is an HTTP GET of path from addr inside the agent's namespace.
func (a *agentProc) get(t testing.TB, addr, path string) []byte {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialInNetNS(ctx, a.node.NetNS, addr)
		},
	}}
	resp, err := client.Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s%s: %s", addr, path, body)
	return body
}

// statusLost is the loss the agent's status reports for source.
func (a *agentProc) statusLost(source flowlensv1.LostEventSource) uint64 {
	a.t.Helper()
	st, err := a.status()
	require.NoError(a.t, err)
	for _, le := range st.GetLostEvents() {
		if le.GetSource() == source {
			return le.GetNumEventsLost()
		}
	}
	return 0
}

// waitLost polls the status until it reports loss from source, and
// returns it (0 when none came within timeout).
func (a *agentProc) waitLost(source flowlensv1.LostEventSource, timeout time.Duration) uint64 {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if n := a.statusLost(source); n > 0 {
			return n
		}
	}
	return 0
}

// lostMetric is flowlens_lost_events_total{source} as the agent exports it.
func (a *agentProc) lostMetric(t *testing.T, source flowlensv1.LostEventSource) float64 {
	t.Helper()
	return a.metric(t, `flowlens_lost_events_total{source="`+source.String()+`"}`)
}

// metric is the value of one series (name and labels as exposed) in the
// agent's /metrics.
func (a *agentProc) metric(t testing.TB, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(a.metricsText(t), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			_, err := fmt.Sscan(rest, &v)
			require.NoError(t, err)
			return v
		}
	}
	t.Fatalf("no series %s in the metrics", series)
	return 0
}

// TestFlowTableFull opens more concurrent flows than --flow-table-size:
// the loss is counted in the status and the metrics, and a flow that fits
// afterwards is counted exactly.
func TestFlowTableFull(t *testing.T) {
	const tableSize, flows = 64, 1000
	l := startLab(t, 1)
	a := startAgent(t, l, "node1", "--flow-table-size", fmt.Sprint(tableSize), "--flush-interval", "2s")
	fe := l.Pod("demo/frontend")
	_, dst := podAddr(t, l, "demo/backend", 5353)
	require.NoError(t, netns.Do(fe.NetNS, func() error {
		for i := range flows {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: fe.IP.AsSlice(), Port: 20000 + i}, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			_, werr := c.Write([]byte("x"))
			if cerr := c.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return werr
			}
		}
		return nil
	}))
	kernelLost := a.waitLost(flowlensv1.LostEventSource_KERNEL_FLOW_TABLE, 10*time.Second)
	require.Positive(t, kernelLost, "flow table loss in the status")
	metricLost := a.lostMetric(t, flowlensv1.LostEventSource_KERNEL_FLOW_TABLE)
	assert.Positive(t, metricLost, "flow table loss in the metrics")
	reported := len(a.match(func(f *flowlensv1.Flow) bool { return f.GetL4().GetUdp().GetDestinationPort() == 5353 }))

	// Once the storm's entries are reported and the table has room again,
	// a flow that fits is exact.
	tp := udpBurst(t, fe, dst, 19999, 50, 100)
	a.waitFor("the burst after the storm", 10*time.Second, func() bool {
		pk, _ := sum(a.match(and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))))
		return pk >= 50
	})
	pk, bytes := sum(a.match(and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))))
	assert.EqualValues(t, 50, pk, "every packet of the flow that fits, once")
	assert.EqualValues(t, 50*(100+28), bytes, "IP length of each datagram")
	t.Logf("table %d, %d flows opened: %d flow records reported, %d evictions counted in status, %.0f in metrics; later 50-packet flow exact",
		tableSize, flows, reported, kernelLost, metricLost)
}
