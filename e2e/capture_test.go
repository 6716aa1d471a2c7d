package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/scenario"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestSingleNodeCapture covers issue 2's tests 1-6 once per attach mode:
// allowed TCP, default-deny ingress, egress deny, an exact UDP burst, and a
// clean detach.
func TestSingleNodeCapture(t *testing.T) {
	for _, tc := range []struct{ attach, accepted, wantVeth, wantAccepted string }{
		{"auto", "auto", "tcx", "tc-egress"},
		{"tc", "auto", "tc", "tc-egress"},
		// The netfilter links on FORWARD too, as before the egress mode.
		{"auto", "netfilter", "tcx", "netfilter-link"},
		// The fallback for kernels without the netfilter BPF link (< 6.4).
		{"auto", "inference", "tcx", "delivery-inference"},
	} {
		t.Run("attach-mode="+tc.attach+",accepted-mode="+tc.accepted, func(t *testing.T) {
			l := startLab(t, 1)
			a := startAgent(t, l, "node1", "--attach-mode", tc.attach, "--accepted-mode", tc.accepted)
			during := ownedLinks(t, a.cmd.Process.Pid)
			st, err := a.status()
			require.NoError(t, err)
			assert.Equal(t, tc.wantVeth, st.GetAttachModes()["veth"], "attach mode in status")
			assert.Equal(t, tc.wantAccepted, st.GetAttachModes()["accepted"], "accepted mode in status")
			if tc.wantAccepted == "tc-egress" {
				// Every interface of the node but loopback, cni0 and the pod veths.
				exits := len(nodeLinks(t, l.Node("node1").NetNS)) - 1 - len(podsOn(l, "node1"))
				assert.Equal(t, fmt.Sprint(exits), st.GetAttachModes()["exits"], "exit interfaces in status")
			}

			t.Run("allowed TCP", func(t *testing.T) { checkAllowedTCP(t, l, a) })

			t.Run("default-deny ingress is DROPPED", func(t *testing.T) { checkIngressDenied(t, l, a) })

			t.Run("egress deny is DROPPED", func(t *testing.T) { checkEgressDenied(t, l, a) })

			t.Run("UDP burst counted exactly", func(t *testing.T) { checkUDPBurst(t, l, a) })

			a.stop()
			after := bpfLinks(t)
			created := 0
			for id, desc := range during {
				created++
				if _, still := after[id]; still {
					t.Errorf("BPF link left behind after the agent stopped: %s", desc)
				}
			}
			assert.Positive(t, created, "the agent created BPF links (tracepoint, netfilter, TCX)")
			node := l.Node("node1")
			for _, dev := range nodeLinks(t, node.NetNS) {
				for _, dir := range []string{"ingress", "egress"} {
					out := run(t, "ip", "netns", "exec", node.NetNS, "tc", "filter", "show", "dev", dev, dir)
					assert.Empty(t, strings.TrimSpace(out), "tc %s filter left on %s", dir, dev)
				}
				out := run(t, "ip", "netns", "exec", node.NetNS, "tc", "qdisc", "show", "dev", dev)
				assert.NotContains(t, out, "clsact", "clsact qdisc left on %s", dev)
				out = run(t, "ip", "netns", "exec", node.NetNS, "bpftool", "net", "show", "dev", dev)
				assert.NotContains(t, out, "tcx", "TCX program left on %s", dev)
			}
		})
	}
}

// checkAllowedTCP checks that an allowed connection is FORWARDED both ways, named and judged ALLOW,
// every packet counted once.
func checkAllowedTCP(t *testing.T, l *testLab, a *agentProc) {
	t.Helper()
	fe := l.Pod("demo/frontend")
	_, dst := podAddr(t, l, "demo/backend", 8080)
	payload := payloadOf(64 << 10)
	tp, reply, err := tcpExchange(t, fe, dst, 41001, payload)
	require.NoError(t, err)
	okReply(t, reply, payload, "demo/backend")

	fwd := and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))
	rev := and(tp.reverse().is, verdict(flowlensv1.Verdict_FORWARDED))
	a.waitFor("both directions FORWARDED", 5*time.Second, func() bool {
		_, b1 := sum(a.match(fwd))
		_, b2 := sum(a.match(rev))
		return b1 >= uint64(len(payload)) && b2 > 0
	})
	f := a.match(fwd)[0]
	assert.Equal(t, "demo", f.GetSource().GetNamespace())
	assert.Equal(t, "frontend", f.GetSource().GetPodName())
	assert.Equal(t, "backend", f.GetDestination().GetPodName())
	assert.Equal(t, flowlensv1.TrafficDirection_EGRESS, f.GetTrafficDirection())
	assert.False(t, f.GetIsReply())
	assert.Equal(t, "node1", f.GetNodeName())
	assert.True(t, a.match(rev)[0].GetIsReply(), "the backend's direction is the reply")
	assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, f.GetPolicy().GetVerdict(), "intended verdict: %s", f.GetPolicy().GetSummary())
	assert.Equal(t, flowlensv1.Mismatch_NONE, f.GetPolicy().GetMismatch())
	assert.Empty(t, a.match(and(tp.is, verdict(flowlensv1.Verdict_DROPPED))))
	// Every packet counted once: the SYN, data and FIN of the
	// client direction, at least payload/MTU segments.
	pk, _ := sum(a.match(fwd))
	assert.GreaterOrEqual(t, pk, uint64(len(payload)/1450))
}

// checkIngressDenied checks that a default-deny ingress SYN is DROPPED with the kernel's reason and
// judged DENY, never FORWARDED.
func checkIngressDenied(t *testing.T, l *testLab, a *agentProc) {
	t.Helper()
	fe := l.Pod("demo/frontend")
	db, dbAddr := podAddr(t, l, "demo/db", 8080)
	tp, _, err := tcpExchange(t, fe, dbAddr, 41002, []byte("hello"))
	requireRefused(t, err)
	drop := and(tp.is, verdict(flowlensv1.Verdict_DROPPED))
	a.waitFor("the rejected SYN as DROPPED", 3*time.Second, func() bool { return len(a.match(drop)) > 0 })
	f := a.match(drop)[0]
	assert.Equal(t, "NETFILTER_DROP", f.GetDropReason())
	assert.Equal(t, "frontend", f.GetSource().GetPodName())
	assert.Equal(t, db.Name, f.GetDestination().GetPodName())
	assert.Equal(t, flowlensv1.IntendedVerdict_DENY, f.GetPolicy().GetVerdict(), "intended verdict: %s", f.GetPolicy().GetSummary())
	assert.Equal(t, flowlensv1.Mismatch_NONE, f.GetPolicy().GetMismatch())
	// Give the agent two more flushes: still never FORWARDED.
	time.Sleep(1200 * time.Millisecond)
	assert.Empty(t, a.match(and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))), "a rejected flow is never FORWARDED")
}

// checkEgressDenied checks that an egress-denied SYN is DROPPED, never FORWARDED.
func checkEgressDenied(t *testing.T, l *testLab, a *agentProc) {
	t.Helper()
	out := l.Pod("other/outsider")
	_, dst := podAddr(t, l, "demo/backend", 8080)
	tp, _, err := tcpExchange(t, out, dst, 41003, []byte("hello"))
	requireRefused(t, err)
	drop := and(tp.is, verdict(flowlensv1.Verdict_DROPPED))
	a.waitFor("the egress-denied SYN as DROPPED", 3*time.Second, func() bool { return len(a.match(drop)) > 0 })
	f := a.match(drop)[0]
	assert.Equal(t, "NETFILTER_DROP", f.GetDropReason())
	assert.Equal(t, "other", f.GetSource().GetNamespace())
	assert.Equal(t, "outsider", f.GetSource().GetPodName())
	assert.Equal(t, "backend", f.GetDestination().GetPodName())
	time.Sleep(1200 * time.Millisecond)
	assert.Empty(t, a.match(and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))))
}

// checkUDPBurst checks that every datagram of a burst is counted once, bytes as IP lengths.
func checkUDPBurst(t *testing.T, l *testLab, a *agentProc) {
	t.Helper()
	const n = 37
	fe := l.Pod("demo/frontend")
	_, dst := podAddr(t, l, "demo/backend", 5353)
	before := l.servers.UDPReceived("demo/backend", 5353)
	tp := udpBurst(t, fe, dst, 41004, n, 64)
	fwd := and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))
	a.waitFor("all datagrams", 5*time.Second, func() bool {
		p, _ := sum(a.match(fwd))
		return p >= n
	})
	time.Sleep(1200 * time.Millisecond) // no late extras either
	p, b := sum(a.match(fwd))
	assert.Equal(t, uint64(n), p, "packets")
	assert.Equal(t, uint64(n*(64+8+20)), b, "bytes: IP length of each datagram")
	assert.Equal(t, int64(n), l.servers.UDPReceived("demo/backend", 5353)-before, "the server got them all")
}

// TestNewVethObservedWithinASecond: a pod created after the agent started
// is attached from netlink events before its first packet a second later.
func TestNewVethObservedWithinASecond(t *testing.T) {
	l := startLab(t, 1)
	a := startAgent(t, l, "node1")
	spec := scenario.PodSpec{Namespace: "demo", Name: "late", Node: 1, Labels: map[string]string{"app": "frontend"},
		PeerOf: []string{"demo/allow-frontend-to-backend/ingress/0"}, TargetOf: []string{"demo/default-deny-ingress"}}
	p, err := l.AddPod(ctxTimeout(t, 10*time.Second), spec)
	require.NoError(t, err)
	time.Sleep(time.Second)
	const n = 20
	_, dst := podAddr(t, l, "demo/backend", 5353)
	tp := udpBurst(t, p, dst, 41010, n, 32)
	fwd := and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))
	a.waitFor("the new pod's datagrams", 5*time.Second, func() bool { pk, _ := sum(a.match(fwd)); return pk >= n })
	pk, _ := sum(a.match(fwd))
	assert.Equal(t, uint64(n), pk, "every datagram of the new veth counted")
	f := a.match(fwd)[0]
	assert.Equal(t, p.HostVeth, f.GetInterface().GetName())
}

// bpfLinks lists the kernel's BPF links with their program names.
func bpfLinks(t *testing.T) map[string]string {
	t.Helper()
	out := run(t, "bpftool", "link", "show")
	links := map[string]string{}
	var id string
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			id = strings.SplitN(line, ":", 2)[0]
			links[id] = line
			continue
		}
		links[id] += " " + strings.TrimSpace(line)
	}
	return links
}

// ownedLinks returns the BPF links held open by process pid, by ID, with
// bpftool's description: read from the process's own fd table, so that
// links other programs on the machine create meanwhile are never mistaken
// for the agent's.
func ownedLinks(t *testing.T, pid int) map[string]string {
	t.Helper()
	all := bpfLinks(t)
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err, "listing the agent's fds")
	owned := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			if id, ok := strings.CutPrefix(line, "link_id:"); ok {
				id = strings.TrimSpace(id)
				owned[id] = all[id]
			}
		}
	}
	return owned
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(argv, " "), out)
	return string(out)
}

// TestSIGTERMWritesPending: records still waiting for the next flush are
// written when the agent is told to stop.
func TestSIGTERMWritesPending(t *testing.T) {
	l := startLab(t, 1)
	a := startAgent(t, l, "node1", "--flush-interval", "1m", "--idle-timeout", "2m")
	fe := l.Pod("demo/frontend")
	_, dst := podAddr(t, l, "demo/backend", 5353)
	const n = 12
	tp := udpBurst(t, fe, dst, 41020, n, 100)
	time.Sleep(200 * time.Millisecond)
	fwd := and(tp.is, verdict(flowlensv1.Verdict_FORWARDED))
	require.Empty(t, a.match(fwd), "nothing before the first flush, a minute away")
	a.stop()
	p, _ := sum(a.match(fwd))
	assert.Equal(t, uint64(n), p, "the final flush on SIGTERM wrote every datagram")
}

// nodeLinks names the interfaces of a lab node's namespace but loopback.
func nodeLinks(t *testing.T, netns string) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(run(t, "ip", "netns", "exec", netns, "ip", "-o", "link", "show")), "\n") {
		// "3: vethabc@if2: <BROADCAST,...> ..."
		f := strings.Fields(line)
		require.GreaterOrEqual(t, len(f), 2, "ip -o link line %q", line)
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name != "lo" {
			names = append(names, name)
		}
	}
	return names
}
