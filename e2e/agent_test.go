package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowlens/flowlens/lab"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// testLab is a lab plus the cluster and policy files the agents read.
type testLab struct {
	*lab.Lab
	servers     *traffic.Servers
	clusterFile string
	policyFile  string
}

func startLab(t testing.TB, nodes int) *testLab {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := netns.NewPrefix()
	prefixes.Lock()
	prefixes.list = append(prefixes.list, prefix)
	prefixes.Unlock()
	l, err := lab.Up(ctx, lab.Config{Prefix: prefix, Nodes: nodes})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	dir := t.TempDir()
	tl := &testLab{Lab: l, clusterFile: filepath.Join(dir, "cluster.yaml"), policyFile: filepath.Join(dir, "policies.yaml")}
	require.NoError(t, l.WriteClusterYAML(tl.clusterFile))
	require.NoError(t, l.WritePolicyYAML(tl.policyFile))
	tl.servers, err = traffic.StartServers(l)
	require.NoError(t, err)
	t.Cleanup(func() { tl.servers.Close() })
	return tl
}

// agentProc is a running flowlens-agent in a node's network namespace,
// writing its flow log to stdout.
type agentProc struct {
	t     testing.TB
	node  *netns.Node
	cmd   *exec.Cmd
	mu    sync.Mutex
	flows []*flowlensv1.Flow
	lines int // flow-log lines, kept or not
	bad   []string
	done  chan struct{}
	errb  lockedBuffer
}

// lockedBuffer collects a child's stderr: exec copies into it from its own
// goroutine while a test may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startAgent(t testing.TB, l *testLab, nodeName string, extra ...string) *agentProc {
	t.Helper()
	args := append([]string{"--node-name", nodeName, "--cluster-file", l.clusterFile, "--policies", l.policyFile,
		"--flow-log", "-", "--flush-interval", "500ms", "--idle-timeout", "30s",
		"--grpc-address", "127.0.0.1:4280", "--metrics-address", "127.0.0.1:9280", "--log-level", "debug"}, extra...)
	a := launchAgent(t, l, nodeName, args, nil, 0)
	a.waitAttached(len(podsOn(l, nodeName)))
	return a
}

// launchAgent starts the agent binary in a node's namespace with exactly
// args and, added to the test's, env. It keeps the first keep flows of its
// flow log (all when keep is 0) and counts every line.
func launchAgent(t testing.TB, l *testLab, nodeName string, args, env []string, keep int) *agentProc {
	t.Helper()
	node := l.Node(nodeName)
	require.NotNil(t, node, "node %s", nodeName)
	a := &agentProc{t: t, node: node, cmd: exec.Command("ip", append([]string{"netns", "exec", node.NetNS, bins.agent}, args...)...), done: make(chan struct{})}
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stderr = &a.errb
	stdout, err := a.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, a.cmd.Start())
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			a.mu.Lock()
			a.lines++
			full := keep > 0 && len(a.flows) >= keep
			a.mu.Unlock()
			if full {
				continue
			}
			fl := &flowlensv1.Flow{}
			if err := protojson.Unmarshal(sc.Bytes(), fl); err != nil {
				a.mu.Lock()
				a.bad = append(a.bad, sc.Text())
				a.mu.Unlock()
				continue
			}
			a.mu.Lock()
			a.flows = append(a.flows, fl)
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("agent %s stderr:\n%s", nodeName, a.errb.String())
		}
	})
	return a
}

func podsOn(l *testLab, node string) []*scenario.Pod {
	var out []*scenario.Pod
	for _, p := range l.Pods() {
		if p.Node == node {
			out = append(out, p)
		}
	}
	return out
}

// waitAttached polls ServerStatus until the agent reports n attached
// interfaces: from then on every packet of those pods is counted.
func (a *agentProc) waitAttached(n int) {
	a.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		st, err := a.status()
		// Attached, and the intended policy set compiled: from then on
		// every flow is counted and judged.
		if err == nil && int(st.GetAttachedInterfaces()) >= n && strings.HasPrefix(st.GetPolicyState(), "ok") {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d interfaces attached, policy %s", st.GetAttachedInterfaces(), st.GetPolicyState())
		}
		select {
		case <-a.done:
			a.t.Fatalf("agent exited early: %s", a.errb.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	a.t.Fatalf("agent on %s not attached to %d interfaces: %s\n%s", a.node.Name, n, last, a.errb.String())
}

// dial connects to the agent's gRPC API from inside its node namespace.
func (a *agentProc) dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///127.0.0.1:4280", append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialInNetNS(ctx, a.node.NetNS, addr)
		})}, opts...)...)
}

func (a *agentProc) status() (*flowlensv1.ServerStatusResponse, error) {
	conn, err := a.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return flowlensv1.NewObserverClient(conn).ServerStatus(ctx, &flowlensv1.ServerStatusRequest{})
}

// stop sends SIGTERM and waits: the agent writes what is pending, detaches
// and exits 0.
func (a *agentProc) stop() {
	if a.cmd.ProcessState != nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		a.t.Errorf("agent on %s did not stop within 20s of SIGTERM", a.node.Name)
	}
	err := a.cmd.Wait()
	if err != nil {
		a.t.Errorf("agent on %s exited: %v\n%s", a.node.Name, err, a.errb.String())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.bad) > 0 {
		a.t.Errorf("agent wrote %d lines that are not Flow JSON, e.g. %q", len(a.bad), a.bad[0])
	}
}

// match returns the flows recorded so far that satisfy pred.
func (a *agentProc) match(pred func(*flowlensv1.Flow) bool) []*flowlensv1.Flow {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*flowlensv1.Flow
	for _, f := range a.flows {
		if pred(f) {
			out = append(out, f)
		}
	}
	return out
}

// waitFor waits until cond holds over the flows recorded so far.
func (a *agentProc) waitFor(what string, timeout time.Duration, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			a.mu.Lock()
			n := len(a.flows)
			var dump bytes.Buffer
			for _, f := range a.flows {
				b, _ := protojson.Marshal(f)
				dump.Write(b)
				dump.WriteByte('\n')
			}
			a.mu.Unlock()
			a.t.Fatalf("%s: not seen within %s on %s (%d flows so far):\n%s", what, timeout, a.node.Name, n, dump.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialInNetNS opens a TCP connection from inside a network namespace; the
// socket keeps its namespace after the thread switches back.
func dialInNetNS(ctx context.Context, ns, addr string) (net.Conn, error) {
	var conn net.Conn
	err := netns.Do(ns, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}

// tuple selects the records of one direction of one connection. A
// connection refused at its SYN is reported in its source's aggregate of
// connection attempts to the destination port (source port 0,
// aggregated_attempts set): that record is the connection's too.
type tuple struct {
	src, dst     netip.Addr
	sport, dport uint32
	proto        string
}

func (tp tuple) reverse() tuple {
	return tuple{src: tp.dst, dst: tp.src, sport: tp.dport, dport: tp.sport, proto: tp.proto}
}

func (tp tuple) is(f *flowlensv1.Flow) bool {
	if f.GetIp().GetSource() != tp.src.String() || f.GetIp().GetDestination() != tp.dst.String() {
		return false
	}
	var sp, dp uint32
	switch tp.proto {
	case "tcp":
		sp, dp = f.GetL4().GetTcp().GetSourcePort(), f.GetL4().GetTcp().GetDestinationPort()
		if f.GetL4().GetTcp() == nil {
			return false
		}
	case "udp":
		sp, dp = f.GetL4().GetUdp().GetSourcePort(), f.GetL4().GetUdp().GetDestinationPort()
		if f.GetL4().GetUdp() == nil {
			return false
		}
	}
	attempts := tp.proto == "tcp" && sp == 0 && f.GetAggregatedAttempts() > 0
	return (tp.sport == 0 || sp == tp.sport || attempts) && dp == tp.dport
}

func verdict(v flowlensv1.Verdict) func(*flowlensv1.Flow) bool {
	return func(f *flowlensv1.Flow) bool { return f.GetVerdict() == v }
}

func and(preds ...func(*flowlensv1.Flow) bool) func(*flowlensv1.Flow) bool {
	return func(f *flowlensv1.Flow) bool {
		for _, p := range preds {
			if !p(f) {
				return false
			}
		}
		return true
	}
}

func sum(flows []*flowlensv1.Flow) (packets, bytes uint64) {
	for _, f := range flows {
		packets += f.GetCounters().GetPackets()
		bytes += f.GetCounters().GetBytes()
	}
	return packets, bytes
}
