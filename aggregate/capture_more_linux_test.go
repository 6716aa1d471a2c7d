package aggregate

import (
	"fmt"
	"net"
	"testing"
	"time"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
)

// A veth that appears while the capture runs is attached, and its traffic
// seen, within a second.
func TestCaptureNewVeth(t *testing.T) {
	requireRoot(t)
	tn := newTestNode(t, "10.42.0", 1)
	rc := startCapture(t, tn, bpf.Config{FlushInterval: 100 * time.Millisecond, IdleTimeout: time.Minute})

	start := time.Now()
	pod := tn.addPod()
	require.Eventually(t, func() bool { return rc.c.Status()[bpf.StatusInterfaces] == "2" },
		time.Second, 5*time.Millisecond, "attach to the new veth")
	t.Logf("attached %s after %v", pod.veth, time.Since(start))

	port := udpBurst(t, pod, tn.pods[0], 6000, 3)
	sent := time.Now()
	require.Eventually(t, func() bool {
		fs := flowsFor(rc.snapshot(), pod.ip, tn.pods[0].ip, protoUDP, uint32(port), 6000)
		p, _ := sumPackets(byVerdict(fs, flowlensv1.Verdict_FORWARDED))
		return p == 3
	}, time.Second, 5*time.Millisecond, "records of the new veth's traffic")
	t.Logf("reported %v after the traffic", time.Since(sent))

	// Removing it detaches (the kernel drops the hooks with the device).
	tn.exec("ip", "link", "del", pod.veth)
	require.Eventually(t, func() bool { return rc.c.Status()[bpf.StatusInterfaces] == "1" },
		time.Second, 5*time.Millisecond, "detach from the removed veth")
}

// Each node namespace's capture reports only its own drops: kfree_skb is a
// global tracepoint, filtered by netns inode in the kernel.
func TestCaptureNetnsIsolation(t *testing.T) {
	requireRoot(t)
	nodeA := newTestNode(t, "10.42.0", 2)
	nodeB := newTestNode(t, "10.42.0", 2) // same addresses on purpose
	for _, tn := range []*testNode{nodeA, nodeB} {
		tn.exec("iptables", "-A", "FORWARD", "-p", "tcp", "--dport", "9", "-j", "REJECT")
	}
	capA := startCapture(t, nodeA, bpf.Config{})
	capB := startCapture(t, nodeB, bpf.Config{})

	tcpRejected(t, nodeA.pods[0], nodeA.pods[1], 9, 42009)
	require.Eventually(t, func() bool {
		fs := flowsFor(capA.snapshot(), nodeA.pods[0].ip, nodeA.pods[1].ip, protoTCP, 0, 9) // attempts: any source port
		return len(byVerdict(fs, flowlensv1.Verdict_DROPPED)) > 0
	}, time.Second, 10*time.Millisecond, "node A reports its drop")

	evsB := capB.stop(t)
	for _, ev := range evsB {
		if f := ev.FlowProto(); f != nil {
			assert.NotEqual(t, flowlensv1.Verdict_DROPPED, f.Verdict, "node B reported %v", f)
		}
	}
	assert.Empty(t, flowsFor(evsB, nodeA.pods[0].ip, nodeA.pods[1].ip, protoTCP, 0, 9))
}

// A connection to a ClusterIP DNATed to a backend on the same node is
// counted once per direction: the client's direction with the ClusterIP as
// sent, the backend's reply as the backend sent it, and no third record for
// the reply as it reaches the client (source rewritten to the ClusterIP).
func TestCaptureClusterIPCountedOnce(t *testing.T) {
	requireRoot(t)
	tn := newTestNode(t, "10.42.0", 2)
	client, backend := tn.pods[0], tn.pods[1]
	const clusterIP = "10.43.0.10"
	rc := startCapture(t, tn, bpf.Config{})
	serveClusterIP(t, tn, clusterIP, backend, func(conn net.Conn) {
		_, _ = conn.Write([]byte("hello from the backend"))
	})
	var clientPort int
	inNetns(t, client.ns, func() {
		conn, err := net.DialTimeout("tcp4", net.JoinHostPort(clusterIP, "80"), 5*time.Second)
		require.NoError(t, err)
		defer conn.Close()
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		require.Equal(t, "hello from the backend", string(buf[:n]))
		clientPort = conn.LocalAddr().(*net.TCPAddr).Port
	})
	time.Sleep(50 * time.Millisecond) // let the FIN exchange finish
	evs := rc.stop(t)

	// The client's direction is keyed as sent (to the ClusterIP) and
	// reported with the backend it reached.
	req := flowsFor(evs, client.ip, backend.ip, protoTCP, uint32(clientPort), 8080)
	rep := flowsFor(evs, backend.ip, client.ip, protoTCP, 8080, uint32(clientPort))
	require.Len(t, req, 1)
	require.Len(t, rep, 1)
	assert.Equal(t, clusterIP, req[0].Ip.DestinationOriginal)
	assert.Empty(t, rep[0].Ip.DestinationOriginal)
	assert.Equal(t, flowlensv1.Verdict_FORWARDED, req[0].Verdict)
	assert.Equal(t, flowlensv1.Verdict_FORWARDED, rep[0].Verdict)
	assert.False(t, req[0].IsReply)
	assert.True(t, rep[0].IsReply, "conntrack marks the backend's direction as the reply")
	assert.Empty(t, flowsFor(evs, clusterIP, client.ip, protoTCP, 80, uint32(clientPort)),
		"the reply was counted again at the client's veth")
	n := 0
	for _, ev := range evs {
		if f := ev.FlowProto(); f != nil && f.Ip.Source == client.ip && f.L4.GetTcp().GetSourcePort() == uint32(clientPort) {
			n++
		}
	}
	assert.Equal(t, 1, n, "the request was counted again at the backend's veth")
}

// IPv6 goes through the same paths: parsing at the veth, the IPv6
// netfilter links, conntrack keys.
func TestCaptureIPv6UDP(t *testing.T) {
	requireRoot(t)
	tn := newTestNode(t, "10.42.0", 2)
	tn.exec("ip", "-6", "addr", "add", "fd42::1/64", "dev", "cni0", "nodad")
	addrs := []string{"fd42::10", "fd42::11"}
	for i, p := range tn.pods {
		run(t, "ip", "-n", p.ns, "-6", "addr", "add", addrs[i]+"/64", "dev", "eth0", "nodad")
		p.ip = addrs[i]
	}
	tn.exec("ip6tables", "-A", "FORWARD", "-p", "udp", "--dport", "7", "-j", "REJECT")
	rc := startCapture(t, tn, bpf.Config{})

	const n = 11
	port := udpBurst6(t, tn.pods[0], tn.pods[1], 5000, n)
	inNetns(t, tn.pods[0].ns, func() {
		conn, err := net.Dial("udp6", net.JoinHostPort(tn.pods[1].ip, "7"))
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("rejected"))
		require.NoError(t, err)
	})
	require.Eventually(t, func() bool {
		for _, ev := range rc.snapshot() {
			if f := ev.FlowProto(); f != nil && f.Verdict == flowlensv1.Verdict_DROPPED && f.L4.GetUdp().GetDestinationPort() == 7 {
				return true
			}
		}
		return false
	}, time.Second, 10*time.Millisecond, "IPv6 drop reported")
	evs := rc.stop(t)

	fs := flowsFor(evs, tn.pods[0].ip, tn.pods[1].ip, protoUDP, uint32(port), 5000)
	pkts, _ := sumPackets(byVerdict(fs, flowlensv1.Verdict_FORWARDED))
	assert.Equal(t, uint64(n), pkts)
	require.NotEmpty(t, fs)
	assert.Equal(t, flowlensv1.IPVersion_IPV6, fs[0].Ip.IpVersion)
	for _, ev := range evs {
		if f := ev.FlowProto(); f != nil && f.L4.GetUdp().GetDestinationPort() == 7 {
			assert.Equal(t, flowlensv1.Verdict_DROPPED, f.Verdict)
			assert.Equal(t, "NETFILTER_DROP", f.DropReason)
		}
	}
}

func udpBurst6(t *testing.T, client, server *testPod, port, n int) int {
	t.Helper()
	var pc net.PacketConn
	inNetns(t, server.ns, func() {
		var err error
		pc, err = net.ListenPacket("udp6", net.JoinHostPort(server.ip, fmt.Sprint(port)))
		require.NoError(t, err)
	})
	defer pc.Close()
	var conn net.Conn
	inNetns(t, client.ns, func() {
		var err error
		conn, err = net.Dial("udp6", net.JoinHostPort(server.ip, fmt.Sprint(port)))
		require.NoError(t, err)
	})
	defer conn.Close()
	buf := make([]byte, 2048)
	for i := 0; i < n; i++ {
		_, err := conn.Write([]byte("v6 datagram"))
		require.NoError(t, err)
		require.NoError(t, pc.SetReadDeadline(time.Now().Add(3*time.Second)))
		_, _, err = pc.ReadFrom(buf)
		require.NoError(t, err)
	}
	return conn.LocalAddr().(*net.UDPAddr).Port
}

// serveClusterIP points clusterIP:80 at backend:8080 with a DNAT rule, as
// kube-proxy does, and serves the backend's first connection with serve.
func serveClusterIP(t *testing.T, tn *testNode, clusterIP string, backend *testPod, serve func(net.Conn)) {
	t.Helper()
	tn.exec("iptables", "-t", "nat", "-A", "PREROUTING", "-d", clusterIP, "-p", "tcp", "--dport", "80",
		"-j", "DNAT", "--to-destination", backend.ip+":8080")
	var ln net.Listener
	inNetns(t, backend.ns, func() {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(backend.ip, "8080"))
		require.NoError(t, err)
	})
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		serve(conn)
	}()
}
