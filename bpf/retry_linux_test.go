package bpf

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/flowlens/flowlens/lab/netns"
)

// An attach the kernel refuses is counted, logged and retried until it
// succeeds, never dropped: a pod veth whose TCX ingress holds as many
// programs as the kernel allows refuses flowlens's, and once one of them
// goes the retry attaches. The retry timer runs only while an attach
// waits (an idle agent is not woken each second for nothing).
func TestRefusedAttachIsRetried(t *testing.T) {
	requireRoot(t)
	br := newBridge(t, 1)
	veth := br.Pods[0].HostVeth

	// Fill the veth's TCX ingress with empty programs (a program is on a
	// hook at most once) until the kernel refuses one more.
	var fillers []link.Link
	t.Cleanup(func() {
		for _, l := range fillers {
			l.Close()
		}
	})
	require.NoError(t, netns.Do(br.Node.NetNS, func() error {
		l, err := netlink.LinkByName(veth)
		if err != nil {
			return err
		}
		for range 1000 {
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
				Type:         ebpf.SchedCLS,
				License:      "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
			})
			if err != nil {
				return err
			}
			fl, err := link.AttachTCX(link.TCXOptions{Interface: l.Attrs().Index, Program: prog, Attach: ebpf.AttachTCXIngress})
			prog.Close() // the link holds it
			if err != nil {
				t.Logf("the kernel refused filler %d: %v", len(fillers)+1, err)
				return nil
			}
			fillers = append(fillers, fl)
		}
		t.Fatal("the kernel took 1000 programs on one hook")
		return nil
	}))

	c := watchCapture(t, br.Node.NetNS, Config{NodeName: "n", AttachMode: AttachTCX}, testLogger(t), make(chan DropEvent, 16))

	failures := func() float64 { return testutil.ToFloat64(c.linkMetrics.attachFailures) }
	require.Eventually(t, func() bool { return failures() >= 2 }, 10*time.Second, 10*time.Millisecond,
		"the refused attach is retried")
	require.Equal(t, "0", c.Status()[StatusInterfaces], "nothing attached while the hook is full")

	// Make room: the next retry attaches.
	require.NoError(t, fillers[len(fillers)-1].Close())
	fillers = fillers[:len(fillers)-1]
	require.Eventually(t, func() bool { return c.Status()[StatusInterfaces] == "1" }, 10*time.Second, 10*time.Millisecond,
		"attached on a retry once the hook has room")
	after := failures()
	time.Sleep(2 * attachRetryPeriod)
	require.Equal(t, after, failures(), "no retry once attached")
	t.Logf("attached after %.0f refused attempts", after)
}
