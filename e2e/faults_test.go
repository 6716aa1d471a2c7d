package e2e

import (
	"fmt"
	"net"
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
			before := bpfLinks(t)
			a := startAgent(t, l, "node1", "--attach-mode", mode)
			during := bpfLinks(t)
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
				if _, old := before[id]; old {
					continue
				}
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
