package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
)

// tcpExchange connects from a pod with a fixed source port, sends payload,
// half-closes and reads the lab server's reply ("ok <bytes> <pod>"). A
// rejected connection returns the dial error (ECONNREFUSED: kube-router
// REJECTs with ICMP port unreachable).
func tcpExchange(t *testing.T, from *scenario.Pod, dst netip.AddrPort, sport int, payload []byte) (tuple, string, error) {
	t.Helper()
	tp := tuple{src: from.IP, dst: dst.Addr(), sport: uint32(sport), dport: uint32(dst.Port()), proto: "tcp"}
	var conn net.Conn
	err := netns.Do(from.NetNS, func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: from.IP.AsSlice(), Port: sport}}
		var err error
		conn, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return tp, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(payload); err != nil {
		return tp, "", err
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return tp, "", err
	}
	reply, err := io.ReadAll(conn)
	return tp, string(reply), err
}

// udpBurst sends n datagrams of size bytes from a fixed source port.
func udpBurst(t *testing.T, from *scenario.Pod, dst netip.AddrPort, sport, n, size int) tuple {
	t.Helper()
	var conn *net.UDPConn
	require.NoError(t, netns.Do(from.NetNS, func() error {
		var err error
		conn, err = net.DialUDP("udp", &net.UDPAddr{IP: from.IP.AsSlice(), Port: sport}, net.UDPAddrFromAddrPort(dst))
		return err
	}))
	defer conn.Close()
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		_, err := conn.Write(buf)
		require.NoError(t, err)
		// Pace the burst so the receiver's socket buffer never overflows:
		// the test is about counting, not about loss.
		time.Sleep(2 * time.Millisecond)
	}
	return tuple{src: from.IP, dst: dst.Addr(), sport: uint32(sport), dport: uint32(dst.Port()), proto: "udp"}
}

func requireRefused(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err, "the connection should have been rejected")
	require.True(t, errors.Is(err, syscall.ECONNREFUSED), "rejected with ICMP unreachable (ECONNREFUSED), got %v", err)
}

func podAddr(t *testing.T, l *testLab, key string, port uint16) (*scenario.Pod, netip.AddrPort) {
	t.Helper()
	p := l.Pod(key)
	require.NotNil(t, p, "pod %s", key)
	return p, netip.AddrPortFrom(p.IP, port)
}

func payloadOf(n int) []byte {
	return []byte(strings.Repeat("flowlens!", n/9+1)[:n])
}

// okReply checks the lab server's answer: every byte of payload arrived,
// intact (SHA-256), at pod.
func okReply(t *testing.T, reply string, payload []byte, pod string) {
	t.Helper()
	require.Equal(t, traffic.TCPReply(payload, pod), reply, "the server received every byte intact")
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
