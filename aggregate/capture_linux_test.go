package aggregate

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
)

// runningCapture is a bpf.Capture running in a test node's namespace, with its
// output collected.
type runningCapture struct {
	c      *bpf.Capture
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	events []Event
}

func startCapture(t *testing.T, tn *testNode, cfg bpf.Config) *runningCapture {
	t.Helper()
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Hour // only immediate drops and the final flush
		cfg.IdleTimeout = 2 * time.Hour
	}
	cfg.NodeName = tn.node
	var c *bpf.Capture
	inNetns(t, tn.node, func() {
		var err error
		c, err = bpf.New(cfg, testLogger(t), prometheus.NewRegistry())
		require.NoError(t, err)
	})
	src, err := New(c, testLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	require.Error(t, c.Ready(), "not ready before Watch attached anything")
	rc := &runningCapture{c: c, done: make(chan error, 1)}
	out := make(chan Event, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	rc.cancel = cancel
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range out {
			rc.mu.Lock()
			rc.events = append(rc.events, ev)
			rc.mu.Unlock()
		}
	})
	go func() {
		err := src.Run(ctx, out)
		close(out)
		wg.Wait()
		rc.done <- err
	}()
	t.Cleanup(func() { rc.stop(t) })
	// Watch attaches to the existing veths, and says it is ready (/readyz)
	// only once it has.
	require.Eventually(t, func() bool { return c.Ready() == nil }, 5*time.Second, 10*time.Millisecond, "ready")
	require.Equal(t, fmt.Sprint(len(tn.pods)), c.Status()[bpf.StatusInterfaces], "ready means attached to every existing veth")
	return rc
}

// stop cancels Run, waits for its final flush and returns all events.
func (rc *runningCapture) stop(t *testing.T) []Event {
	t.Helper()
	if rc.cancel != nil {
		rc.cancel()
		rc.cancel = nil
		select {
		case err := <-rc.done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	return rc.snapshot()
}

func (rc *runningCapture) snapshot() []Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Event(nil), rc.events...)
}

// flowsFor returns the records of one direction of a connection.
func flowsFor(evs []Event, src, dst string, proto uint8, sport, dport uint32) []*flowlensv1.Flow {
	var out []*flowlensv1.Flow
	for _, ev := range evs {
		f := ev.FlowProto()
		if f == nil || f.Ip.GetSource() != src || f.Ip.GetDestination() != dst {
			continue
		}
		var sp, dp uint32
		switch proto {
		case protoTCP:
			if f.L4.GetTcp() == nil {
				continue
			}
			sp, dp = f.L4.GetTcp().SourcePort, f.L4.GetTcp().DestinationPort
		case protoUDP:
			if f.L4.GetUdp() == nil {
				continue
			}
			sp, dp = f.L4.GetUdp().SourcePort, f.L4.GetUdp().DestinationPort
		}
		if sp == sport && dp == dport {
			out = append(out, f)
		}
	}
	return out
}

func byVerdict(fs []*flowlensv1.Flow, v flowlensv1.Verdict) []*flowlensv1.Flow {
	var out []*flowlensv1.Flow
	for _, f := range fs {
		if f.Verdict == v {
			out = append(out, f)
		}
	}
	return out
}

func sumPackets(fs []*flowlensv1.Flow) (pkts, bytes uint64) {
	for _, f := range fs {
		pkts += f.Counters.GetPackets()
		bytes += f.Counters.GetBytes()
	}
	return pkts, bytes
}

// tcpExchange sends payload from client to server and a short answer back.
// It returns the client's port.
func tcpExchange(t *testing.T, client, server *testPod, port int, payload []byte) int {
	t.Helper()
	var ln net.Listener
	inNetns(t, server.ns, func() {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(server.ip, fmt.Sprint(port)))
		require.NoError(t, err)
	})
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer conn.Close()
		n, _ := io.Copy(io.Discard, conn)
		_, _ = conn.Write([]byte("ok"))
		got <- int(n)
	}()
	var conn net.Conn
	inNetns(t, client.ns, func() {
		var err error
		conn, err = net.DialTimeout("tcp4", net.JoinHostPort(server.ip, fmt.Sprint(port)), 5*time.Second)
		require.NoError(t, err)
	})
	defer conn.Close()
	_, err := conn.Write(payload)
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	answer, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Equal(t, "ok", string(answer))
	require.Equal(t, len(payload), <-got, "payload arrives intact")
	return conn.LocalAddr().(*net.TCPAddr).Port
}

// tcpRejected dials a port the node rejects and returns the client's port.
func tcpRejected(t *testing.T, client, server *testPod, port, clientPort int) {
	t.Helper()
	inNetns(t, client.ns, func() {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(client.ip), Port: clientPort}}
		_, err := d.Dial("tcp4", net.JoinHostPort(server.ip, fmt.Sprint(port)))
		require.Error(t, err, "the node rejects port %d", port)
	})
}

// udpBurst sends n datagrams and waits until the server read them all.
func udpBurst(t *testing.T, client, server *testPod, port, n int) int {
	t.Helper()
	var pc net.PacketConn
	inNetns(t, server.ns, func() {
		var err error
		pc, err = net.ListenPacket("udp4", net.JoinHostPort(server.ip, fmt.Sprint(port)))
		require.NoError(t, err)
	})
	defer pc.Close()
	var conn net.Conn
	inNetns(t, client.ns, func() {
		var err error
		conn, err = net.Dial("udp4", net.JoinHostPort(server.ip, fmt.Sprint(port)))
		require.NoError(t, err)
	})
	defer conn.Close()
	buf := make([]byte, 2048)
	for i := 0; i < n; i++ {
		_, err := conn.Write([]byte(fmt.Sprintf("datagram %04d", i)))
		require.NoError(t, err)
		// One at a time: the test is about counting, not about socket buffers.
		require.NoError(t, pc.SetReadDeadline(time.Now().Add(3*time.Second)))
		_, _, err = pc.ReadFrom(buf)
		require.NoError(t, err)
	}
	return conn.LocalAddr().(*net.UDPAddr).Port
}

func TestCaptureTraffic(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		mode     bpf.AttachMode
		accepted bpf.AcceptedMode
		status   string
	}{
		{bpf.AttachTCX, bpf.AcceptedAuto, "tc-egress"},
		{bpf.AttachTC, bpf.AcceptedAuto, "tc-egress"},
		{bpf.AttachTCX, bpf.AcceptedNetfilter, "netfilter-link"},
	} {
		mode := tc.mode
		t.Run(string(mode)+"/"+string(tc.accepted), func(t *testing.T) {
			tn := newTestNode(t, "10.42.0", 2)
			tn.exec("iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "9", "-j", "REJECT")
			a, b := tn.pods[0], tn.pods[1]
			foreign := map[string]bool{}
			if mode == bpf.AttachTC {
				// Someone else's clsact qdisc: used, and left in place.
				tn.exec("tc", "qdisc", "add", "dev", b.veth, "clsact")
				foreign[b.veth] = true
			}
			rc := startCapture(t, tn, bpf.Config{AttachMode: mode, Accepted: tc.accepted})
			st := rc.c.Status()
			assert.Equal(t, string(mode), st[bpf.StatusVeth])
			assert.Equal(t, "tp_btf/kfree_skb", st[bpf.StatusDrops])
			assert.Equal(t, tc.status, st[bpf.StatusAccepted])
			ids := programIDs(t, rc.c)

			payload := []byte(strings.Repeat("flowlens", 4096))
			tcpPort := tcpExchange(t, a, b, 8080, payload)

			tcpRejected(t, a, b, 9, 41009)
			// A drop is reported at once, not at the next flush (an hour away).
			// The rejected SYN is a connection attempt: folded into the
			// attempts of a to b:9 from any source port (source port 0).
			require.Eventually(t, func() bool {
				fs := flowsFor(rc.snapshot(), a.ip, b.ip, protoTCP, 0, 9)
				return len(byVerdict(fs, flowlensv1.Verdict_DROPPED)) > 0
			}, time.Second, 10*time.Millisecond, "immediate DROPPED record")

			const datagrams = 37
			udpPort := udpBurst(t, a, b, 5353, datagrams)

			evs := rc.stop(t)

			// Allowed TCP: one FORWARDED record per direction, nothing dropped.
			fwd := flowsFor(evs, a.ip, b.ip, protoTCP, uint32(tcpPort), 8080)
			rev := flowsFor(evs, b.ip, a.ip, protoTCP, 8080, uint32(tcpPort))
			require.Len(t, fwd, 1, "client->server records: %v", fwd)
			require.Len(t, rev, 1, "server->client records: %v", rev)
			for _, f := range append(fwd, rev...) {
				assert.Equal(t, flowlensv1.Verdict_FORWARDED, f.Verdict)
				assert.Equal(t, flowlensv1.TrafficDirection_EGRESS, f.TrafficDirection)
				assert.Equal(t, flowlensv1.ObservationPoint_FROM_POD, f.ObservationPoint)
				assert.Equal(t, tn.node, f.NodeName)
				assert.NotEmpty(t, f.Uuid)
			}
			assert.False(t, fwd[0].IsReply)
			assert.True(t, rev[0].IsReply)
			assert.GreaterOrEqual(t, fwd[0].Counters.Bytes, uint64(len(payload)))
			assert.True(t, fwd[0].TcpFlags.GetSYN() && fwd[0].TcpFlags.GetFIN())
			assert.Equal(t, a.veth, fwd[0].Interface.GetName())
			assert.WithinDuration(t, time.Now(), fwd[0].Time.AsTime(), time.Minute)

			// Rejected TCP: DROPPED with the kernel's reason, never FORWARDED.
			rej := flowsFor(evs, a.ip, b.ip, protoTCP, 0, 9)
			require.NotEmpty(t, byVerdict(rej, flowlensv1.Verdict_DROPPED))
			assert.Empty(t, byVerdict(rej, flowlensv1.Verdict_FORWARDED))
			assert.Empty(t, flowsFor(evs, a.ip, b.ip, protoTCP, 41009, 9), "the attempt is not also its own flow")
			for _, f := range byVerdict(rej, flowlensv1.Verdict_DROPPED) {
				assert.Equal(t, "NETFILTER_DROP", f.DropReason)
				assert.Equal(t, flowlensv1.ObservationPoint_KFREE_SKB, f.ObservationPoint)
				assert.NotZero(t, f.Counters.Packets)
				assert.Equal(t, f.Counters.Packets, f.AggregatedAttempts)
			}

			// UDP: exactly as many packets as datagrams.
			udp := flowsFor(evs, a.ip, b.ip, protoUDP, uint32(udpPort), 5353)
			assert.Empty(t, byVerdict(udp, flowlensv1.Verdict_DROPPED))
			pkts, _ := sumPackets(byVerdict(udp, flowlensv1.Verdict_FORWARDED))
			assert.Equal(t, uint64(datagrams), pkts)

			assertDetached(t, tn, ids, foreign)
		})
	}
}

// programIDs returns the kernel IDs of the capture's programs.
func programIDs(t *testing.T, c *bpf.Capture) []string {
	t.Helper()
	pids, err := c.ProgramIDs()
	require.NoError(t, err)
	var ids []string
	for _, id := range pids {
		ids = append(ids, fmt.Sprint(id))
	}
	return ids
}

// assertDetached checks that nothing the capture attached remains.
// foreignQdisc names the veths whose clsact qdisc the test created.
func assertDetached(t *testing.T, tn *testNode, progIDs []string, foreignQdisc map[string]bool) {
	t.Helper()
	for _, p := range tn.pods {
		for _, dir := range []string{"ingress", "egress"} {
			assert.Empty(t, strings.TrimSpace(tn.exec("tc", "filter", "show", "dev", p.veth, dir)), "tc filters on %s %s", p.veth, dir)
		}
		qdiscs := tn.exec("tc", "qdisc", "show", "dev", p.veth)
		if foreignQdisc[p.veth] {
			assert.Contains(t, qdiscs, "clsact", "the foreign clsact qdisc on %s was deleted", p.veth)
		} else {
			assert.NotContains(t, qdiscs, "clsact", "clsact qdisc on %s", p.veth)
		}
	}
	net := tn.exec("bpftool", "net", "show")
	assert.NotContains(t, net, "tcx", "bpftool net in the node namespace:\n%s", net)
	out, err := exec.Command("bpftool", "link", "show").CombinedOutput()
	require.NoError(t, err)
	for _, id := range progIDs {
		assert.NotRegexp(t, `prog `+id+`\b`, string(out), "a link still references program %s", id)
	}
}
