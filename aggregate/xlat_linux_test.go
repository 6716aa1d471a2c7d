package aggregate

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
)

// A ClusterIP connection that goes idle loses its flow entry to the idle
// timeout; when it resumes, the new entry must learn the backend again
// (nf_accept's once-per-epoch shortcuts must not skip it), or its records
// name the ClusterIP with no service and no backend.
func TestCaptureClusterIPResumedAfterIdle(t *testing.T) {
	requireRoot(t)
	tn := newTestNode(t, "10.42.0", 2)
	client, backend := tn.pods[0], tn.pods[1]
	const clusterIP = "10.43.0.11"
	rc := startCapture(t, tn, bpf.Config{FlushInterval: 100 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	serveClusterIP(t, tn, clusterIP, backend, func(conn net.Conn) {
		buf := make([]byte, 64)
		for { // echo until the client closes
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			_, _ = conn.Write(buf[:n])
		}
	})
	var conn net.Conn
	inNetns(t, client.ns, func() {
		var err error
		conn, err = net.DialTimeout("tcp4", net.JoinHostPort(clusterIP, "80"), 5*time.Second)
		require.NoError(t, err)
	})
	defer conn.Close()
	clientPort := conn.LocalAddr().(*net.TCPAddr).Port
	echo := func(msg string) {
		t.Helper()
		require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		require.NoError(t, err)
		require.Equal(t, msg, string(buf[:n]))
	}
	inTable := func() bool {
		found := false
		require.NoError(t, rc.c.IterateFlows(func(raw, _ []byte) {
			var k bpf.FlowKey
			if bpf.DecodeFlowKey(raw, &k) == nil && k.Sport == uint16(clientPort) && k.Dport == 80 {
				found = true
			}
		}))
		return found
	}

	echo("before")
	// Idle past the timeout (well over an nf_accept epoch): the flush deletes the entry.
	require.Eventually(t, func() bool { return !inTable() }, 10*time.Second, 50*time.Millisecond,
		"the idle request entry was never deleted")
	echo("after")
	require.Eventually(t, inTable, 5*time.Second, 10*time.Millisecond, "the resumed connection has no entry")
	evs := rc.stop(t)

	req := flowsFor(evs, client.ip, backend.ip, protoTCP, uint32(clientPort), 8080)
	require.GreaterOrEqual(t, len(req), 2, "records before and after the idle deletion")
	last := req[len(req)-1]
	assert.Equal(t, clusterIP, last.Ip.DestinationOriginal, "the resumed connection's record names the ClusterIP it addressed")
	assert.NotNil(t, last.DestinationService)
	assert.Empty(t, flowsFor(evs, client.ip, clusterIP, protoTCP, uint32(clientPort), 80),
		"a record of the connection without its backend")
}
