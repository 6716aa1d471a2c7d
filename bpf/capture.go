package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Event is one item of the capture's output: exactly one field is set.
type Event struct {
	Flow *flowlensv1.Flow
	Lost *flowlensv1.LostEvents
}

// Status values.
const (
	StatusVeth       = "veth"
	StatusDrops      = "drops"
	StatusAccepted   = "accepted"
	StatusInterfaces = "interfaces"

	acceptedNetfilter = "netfilter-link"
	acceptedInference = "delivery-inference"
)

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

	// The link watcher's goroutine owns these (see links.go).
	attached map[int]*attachment
	failed   map[int]string // attaches to retry: ifindex -> name
	tcx      bool           // false once TCX proved unsupported (auto mode)

	namesMu sync.Mutex // guards ifNames: written by the watcher, read by flushes
	ifNames map[uint32]string

	// Run's goroutine owns these.
	rep   *reporter
	links []link.Link // netfilter and tracepoint links

	mu     sync.Mutex // guards status
	status map[string]string

	closeOnce sync.Once
}

// New loads the programs into the kernel for the calling thread's network
// namespace. Nothing is attached until Run.
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
		failed:   make(map[int]string),
		ifNames:  make(map[uint32]string),
		tcx:      cfg.AttachMode != AttachTC,
		status: map[string]string{
			StatusVeth: "pending", StatusDrops: "pending", StatusAccepted: "pending", StatusInterfaces: "0",
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
	if c.nl, err = netlink.NewHandleAt(c.ns); err != nil {
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
	spec.Maps[flowlensMapFlows].MaxEntries = uint32(c.cfg.FlowTableSize)
	spec.Maps[flowlensMapCtFlows].MaxEntries = uint32(c.cfg.FlowTableSize)
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

// Run attaches to the matching veths and keeps the set current from netlink
// events (on a goroutine of its own, see watchLinks), reports flows every
// FlushInterval and drops at once, and on ctx
// cancellation flushes, detaches everything and closes the objects. A
// Capture runs once.
func (c *Capture) Run(ctx context.Context, out chan<- Event) error {
	// Attach calls act on the calling thread's network namespace; keep this
	// goroutine on a thread in ours.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get network namespace: %w", err)
	}
	defer cur.Close()
	if !cur.Equal(c.ns) {
		if err := netns.Set(c.ns); err != nil {
			return fmt.Errorf("enter capture network namespace: %w", err)
		}
		defer netns.Set(cur) //nolint:errcheck // best effort on a locked thread
	}
	defer c.close()

	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	monoToWall := time.Now().UnixNano() - ts.Nano()

	if err := c.attachGlobal(); err != nil {
		return err
	}
	agg := newAggregator(c.cfg.NodeName, c.Status()[StatusAccepted] == acceptedInference,
		c.cfg.IdleTimeout, c.reasons, c.ifName, monoToWall)
	c.rep = &reporter{agg: agg, table: kernelTable{&c.objs}, out: out, metrics: c.metrics, log: c.log}

	var wg sync.WaitGroup
	defer wg.Wait() // before close: the watcher owns the attachments until it returns
	ctx, stop := context.WithCancel(ctx)
	defer stop() // ends the watcher on every return
	wg.Go(func() { c.watchLinks(ctx) })

	rd, err := ringbuf.NewReader(c.objs.DropEvents)
	if err != nil {
		return fmt.Errorf("open drop_events ring buffer: %w", err)
	}
	drops := make(chan FlowKey, 1024)
	var rdwg sync.WaitGroup
	rdwg.Go(func() { c.readDrops(rd, drops) })
	defer rdwg.Wait()
	defer rd.Close()

	tick := time.NewTicker(c.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.rep.flush(true)
			return nil
		case k := <-drops:
			c.rep.reportKey(&k)
		case <-tick.C:
			c.rep.flush(false)
		}
	}
}

// attachGlobal attaches the netfilter programs and the drop tracepoint.
// Neither is essential: a missing one degrades to the fallback in Status.
func (c *Capture) attachGlobal() error {
	if err := c.attachAccept(); err != nil {
		return err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: c.objs.KfreeSkb})
	if err != nil {
		c.log.Warn("attach tp_btf/kfree_skb: drops will not be reported", "err", err)
		c.setStatus(StatusDrops, "none")
		return nil
	}
	c.links = append(c.links, l)
	c.setStatus(StatusDrops, "tp_btf/kfree_skb")
	return nil
}

// attachAccept attaches nf_accept after the filter table, unless told to
// infer; in auto mode a kernel without netfilter links degrades to
// inference, in netfilter mode that is an error.
func (c *Capture) attachAccept() error {
	if c.cfg.Accepted == AcceptedInference {
		c.setStatus(StatusAccepted, acceptedInference)
		return nil
	}
	accepted := acceptedNetfilter
	for _, pf := range []link.NetfilterProtocolFamily{link.NetfilterProtoIPv4, link.NetfilterProtoIPv6} {
		for _, hook := range []link.NetfilterInetHook{link.NetfilterInetForward, link.NetfilterInetLocalIn, link.NetfilterInetLocalOut} {
			l, err := link.AttachNetfilter(link.NetfilterOptions{
				Program: c.objs.NfAccept, ProtocolFamily: pf, Hook: hook, Priority: nfPriority,
			})
			if err != nil {
				c.log.Warn("attach netfilter link", "pf", pf, "hook", hook, "err", err)
				if pf == link.NetfilterProtoIPv4 {
					accepted = acceptedInference
				}
				continue
			}
			c.links = append(c.links, l)
		}
	}
	if accepted == acceptedInference && c.cfg.Accepted == AcceptedNetfilter {
		return fmt.Errorf("accepted mode netfilter: the kernel refused the IPv4 netfilter link (see the warnings above)")
	}
	c.setStatus(StatusAccepted, accepted)
	return nil
}

func (c *Capture) readDrops(rd *ringbuf.Reader, drops chan<- FlowKey) {
	var rec ringbuf.Record
	var ev DropEvent
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				c.log.Warn("read drop_events", "err", err)
			}
			return
		}
		if err := DecodeDropEvent(rec.RawSample, &ev); err != nil {
			c.log.Warn("decode drop event", "err", err)
			continue
		}
		select {
		case drops <- ev.Key:
		default: // the next flush reports it
		}
	}
}

// Close releases the kernel objects of a Capture whose Run was never
// called. Run does this itself; calling Close after Run is harmless.
func (c *Capture) Close() error {
	c.close()
	return nil
}

// close detaches everything Run attached and releases the kernel objects.
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

// programs returns the loaded programs (tests check they are unlinked).
func (c *Capture) programs() []*ebpf.Program {
	return []*ebpf.Program{c.objs.TcFromPod, c.objs.TcToPod, c.objs.NfAccept, c.objs.KfreeSkb}
}
