package bpf

import (
	"context"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/traffic"
)

// BenchmarkProgramCost is issue 9's per-packet figure: the kernel's own statistics
// (run_time_ns, run_cnt) for each flowlens program under a 64-byte UDP flood between two pods
// of one node, default mode. The statistics cost tens of ns per run themselves, more on a
// loaded VM, so an empty tc program on the same packets (the sender's veth ingress) is the
// reference: its ns/run is subtracted from every run, and its run count is the packet count.
// net-ns/packet is the sum over programs of (ns/run - reference) x runs/packet. Compare
// figures within one run only: other load on the machine moves them all.
//
// bare is the node as the bridge alone makes it: no conntrack, so nf_accept keys packets from
// their headers. conntrack adds one FORWARD rule that matches on conntrack state, as every K3s
// node has (kube-router's rules, kube-proxy's NAT): nf_accept then keys from the entry.
func BenchmarkProgramCost(b *testing.B) {
	requireRoot(b)
	testenv.Tool(b, "iperf3", "iperf3")
	b.Run("bare", func(b *testing.B) { programCost(b, false) })
	b.Run("conntrack", func(b *testing.B) {
		testenv.Tool(b, "iptables", "iptables")
		programCost(b, true)
	})
}

func programCost(b *testing.B, conntrack bool) {
	br := newBridge(b, 2)
	node := br.Node.NetNS
	// Watch alone: the flow table fills and is never flushed, which is the
	// programs' steady state for one long flow.
	c := watchCapture(b, node, Config{FlushInterval: time.Second}, nil, make(chan DropEvent, 1024))
	require.Eventually(b, func() bool { return c.Status()[StatusInterfaces] == "2" }, 10*time.Second, 10*time.Millisecond)
	if conntrack {
		_, err := netns.Run(context.Background(), node, "", "iptables", "-A", "FORWARD",
			"-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT")
		require.NoError(b, err)
	}

	ref := emptyProgram(b, ebpf.SchedCLS, -1)
	refNF := emptyProgram(b, ebpf.Netfilter, 1)
	require.NoError(b, netns.Do(node, func() error {
		veth, err := netlink.LinkByName(br.Pods[0].HostVeth)
		if err != nil {
			return err
		}
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: veth.Attrs().Index, Program: ref, Attach: ebpf.AttachTCXIngress, Anchor: link.Tail(),
		})
		if err != nil {
			return err
		}
		b.Cleanup(func() { _ = l.Close() })
		nl, err := link.AttachNetfilter(link.NetfilterOptions{
			Program: refNF, ProtocolFamily: link.NetfilterProtoIPv4, Hook: link.NetfilterInetForward, Priority: nfPriority + 1,
		})
		if err != nil {
			return err
		}
		b.Cleanup(func() { _ = nl.Close() })
		return nil
	}))

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	require.NoError(b, err)
	defer stats.Close() // restores kernel.bpf_stats_enabled
	progs := map[string]*ebpf.Program{
		"tc_from_pod": c.objs.TcFromPod, "tc_to_pod": c.objs.TcToPod,
		"nf_accept": c.objs.NfAccept, "kfree_skb": c.objs.KfreeSkb, "reference": ref, "reference_nf": refNF,
	}
	before := readStats(b, progs)
	from := traffic.Endpoint{NetNS: br.Pods[0].NetNS, IP: br.Pods[0].IP}
	to := traffic.Endpoint{NetNS: br.Pods[1].NetNS, IP: br.Pods[1].IP}
	if _, err := traffic.Iperf(context.Background(), from, to, true, 3); err != nil {
		b.Fatal(err)
	}
	reportCost(b, before, readStats(b, progs))
}

// reportCost reports each program's ns/run and runs/packet between two reads of the
// statistics, the references, and the net total.
func reportCost(b *testing.B, before, after map[string]ebpf.ProgramStats) {
	d := func(name string) (ns, runs float64) {
		return float64(after[name].Runtime - before[name].Runtime), float64(after[name].RunCount - before[name].RunCount)
	}
	refNs, packets := d("reference")
	require.Positive(b, packets, "the reference program saw no packet")
	refPerRun := refNs / packets
	b.ReportMetric(refPerRun, "reference-ns/run")
	// Not subtracted (the figure subtracts the tc reference from every program), but
	// shows what an empty program costs on the netfilter hook.
	if ns, runs := d("reference_nf"); runs > 0 {
		b.ReportMetric(ns/runs, "reference_nf-ns/run")
	}
	var net float64
	for _, name := range []string{"tc_from_pod", "tc_to_pod", "nf_accept", "kfree_skb"} {
		ns, runs := d(name)
		if runs == 0 {
			b.ReportMetric(0, name+"-runs/packet")
			continue
		}
		b.ReportMetric(ns/runs, name+"-ns/run")
		b.ReportMetric(runs/packets, name+"-runs/packet")
		net += (ns/runs - refPerRun) * runs / packets
	}
	b.ReportMetric(net, "net-ns/packet")
}

func readStats(b *testing.B, progs map[string]*ebpf.Program) map[string]ebpf.ProgramStats {
	b.Helper()
	out := make(map[string]ebpf.ProgramStats, len(progs))
	for name, p := range progs {
		s, err := p.Stats()
		require.NoError(b, err)
		out[name] = *s
	}
	return out
}

// emptyProgram returns ret (TCX_NEXT, NF_ACCEPT) and does nothing else.
func emptyProgram(b *testing.B, typ ebpf.ProgramType, ret int32) *ebpf.Program {
	b.Helper()
	spec := &ebpf.ProgramSpec{
		Name: "flowlens_ref", Type: typ, License: "Dual BSD/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, ret), asm.Return()},
	}
	if typ == ebpf.Netfilter {
		spec.AttachType = ebpf.AttachNetfilter
	}
	p, err := ebpf.NewProgram(spec)
	require.NoError(b, err)
	b.Cleanup(func() { _ = p.Close() })
	return p
}
