package aggregate

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/flowlens/flowlens/bpf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// A burst of pod veths created and deleted on cni0 as fast as ip(8) can, while two pods
// exchange traffic: the capture stays up, ends attached to exactly the veths that remain, and
// the pods' traffic is counted exactly. Issue 9: 3,000 veth pairs in one burst used to overflow
// the netlink subscription and stop the agent.
func TestCaptureSurvivesLinkBurst(t *testing.T) {
	requireRoot(t)
	// A bridge takes at most 1024 ports: the burst comes in rounds of 900.
	const rounds, perRound, keep, datagrams = 3, 900, 3, 500
	tn := newTestNode(t, "10.42.0", 2)
	rc := startCapture(t, tn, bpf.Config{FlushInterval: 100 * time.Millisecond, IdleTimeout: time.Minute})
	var batches []string
	for r := range rounds {
		var add, del strings.Builder
		for i := range perRound {
			fmt.Fprintf(&add, "link add flb%d type veth peer name flc%d\nlink set flb%d master cni0 up\n", r*perRound+i, r*perRound+i, r*perRound+i)
			if r > 0 || i >= keep {
				fmt.Fprintf(&del, "link del flb%d\n", r*perRound+i)
			}
		}
		batches = append(batches, add.String(), del.String())
	}
	batch := func(cmds string) error {
		cmd := exec.Command("ip", "-n", tn.node, "-batch", "-")
		cmd.Stdin = strings.NewReader(cmds)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ip -batch: %v: %s", err, out)
		}
		return nil
	}
	var wg sync.WaitGroup
	var burstErr error
	start := time.Now()
	wg.Go(func() {
		for _, b := range batches {
			if burstErr = batch(b); burstErr != nil {
				return
			}
		}
	})
	port := udpBurst(t, tn.pods[0], tn.pods[1], 7100, datagrams)
	wg.Wait()
	require.NoError(t, burstErr)
	t.Logf("created and deleted %d veths in %v", rounds*perRound, time.Since(start))

	require.Eventually(t, func() bool { return rc.c.Status()[bpf.StatusInterfaces] == fmt.Sprint(2+keep) },
		30*time.Second, 50*time.Millisecond, "attached to the 2 pods' veths and the %d kept", keep)
	assert.ElementsMatch(t, []string{tn.pods[0].veth, tn.pods[1].veth, "flb0", "flb1", "flb2"}, withFromPod(t, tn, rc.c))
	// After the burst too.
	port2 := udpBurst(t, tn.pods[1], tn.pods[0], 7101, 50)

	evs := rc.stop(t)
	for _, c := range []struct {
		from, to     *testPod
		sport, dport uint32
		n            uint64
	}{
		{tn.pods[0], tn.pods[1], uint32(port), 7100, datagrams},
		{tn.pods[1], tn.pods[0], uint32(port2), 7101, 50},
	} {
		p, _ := sumPackets(byVerdict(flowsFor(evs, c.from.ip, c.to.ip, protoUDP, c.sport, c.dport), flowlensv1.Verdict_FORWARDED))
		assert.Equal(t, c.n, p, "datagrams %s -> %s", c.from.ip, c.to.ip)
	}
}

// withFromPod names the node's interfaces that have tc_from_pod on TCX ingress, as the kernel
// reports them.
func withFromPod(t *testing.T, tn *testNode, c *bpf.Capture) []string {
	t.Helper()
	ids, err := c.ProgramIDs()
	require.NoError(t, err)
	id := ids[0] // tc_from_pod
	var names []string
	inNetns(t, tn.node, func() {
		links, err := netlink.LinkList()
		require.NoError(t, err)
		for _, l := range links {
			res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				continue // no TCX on this device
			}
			for _, p := range res.Programs {
				if p.ID == id {
					names = append(names, l.Attrs().Name)
				}
			}
		}
	})
	return names
}
