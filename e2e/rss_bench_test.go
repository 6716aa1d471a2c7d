package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/deploy"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// The node issue 9 sizes the agent for: 5,000 pods, 1,000 policies, a full
// kernel flow table and a full ring (both 65,536 by default).
var rssNode = scenario.Synthetic{Pods: 5000, Namespaces: 50, Policies: 1000, Base: netip.MustParseAddr("10.42.100.0")}

// rssFlows fills the 65,536-entry LRU table as far as it goes without
// evicting: an LRU map starts evicting before it is full, as each CPU keeps
// free entries of its own, and evicted flows are counted lost.
const rssFlows = 62000

// BenchmarkAgentRSS runs the agent binary as the DaemonSet ships it (its
// arguments and its GOMEMLIMIT) on a lab node whose cluster file also names
// 5,000 pods under 1,000 policies, and fills its kernel flow table and its
// ring: each second a raw socket in a lab pod sends one datagram on each
// of 62,000 flows, from the synthetic pods' addresses, to a listener in
// another pod. Once the ring is full it prints the agent's resident set at
// its highest over two flush intervals (VmRSS and its parts), its peak
// since start, its Go heap and its CPU. It runs once, whatever b.N is.
func BenchmarkAgentRSS(b *testing.B) {
	requireRoot(b)
	l := startLab(b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	from, to := iperfPods(ctx, b, l)

	dir := b.TempDir()
	cluster, policies := filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "policies.yaml")
	synCluster, synPolicies, err := rssNode.YAML()
	require.NoError(b, err)
	require.NoError(b, l.WriteClusterYAML(cluster))
	require.NoError(b, l.WritePolicyYAML(policies))
	appendFile(b, cluster, synCluster)
	appendFile(b, policies, synPolicies)

	c, err := deploy.AgentContainer()
	require.NoError(b, err)
	// The DaemonSet's environment, but a variable set for the test wins
	// (GOMEMLIMIT=... prices another limit).
	var env []string
	for _, e := range c.Env {
		if _, set := os.LookupEnv(e.Name); !set && e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	// FLOWLENS_BENCH_AGENT_ARGS adds flags to the DaemonSet's, e.g.
	// "--queue-size 4096" to price another setting.
	args := append([]string{"--node-name", "node1", "--cluster-file", cluster, "--policies", policies}, c.Args...)
	args = append(args, strings.Fields(os.Getenv("FLOWLENS_BENCH_AGENT_ARGS"))...)
	// Profiles only when asked for: serving them turns heap sampling on.
	if os.Getenv("FLOWLENS_HEAP_PROFILE") != "" || os.Getenv("FLOWLENS_CPU_PROFILE") != "" {
		args = append(args, "--pprof-address", "127.0.0.1:6060")
	}
	a := launchAgent(b, l, "node1", args, env, 100)
	a.waitAttached(len(podsOn(l, "node1")))

	dst := netip.AddrPortFrom(to.IP, 7070)
	stopSink := udpSink(b, to, dst)
	defer stopSink()
	sendCtx, stopSend := context.WithCancel(ctx)
	sent := make(chan error, 1)
	go func() { sent <- sendFlows(sendCtx, from, dst, rssFlows) }()
	defer func() {
		stopSend()
		if err := <-sent; err != nil {
			b.Errorf("sending the flows: %v", err)
		}
	}()

	pid := a.cmd.Process.Pid
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := a.status()
		require.NoError(b, err)
		if st.GetNumFlows() == st.GetMaxFlows() && st.GetSeenFlows() >= 2*rssFlows &&
			strings.HasPrefix(st.GetPolicyState(), "ok") && strings.HasPrefix(st.GetEnrichmentState(), "synced") {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("ring %d/%d after %d flows; policy %q, enrichment %q", st.GetNumFlows(), st.GetMaxFlows(), st.GetSeenFlows(),
				st.GetPolicyState(), st.GetEnrichmentState())
		}
		time.Sleep(250 * time.Millisecond)
	}

	window := 2 * bpf.DefaultFlushInterval
	// FLOWLENS_CPU_PROFILE=file writes where the agent's CPU goes meanwhile.
	cpuProfile := make(chan []byte, 1)
	if path := os.Getenv("FLOWLENS_CPU_PROFILE"); path != "" {
		go func() {
			cpuProfile <- a.get(b, "127.0.0.1:6060", fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(window.Seconds())))
		}()
		defer func() { require.NoError(b, os.WriteFile(path, <-cpuProfile, 0o600)) }()
	}
	cpu0, seen0 := procCPU(b, pid), mustStatus(b, a).GetSeenFlows()
	var top procMem
	for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if m := readProcMem(b, pid); m.rss > top.rss {
			top = m
		}
	}
	cores := (procCPU(b, pid) - cpu0) / window.Seconds()
	// FLOWLENS_HEAP_PROFILE=file writes what holds the agent's heap.
	if path := os.Getenv("FLOWLENS_HEAP_PROFILE"); path != "" {
		require.NoError(b, os.WriteFile(path, a.get(b, "127.0.0.1:6060", "/debug/pprof/heap?gc=1"), 0o600))
	}
	st := mustStatus(b, a)
	heap := a.metric(b, "go_memstats_heap_inuse_bytes") / (1 << 20)
	peak := readProcMem(b, pid).hwm

	// The flows were named and judged: the flow log (drops and mismatches
	// only, as deployed) has the synthetic pods whose policies deny egress.
	a.mu.Lock()
	lines, kept := a.lines, append(a.flows[:0:0], a.flows...)
	a.mu.Unlock()
	require.NotZero(b, lines, "mismatches in the flow log")
	named := 0
	for _, f := range kept {
		if strings.HasPrefix(f.GetSource().GetPodName(), "app-") && len(f.GetSource().GetWorkloads()) > 0 && f.GetPolicy() != nil {
			named++
		}
	}
	require.NotZero(b, named, "flows from the synthetic pods named with their workload, of %d kept", len(kept))

	b.ReportMetric(top.rss, "rss-MiB")
	b.ReportMetric(top.anon, "rss-anon-MiB")
	b.ReportMetric(top.file, "rss-file-MiB")
	b.ReportMetric(top.shmem, "rss-shmem-MiB")
	b.ReportMetric(peak, "peak-rss-MiB")
	b.ReportMetric(heap, "heap-inuse-MiB")
	b.ReportMetric(cores, "agent-cores")
	perFlush := float64(st.GetSeenFlows()-seen0) / (window.Seconds() / bpf.DefaultFlushInterval.Seconds())
	b.ReportMetric(perFlush, "flows/flush")
	b.Logf("agent as deployed (%s; GOMEMLIMIT %q from the test's environment; extra flags %q), %d pods, %d policies, ring %d/%d, %.0f flows a flush: VmRSS %.1f MiB at most (RssAnon %.1f, RssFile %.1f, RssShmem %.1f), VmHWM %.1f; Go heap in use %.1f MiB; %.3f cores; %d flow-log lines; lost %v",
		strings.Join(env, " "), os.Getenv("GOMEMLIMIT"), os.Getenv("FLOWLENS_BENCH_AGENT_ARGS"), rssNode.Pods, rssNode.Policies, st.GetNumFlows(), st.GetMaxFlows(), perFlush,
		top.rss, top.anon, top.file, top.shmem, peak, heap, cores, lines, st.GetLostEvents())
}

func appendFile(b *testing.B, path string, data []byte) {
	b.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(b, err)
	_, err = f.Write(data)
	require.NoError(b, errors.Join(err, f.Close()))
}

// udpSink reads and discards datagrams to dst inside to's namespace, so
// the flows end in a socket rather than in ICMP errors.
func udpSink(b *testing.B, to traffic.Endpoint, dst netip.AddrPort) (stop func()) {
	b.Helper()
	var conn *net.UDPConn
	require.NoError(b, netns.Do(to.NetNS, func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(dst))
		return err
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return func() { conn.Close(); <-done }
}

// sendFlows sends, once a second until ctx ends, one UDP datagram on each
// of n flows to dst through a raw socket in from's namespace: flow i comes
// from synthetic pod i%Pods, port 1024+i/Pods.
func sendFlows(ctx context.Context, from traffic.Endpoint, dst netip.AddrPort, n int) error {
	var fd int
	if err := netns.Do(from.NetNS, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		return fmt.Errorf("raw socket in %s: %w", from.NetNS, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: dst.Addr().As4()}
	pkt := make([]byte, 20+8+4)
	for {
		for i := range n {
			udpPacket(pkt, rssNode.PodIP(i%rssNode.Pods), dst, uint16(1024+i/rssNode.Pods))
			if err := unix.Sendto(fd, pkt, 0, to); err != nil && !errors.Is(err, unix.ENOBUFS) {
				return fmt.Errorf("sending flow %d: %w", i, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// udpPacket writes an IPv4 header (the kernel fills its checksum and ID)
// and a UDP header without checksum, then a 4-byte payload.
func udpPacket(pkt []byte, src netip.Addr, dst netip.AddrPort, sport uint16) {
	clear(pkt)
	pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	s, d := src.As4(), dst.Addr().As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	binary.BigEndian.PutUint16(pkt[20:], sport)
	binary.BigEndian.PutUint16(pkt[22:], dst.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(len(pkt)-20))
}

// procMem is a process's memory from /proc/PID/status, in MiB: the agent's
// resident set in BenchmarkAgentRSS, BenchmarkDatapath and TestSlowAndVanishingClients.
type procMem struct{ rss, anon, file, shmem, hwm float64 }

func readProcMem(t testing.TB, pid int) procMem {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	var m procMem
	fields := map[string]*float64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file, "RssShmem:": &m.shmem, "VmHWM:": &m.hwm}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || fields[f[0]] == nil {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		require.NoError(t, err)
		*fields[f[0]] = kb / 1024
	}
	require.NotZero(t, m.rss, "no VmRSS in /proc/%d/status", pid)
	return m
}

func mustStatus(b *testing.B, a *agentProc) *flowlensv1.ServerStatusResponse {
	b.Helper()
	st, err := a.status()
	require.NoError(b, err)
	return st
}
