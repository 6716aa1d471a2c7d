package e2e

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/flowlens/flowlens/lab/netns"
)

// Environment tokens of a BenchmarkDatapathVariants variant that change what
// is measured instead of being passed to the agent.
const (
	// benchEmptyEnv=1: no agent; an empty TCX program on both directions of
	// every veth of the node, where the agent's tc programs sit. What any tc
	// observer of the pod veths costs, the floor under the agent's figure.
	benchEmptyEnv = "FLOWLENS_BENCH_EMPTY"
	// benchFreezeEnv=1: the agent stopped (SIGSTOP) once attached, so its
	// programs run and its user space does not: the two costs apart.
	benchFreezeEnv = "FLOWLENS_BENCH_FREEZE"
	// benchNoneEnv=1: nothing at all, measured as a variant: its ratios to the
	// round's without are the harness's own (an A/A control), which any
	// variant's difference must exceed to mean something.
	benchNoneEnv = "FLOWLENS_BENCH_NONE"
)

// attachEmpty attaches benchEmptyEnv's programs in netns ns and returns what
// detaches them.
func attachEmpty(b *testing.B, ns string) func() {
	b.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "bench_empty",
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
	})
	if err != nil {
		b.Fatalf("load the empty tc program: %v", err)
	}
	var links []link.Link
	closeAll := func() {
		for _, l := range links {
			_ = l.Close()
		}
		_ = prog.Close()
	}
	err = netns.Do(ns, func() error {
		ls, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range ls {
			if l.Type() != "veth" {
				continue
			}
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				tl, err := link.AttachTCX(link.TCXOptions{Interface: l.Attrs().Index, Program: prog, Attach: at})
				if err != nil {
					return fmt.Errorf("attach the empty program to %s: %w", l.Attrs().Name, err)
				}
				links = append(links, tl)
			}
		}
		if len(links) == 0 {
			return errors.New("no veth to attach to")
		}
		return nil
	})
	if err != nil {
		closeAll()
		b.Fatal(err)
	}
	return closeAll
}
