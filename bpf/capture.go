package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Status values.
const (
	StatusVeth       = "veth"
	StatusDrops      = "drops"
	StatusAccepted   = "accepted"
	StatusInterfaces = "interfaces"
	// StatusExits counts the other interfaces tc_exit is attached to (the
	// egress mode).
	StatusExits = "exits"

	acceptedEgress    = "tc-egress"
	acceptedNetfilter = "netfilter-link"
	acceptedInference = "delivery-inference"
)

// PendingDelay is the longest a packet's flow entry may still lack it:
// tc_from_pod counts a further packet of the flow a CPU counted last in
// that CPU's hot slot, and a timer adds it to the flow table within
// pendingDelay(flush interval), never more than this. A read that must hold
// every packet sent so far waits this long.
//
// Each delay costs a timer on a busy CPU: arming it (bpf_timer_start
// reprograms the CPU's timer, an exit to the hypervisor in a VM) and its
// interrupt, which costs more than its count suggests. Pod-to-pod iperf3
// TCP, against its rate without the agent, in the same rotated rounds
// (issue 9, BenchmarkDatapathVariants, quiet machine, pinned): 0.92-0.95
// with the timer at 10 ms, 0.97-0.99 at 50 ms, 0.986 at 250 ms and 0.984 at
// 1 s; iperf3's CPU per segment +16 ns at 50 ms, +1 at 250 ms. At 1 ms,
// 64-byte UDP took about 1,100 more timer interrupts a second.
const PendingDelay = 250 * time.Millisecond

// pendingDelay is the hot slot's timer delay for a flush interval: a
// quarter of it, at most PendingDelay. A packet that waits its full delay
// and misses a read is in the next one; a shorter interval, chosen for
// fresher records, gets a shorter wait and pays its timer.
func pendingDelay(flush time.Duration) time.Duration {
	return min(PendingDelay, flush/4)
}

// nfPriority runs nf_accept after the filter table (0), where NetworkPolicy
// verdicts are made, and before SNAT (100), which would hide pod addresses.
const nfPriority = 10

// Capture owns the loaded programs and maps of one network namespace: the
// one of the thread that called New.
type Capture struct {
	cfg         Config
	log         *slog.Logger
	metrics     *metrics
	linkMetrics *linkMetrics
	objs        flowlensObjects
	reasons     DropReasons

	ns    netns.NsHandle
	nsIno uint64
	nl    *netlink.Handle

	// egress is the egress mode (see AcceptedEgress), decided at load: the
	// programs are built for it.
	egress bool

	// Watch's goroutine and its link watcher (links.go) own these.
	attached map[int]*attachment // pod veths
	exits    map[int]*attachment // other interfaces, tc_exit (egress mode)
	failed   map[int]string      // attaches to retry: ifindex -> name
	tcx      bool                // false once TCX proved unsupported (auto mode)
	links    []link.Link         // netfilter and tracepoint links

	namesMu sync.RWMutex // guards ifNames: Watch writes, aggregation reads
	ifNames map[uint32]string

	mu     sync.Mutex // guards status
	status map[string]string
	// ready is set once Watch has attached the global programs and every pod
	// veth that existed when it started.
	ready atomic.Bool
	// dropFence is only ever added to: the full barrier after the drop
	// reader sets drop_reader_idle (setDropReaderIdle).
	dropFence atomic.Uint32

	closeOnce sync.Once
}

// New loads the programs into the kernel for the calling thread's network
// namespace. Nothing is attached until Watch.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Capture, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("capture config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register capture metrics: %w", err)
	}
	lm, err := newLinkMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register link metrics: %w", err)
	}
	reasons, err := LoadDropReasons()
	if err != nil {
		return nil, err
	}
	c := &Capture{
		cfg: cfg, log: log, metrics: m, linkMetrics: lm, reasons: reasons,
		attached: make(map[int]*attachment),
		exits:    make(map[int]*attachment),
		failed:   make(map[int]string),
		ifNames:  make(map[uint32]string),
		tcx:      cfg.AttachMode != AttachTC,
		status: map[string]string{
			StatusVeth: "pending", StatusDrops: "pending", StatusAccepted: "pending", StatusInterfaces: "0", StatusExits: "0",
		},
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if c.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("get network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(c.ns), &st); err != nil {
		c.ns.Close()
		return nil, fmt.Errorf("stat network namespace: %w", err)
	}
	c.nsIno = st.Ino
	// This locked thread is in c.ns: a plain handle's sockets are opened
	// there. NewHandleAt would setns(2) into it, and setns needs
	// CAP_SYS_ADMIN even for the namespace a thread is already in.
	if c.nl, err = netlink.NewHandle(); err != nil {
		c.ns.Close()
		return nil, fmt.Errorf("open netlink in network namespace: %w", err)
	}
	if err := c.load(); err != nil {
		c.nl.Close()
		c.ns.Close()
		return nil, err
	}
	return c, nil
}

func (c *Capture) load() error {
	spec, err := loadFlowlens()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	if err := spec.Variables[flowlensVarNetnsIno].Set(uint32(c.nsIno)); err != nil {
		return fmt.Errorf("set netns_ino: %w", err)
	}
	if err := spec.Variables[flowlensVarFlushDelayNs].Set(uint64(pendingDelay(c.cfg.FlushInterval).Nanoseconds())); err != nil {
		return fmt.Errorf("set flush_delay_ns: %w", err)
	}
	if err := c.decideEgress(); err != nil {
		return err
	}
	if err := spec.Variables[flowlensVarAcceptAtEgress].Set(c.egress); err != nil {
		return fmt.Errorf("set accept_at_egress: %w", err)
	}
	spec.Maps[flowlensMapFlows].MaxEntries = uint32(c.cfg.FlowTableSize)
	spec.Maps[flowlensMapCtFlows].MaxEntries = uint32(c.cfg.FlowTableSize)
	spec.Maps[flowlensMapDropEvents].MaxEntries = uint32(c.cfg.DropRingSize)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count possible CPUs: %w", err)
	}
	spec.Maps[flowlensMapHot].MaxEntries = uint32(cpus) // a hot slot per CPU
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			c.log.Error("bpf verifier rejected a program", "log", fmt.Sprintf("%+v", ve))
		}
		return fmt.Errorf("load bpf objects: %w", err)
	}
	for _, p := range c.cfg.WatchCIDRs {
		p = p.Masked()
		k := flowlensLpmKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
		if p.Addr().Is4() {
			k.Prefixlen += 96
		}
		if err := c.objs.WatchCidrs.Put(&k, uint8(1)); err != nil {
			c.objs.Close()
			return fmt.Errorf("add watch cidr %v: %w", p, err)
		}
	}
	return nil
}

// decideEgress settles the egress mode before the programs are built for
// it: asked for, or in auto mode, when the kernel can cast a tc context to
// its sk_buff (6.3; the netfilter link it also needs for LOCAL_IN came in
// 6.4, checked when attaching).
func (c *Capture) decideEgress() error {
	switch c.cfg.Accepted {
	case AcceptedEgress, AcceptedAuto:
	default:
		return nil
	}
	ok, err := kernelHasFunc(castToKernCtx)
	switch {
	case err != nil && c.cfg.Accepted == AcceptedEgress:
		return fmt.Errorf("accepted mode egress: %w", err)
	case err != nil:
		c.log.Warn("accepted mode auto: cannot read the kernel's BTF, not using the egress mode", "err", err)
	case !ok && c.cfg.Accepted == AcceptedEgress:
		return fmt.Errorf("accepted mode egress: the kernel has no %s kfunc (Linux 6.3+)", castToKernCtx)
	}
	c.egress = ok
	return nil
}

// Status reports which kernel path each feature uses.
func (c *Capture) Status() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.status))
	for k, v := range c.status {
		out[k] = v
	}
	return out
}

func (c *Capture) setStatus(k, v string) {
	c.mu.Lock()
	c.status[k] = v
	c.mu.Unlock()
}

// Close releases the kernel objects of a Capture whose Watch was never
// called. Watch does this itself; calling Close after Watch is harmless.
func (c *Capture) Close() error {
	c.close()
	return nil
}

// close detaches everything Watch attached and releases the kernel objects.
func (c *Capture) close() {
	c.closeOnce.Do(c.doClose)
}

func (c *Capture) doClose() {
	for idx, a := range c.attached {
		c.markPodIf(a.ifindex, false)
		if err := a.detach(c.nl); err != nil {
			c.log.Warn("detach interface", "interface", a.name, "err", err)
		}
		delete(c.attached, idx)
	}
	for idx, a := range c.exits {
		if err := a.detach(c.nl); err != nil {
			c.log.Warn("detach interface", "interface", a.name, "err", err)
		}
		delete(c.exits, idx)
	}
	c.updateAttachedStatus()
	for _, l := range c.links {
		if err := l.Close(); err != nil && !errors.Is(err, syscall.EBADF) {
			c.log.Warn("close link", "err", err)
		}
	}
	c.links = nil
	if err := c.objs.Close(); err != nil {
		c.log.Warn("close bpf objects", "err", err)
	}
	c.nl.Close()
	c.ns.Close()
}

// Ready reports whether the programs are attached to the pod veths that
// existed when Watch started (later ones follow from netlink events).
func (c *Capture) Ready() error {
	if !c.ready.Load() {
		return errors.New("capture: programs not yet attached to the pod interfaces")
	}
	return nil
}
