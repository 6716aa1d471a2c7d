package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"time"
)

// AttachMode selects how programs are attached to pod veths.
type AttachMode string

const (
	// AttachAuto uses TCX and falls back to tc clsact when the kernel has no TCX.
	AttachAuto AttachMode = "auto"
	// AttachTCX requires TCX links (Linux 6.6+).
	AttachTCX AttachMode = "tcx"
	// AttachTC uses a clsact qdisc and direct-action cls_bpf filters via netlink.
	AttachTC AttachMode = "tc"
)

// AcceptedMode selects how "seen past the policy layer" is decided.
type AcceptedMode string

const (
	// AcceptedAuto uses the egress mode, falling back to inference when
	// the kernel has no netfilter link (before 6.4).
	AcceptedAuto AcceptedMode = "auto"
	// AcceptedEgress takes a packet as past policy where it leaves: a pod
	// veth's or another interface's tc egress (tc_to_pod, tc_exit), and
	// for packets to the node itself a netfilter link on LOCAL_IN. No hook
	// is added to the FORWARD path of pod traffic. Linux 6.4+.
	AcceptedEgress AcceptedMode = "egress"
	// AcceptedNetfilter uses netfilter links on FORWARD, LOCAL_IN and
	// LOCAL_OUT (one hook more on every forwarded packet's path).
	AcceptedNetfilter AcceptedMode = "netfilter"
	// AcceptedInference never attaches it: packets counted at a veth and
	// not dropped by the next flush are taken as forwarded.
	AcceptedInference AcceptedMode = "inference"
)

// Config configures a Capture. Zero values take the defaults below.
type Config struct {
	// Accepted selects the "past policy" signal. Default auto.
	Accepted   AcceptedMode
	AttachMode AttachMode
	// Interfaces are path.Match globs on interface names. Only veths that
	// are ports of a bridge (pod veths on cni0) and match one are attached.
	// Default ["*"]: every pod veth.
	Interfaces []string
	// ExitInterfaces are path.Match globs on the names of the other
	// interfaces (not loopback, not a bridge, not a pod veth) that get
	// tc_exit in the egress mode: the overlay's (flannel.1) and the
	// uplinks, where packets leave the node past policy. Default ["*"].
	ExitInterfaces []string
	// FlowTableSize is the capacity of the in-kernel flow table. Default 65536.
	FlowTableSize int
	// DropRingSize is the size in bytes of the drop_events ring buffer that
	// carries each flow's first drop to user space at once: a power of two,
	// at least a page. A full ring loses only the early notice (counted as
	// KERNEL_RING_BUFFER); the drop itself is in the flow table. Default 256 KiB.
	DropRingSize int
	// WatchCIDRs scope drop reporting: a drop is reported only when one end
	// is in one of these or is a local pod. Default 10.42.0.0/16, 10.43.0.0/16.
	WatchCIDRs []netip.Prefix
	// FlushInterval is how often counters are read and records emitted. Default 5s.
	FlushInterval time.Duration
	// IdleTimeout removes flows without packets for this long from the
	// kernel table, after reporting what remains. Default 60s.
	IdleTimeout time.Duration
	// NodeName is written into every record.
	NodeName string
}

// Defaults. The agent's flags take theirs from here.
const (
	DefaultFlowTableSize = 65536
	DefaultDropRingSize  = 256 << 10
	DefaultFlushInterval = 5 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
)

// Bounds, checked here and named by the agent's flag validation. A table
// smaller than MinFlowTableSize evicts flows between flushes on any busy
// node; flushing more often than MinFlushInterval costs a full map walk.
const (
	MinFlowTableSize = 64
	MaxFlowTableSize = 1 << 24
	MinFlushInterval = 100 * time.Millisecond
	// MaxDropRingSize bounds the locked kernel memory of the drop ring.
	MaxDropRingSize = 1 << 28
)

// ValidDropRingSize reports whether n bytes can size the drop ring: the
// kernel wants a power of two that is a multiple of the page size.
func ValidDropRingSize(n int) bool {
	return n >= os.Getpagesize() && n <= MaxDropRingSize && n&(n-1) == 0
}

// DefaultInterfaces and DefaultWatchCIDRs are K3s's defaults: CNI host veths,
// the cluster CIDR and the service CIDR.
var (
	DefaultInterfaces = []string{"*"}
	DefaultWatchCIDRs = []netip.Prefix{
		netip.MustParsePrefix("10.42.0.0/16"),
		netip.MustParsePrefix("10.43.0.0/16"),
	}
)

// Validate reports the first invalid setting, zero values taking the
// defaults: the agent checks its flags with it before loading anything.
func (cfg Config) Validate() error {
	_, err := cfg.withDefaults()
	return err
}

// withDefaults returns cfg with defaults filled in, or an error naming the
// first invalid setting.
func (cfg Config) withDefaults() (Config, error) {
	switch cfg.AttachMode {
	case "":
		cfg.AttachMode = AttachAuto
	case AttachAuto, AttachTCX, AttachTC:
	default:
		return cfg, fmt.Errorf("attach mode %q: want auto, tcx or tc", cfg.AttachMode)
	}
	switch cfg.Accepted {
	case "":
		cfg.Accepted = AcceptedAuto
	case AcceptedAuto, AcceptedEgress, AcceptedNetfilter, AcceptedInference:
	default:
		return cfg, fmt.Errorf("accepted mode %q: want auto, egress, netfilter or inference", cfg.Accepted)
	}
	if len(cfg.Interfaces) == 0 {
		cfg.Interfaces = DefaultInterfaces
	}
	for _, g := range cfg.Interfaces {
		if _, err := path.Match(g, ""); err != nil {
			return cfg, fmt.Errorf("interface glob %q: %w", g, err)
		}
	}
	if len(cfg.ExitInterfaces) == 0 {
		cfg.ExitInterfaces = DefaultInterfaces
	}
	for _, g := range cfg.ExitInterfaces {
		if _, err := path.Match(g, ""); err != nil {
			return cfg, fmt.Errorf("exit interface glob %q: %w", g, err)
		}
	}
	if cfg.FlowTableSize == 0 {
		cfg.FlowTableSize = DefaultFlowTableSize
	}
	if cfg.FlowTableSize < MinFlowTableSize || cfg.FlowTableSize > MaxFlowTableSize {
		return cfg, fmt.Errorf("flow table size %d: want %d..%d", cfg.FlowTableSize, MinFlowTableSize, MaxFlowTableSize)
	}
	if cfg.DropRingSize == 0 {
		cfg.DropRingSize = DefaultDropRingSize
	}
	if !ValidDropRingSize(cfg.DropRingSize) {
		return cfg, fmt.Errorf("drop ring size %d: want a power of two from the page size (%d) to %d bytes",
			cfg.DropRingSize, os.Getpagesize(), MaxDropRingSize)
	}
	if len(cfg.WatchCIDRs) == 0 {
		cfg.WatchCIDRs = DefaultWatchCIDRs
	}
	if len(cfg.WatchCIDRs) > 64 {
		return cfg, errors.New("watch CIDRs: at most 64")
	}
	for _, p := range cfg.WatchCIDRs {
		if !p.IsValid() {
			return cfg, fmt.Errorf("watch CIDR %v: invalid prefix", p)
		}
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.FlushInterval < MinFlushInterval {
		return cfg, fmt.Errorf("flush interval %v: want at least %v", cfg.FlushInterval, MinFlushInterval)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.IdleTimeout < cfg.FlushInterval {
		return cfg, fmt.Errorf("idle timeout %v: want at least the flush interval %v", cfg.IdleTimeout, cfg.FlushInterval)
	}
	return cfg, nil
}

// matchInterface reports whether name matches one of the globs.
func matchInterface(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}
